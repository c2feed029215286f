"""`ployd agents token create|list|revoke`, `ployd agents list|disable|enable`:
self-hosted agents, in this server's database (like `ployd secrets`).

* ``ployd agents token create --pool NAME --tenant T [--tenant T2 ...] [--labels k=v,...]
  [--expires 7d]`` prints a one-time registration token (on standard output, alone, so
  ``TOKEN=$(ployd agents token create ...)`` works; what it is for goes to standard
  error). It is shown once: only its hash is kept. ``ployd agents token list`` shows the
  tokens (never the tokens themselves: id, pool, state, who used them);
  ``ployd agents token revoke ID`` makes an unused one useless.
* ``ployd agents list [--format json]``: each agent's pool, hardware, labels, version,
  state, when it was last seen and the job it runs.
* ``ployd agents disable NAME`` drains an agent (it finishes its job, takes no new one);
  ``enable`` lets it take jobs again.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.core.clock import aware

if TYPE_CHECKING:
    from app.store.agents import AgentView, TokenView

FORMATS = ("text", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    token = sub.add_parser("token", help="registration tokens for pools of agents")
    tsub = token.add_subparsers(dest="token_action", metavar="ACTION")
    tsub.required = True
    create = tsub.add_parser(
        "create",
        help="a one-time registration token for a pool (printed once)",
        description="A one-time registration token for a pool: give it to one machine "
        "(python3 ployd-agent.pyz --server URL --token TOKEN).",
    )
    create.add_argument("--pool", required=True, help="the pool's name, e.g. lab-gpus")
    create.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="FORGE:ID",
        help="a tenant whose jobs the pool's agents run (github:acme, github:12345, "
        "gitlab:ml-team, local:local); repeat it for several; '*' for every tenant",
    )
    create.add_argument("--labels", default=None, help="labels for its agents: k=v,k2=v2")
    create.add_argument(
        "--expires", default=None, help="how long the token may be used: 7d (default), 12h"
    )
    tls = tsub.add_parser("list", help="registration tokens: pool, state, who used them")
    tls.add_argument("--format", choices=FORMATS, default="text")
    revoke = tsub.add_parser(
        "revoke", help="revoke an unused registration token (no agent can register with it)"
    )
    revoke.add_argument("id", type=int, help="the token's id (ployd agents token list)")
    ls = sub.add_parser("list", help="registered agents: pool, hardware, state, job")
    ls.add_argument("--format", choices=FORMATS, default="text")
    d = sub.add_parser("disable", help="drain an agent: it finishes its job, takes no new one")
    d.add_argument("name")
    e = sub.add_parser("enable", help="let a disabled agent take jobs again")
    e.add_argument("name")


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    s = max(0, int((now - aware(when)).total_seconds()))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def main(args: argparse.Namespace) -> int:
    from app.pools import AgentNotFound, PoolError, Pools, TokenNotFound, as_json, token_json
    from app.settings import Settings, SettingsError
    from app.store.db import Database

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"ployd agents: {e}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.connect(settings.db_url)
    try:
        pools = Pools(db)
        if args.action == "token" and args.token_action == "list":
            tokens = pools.tokens()
            if args.format == "json":
                print(json.dumps({"tokens": [token_json(t) for t in tokens]}, indent=2))
            else:
                _print_tokens(tokens)
        elif args.action == "token" and args.token_action == "revoke":
            info = pools.revoke_token(args.id, actor="cli")
            print(f"token {info.id} (pool {info.pool}): revoked")
        elif args.action == "token":
            new = pools.create_token(
                args.pool, args.tenant, labels=args.labels, expires=args.expires, actor="cli"
            )
            info = new.info
            expires = info.expires_at.strftime("%Y-%m-%d %H:%M UTC")
            print(
                f"registration token for pool {info.pool} (tenants: {', '.join(info.tenants)}; "
                f"usable once, until {expires}); on the machine:\n"
                f"  python3 ployd-agent.pyz --server {settings.base_url} --token TOKEN",
                file=sys.stderr,
            )
            print(new.token)
        elif args.action == "list":
            agents = pools.agents()
            if args.format == "json":
                print(json.dumps({"agents": [as_json(a) for a in agents]}, indent=2))
            else:
                _print_table(agents)
        else:
            verb = pools.disable if args.action == "disable" else pools.enable
            agent = verb(args.name, actor="cli")
            print(f"{agent.name}: {agent.state}")
    except PoolError as e:
        print(f"ployd agents: {e}", file=sys.stderr)
        return 2
    except (AgentNotFound, TokenNotFound) as e:
        print(f"ployd agents: {e}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0


def _print_tokens(tokens: list[TokenView]) -> None:
    from app.pools import token_state

    if not tokens:
        print("no registration tokens (ployd agents token create --pool NAME --tenant T)")
        return
    rows = [("ID", "POOL", "TENANTS", "STATE", "EXPIRES", "USED BY", "CREATED BY")]
    for t in tokens:
        rows.append(
            (
                str(t.id),
                t.pool,
                ",".join(t.tenants),
                token_state(t),
                aware(t.expires_at).strftime("%Y-%m-%d %H:%M"),
                t.used_by or "-",
                t.created_by,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _print_table(agents: list[AgentView]) -> None:
    from app.core.pools import hardware_summary, labels_text

    if not agents:
        print("no agents registered yet (ployd agents token create --pool NAME --tenant T)")
        return
    now = datetime.now(UTC)
    head = ("NAME", "POOL", "HARDWARE", "LABELS", "VERSION", "STATE", "LAST SEEN", "JOB")
    rows = [head]
    for a in agents:
        job = f"{a.job.name} (attempt {a.job.attempt_id})" if a.job else "-"
        rows.append(
            (
                a.name,
                a.pool,
                hardware_summary(a.hardware),
                labels_text(a.labels),
                a.version or "-",
                a.state,
                _ago(a.last_seen, now),
                job,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
