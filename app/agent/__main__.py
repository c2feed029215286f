"""`python -m app.agent --server URL --token TOKEN [--agent-id ID] [--work-dir DIR] [--once]`,
or the same arguments to the packaged agent: `python3 ployd-agent.pyz --server URL ...`
(its ``__main__`` passes ``package``, the file it runs from, so that it can update).

The token is a one-time registration token (``ployd agents token create``, an EC2
machine's user data, or the local executor's per-start one): the agent registers with it
at start and from then on claims with the credential it gets back, kept in memory, and
with ``--state-dir`` in a file there that steps cannot read (``app/agent/state.py``): a
restarted agent (crash, reboot) then starts with that credential, which the server
exchanges for a new one, and needs no new token.
Where the token comes from, first found: ``--token-fd N`` (read once from that inherited
file descriptor, e.g. 0 for standard input: nowhere a step could read it), ``--token``,
``$PLOYD_AGENT_TOKEN`` (removed from the environment at once: the steps' environment is
built from it). An agent that updates itself hands its credential to the new version on
a pipe (``--credential-fd``), as the token is used up.

SIGTERM (or SIGINT): take no new job, let the running one finish for up to ``--grace-s``
seconds, then exit 0; a second SIGTERM, or the grace running out, stops the job (it is
reported interrupted, and its retry policy decides).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.protocol import MAX_AGENT_ID, Registration

if TYPE_CHECKING:
    from app.agent.sandbox import Confinement
    from app.agent.state import Keeper

log = logging.getLogger("ployd.agent")

TOKEN_ENV = "PLOYD_AGENT_TOKEN"
LABELS_ENV = "PLOYD_AGENT_LABELS"  # install.sh's EnvironmentFile puts --labels there
STATE_ENV = "PLOYD_AGENT_STATE_DIR"
DEFAULT_WORK_DIR = Path("~/.ployd-agent/work")
DEFAULT_GRACE_S = 600.0
# What a restart into a new version must not repeat: the used-up token's sources.
TOKEN_OPTIONS = ("--token", "--token-fd", "--credential-fd")
# The exit code of an agent whose machine failed its check (``--expect-gpus``): the EC2
# runner retires the machine (app.adapters.ec2.userdata.NOT_READY_EXIT).
NOT_READY_EXIT = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.agent", description="The PloyD agent.")
    p.add_argument("--server", required=True, help="the PloyD server's base URL")
    p.add_argument(
        "--token",
        help=f"the registration token (default: ${TOKEN_ENV}); used once, at start",
    )
    p.add_argument(
        "--token-fd",
        type=int,
        metavar="FD",
        help="read the registration token from this inherited file descriptor (0: "
        "standard input), once",
    )
    p.add_argument(  # the previous version's credential, when the agent updated itself
        "--credential-fd", type=int, metavar="FD", help=argparse.SUPPRESS
    )
    p.add_argument(
        "--agent-id",
        default=socket.gethostname().split(".")[0][:MAX_AGENT_ID] or "agent",
        help="this agent's name (default: the host name)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"where workspaces live (one per repository, reused; default {DEFAULT_WORK_DIR})",
    )
    p.add_argument(
        "--labels",
        default=os.environ.get(LABELS_ENV, ""),
        help=f"labels this agent reports, k=v,k2=v2 (default: ${LABELS_ENV}; its pool's "
        "token may add more)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=os.environ.get(STATE_ENV) or None,
        help="where the agent keeps its credential across restarts (a 0700 directory, "
        "hidden from steps; default $PLOYD_AGENT_STATE_DIR; unset: memory only, a "
        "restart needs a new token)",
    )
    p.add_argument("--once", action="store_true", help="exit after one job")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object a line (as `ployd serve --log-format json`)",
    )
    p.add_argument(
        "--claim-wait",
        type=float,
        default=25.0,
        help="seconds the server may hold a claim (at most 30)",
    )
    p.add_argument(
        "--kill-grace",
        type=float,
        default=3.0,
        help="seconds between SIGTERM and SIGKILL of a step's process group",
    )
    p.add_argument(
        "--grace-s",
        type=float,
        default=DEFAULT_GRACE_S,
        help="on SIGTERM, seconds the running job may take to finish before it is stopped "
        f"(default {DEFAULT_GRACE_S:g}; 0: stop it at once)",
    )
    p.add_argument(
        "--update-retry",
        type=float,
        default=5.0,
        help="seconds before trying again after a failed self-update (doubling, at most 300)",
    )
    p.add_argument(
        "--imds-url",
        default=os.environ.get("PLOYD_IMDS_URL"),
        help="on EC2: the instance metadata service to watch for spot interruptions "
        "(http://169.254.169.254); default $PLOYD_IMDS_URL, unset: not watched",
    )
    p.add_argument(
        "--isolation",
        choices=("auto", "sandbox", "none"),
        default=os.environ.get("PLOYD_STEP_ISOLATION") or "auto",
        help="how host steps are confined: sandbox (bubblewrap, required), auto (bubblewrap "
        "when installed), none (their own user and environment only); default "
        "$PLOYD_STEP_ISOLATION or auto",
    )
    p.add_argument(
        "--step-user",
        help="when the agent runs as root: the unprivileged user host steps run as "
        "(default ployd-job)",
    )
    p.add_argument(
        "--hide",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory sandboxed steps see empty (repeatable; the local executor hides "
        "the server's data directory)",
    )
    p.add_argument(
        "--pass-env",
        default=os.environ.get("PLOYD_PASS_ENV", ""),
        metavar="NAMES",
        help="comma-separated names of this machine's variables steps also get, e.g. "
        "LD_LIBRARY_PATH,HTTPS_PROXY (default $PLOYD_PASS_ENV); steps get nothing else of "
        "the agent's environment",
    )
    p.add_argument(
        "--expect-gpus",
        metavar="COUNT:CLASS",
        help="before registering, check that nvidia-smi sees exactly COUNT GPUs of CLASS "
        "(8:h100); when not, tell the server (with the registration token) and exit "
        f"{NOT_READY_EXIT} without taking a job (EC2 machines: set by the user data)",
    )
    args = p.parse_args(argv)
    if args.expect_gpus:
        from app.agent.hardware import parse_expected

        try:
            args.expect_gpus = parse_expected(args.expect_gpus)
        except ValueError as e:
            p.error(str(e))
    args.pass_env = tuple(n.strip() for n in args.pass_env.split(",") if n.strip())
    # Out of the environment whatever happens next: steps and git inherit it.
    from_env = os.environ.pop(TOKEN_ENV, None)
    args.credential = None
    try:
        if args.credential_fd is not None:
            agent_id, _, args.credential = read_line(args.credential_fd).partition(" ")
            args.agent_id = agent_id or args.agent_id
        elif args.token_fd is not None:
            args.token = read_line(args.token_fd)
        elif not args.token:
            args.token = from_env
    except OSError as e:
        p.error(f"the token's file descriptor: {e}")
    if not (args.token or args.credential or args.state_dir):
        p.error(f"no token: pass --token, --token-fd or set {TOKEN_ENV}")
    try:
        args.labels = parse_labels(args.labels)
    except ValueError as e:
        p.error(str(e))
    args.work_dir = args.work_dir.expanduser()
    if args.state_dir is not None:
        args.state_dir = args.state_dir.expanduser().absolute()
    return args


def read_line(fd: int) -> str:
    """The first line that comes on ``fd`` (a pipe the agent inherited), read once; the
    descriptor is closed afterwards (standard input: replaced by ``/dev/null``)."""
    chunks: list[bytes] = []
    while True:
        data = os.read(fd, 4096)
        if not data:
            break
        chunks.append(data)
        if b"\n" in data:
            break
    if fd == 0:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    else:
        os.close(fd)
    return b"".join(chunks).decode().split("\n", 1)[0].strip()


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as a dict (the server checks what they may hold)."""
    labels: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--labels: {item.strip()!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def without_token(argv: Sequence[str]) -> list[str]:
    """``argv`` less the token's options (``--token T``, ``--token=T``, ``--token-fd N``):
    what a restart into a new version runs with (its credential comes on a pipe)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in TOKEN_OPTIONS:
            skip = True
            continue
        if arg.startswith(tuple(f"{o}=" for o in TOKEN_OPTIONS)):
            continue
        out.append(arg)
    return out


def handover(agent_id: Callable[[], str], credential: Callable[[], str]) -> Callable[[], list[str]]:
    """Just before a restart into a new version: a pipe holding this agent's id and
    credential, inherited by the new version (``--credential-fd``), which reads it once."""

    def arguments() -> list[str]:
        read, write = os.pipe()
        os.write(write, f"{agent_id()} {credential()}\n".encode())
        os.close(write)
        os.set_inheritable(read, True)
        return ["--credential-fd", str(read)]

    return arguments


def not_dumpable() -> None:
    """On Linux, make this process non-dumpable: processes of the same user (steps, when
    they run as the agent's user) can then neither ptrace it nor read its memory,
    ``/proc/<pid>/environ`` or its open files, where its credential lives. Best effort;
    root still can (steps run as another user: docs/agent-protocol.md)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (ImportError, OSError, AttributeError):
        pass


def keeper_for(args: argparse.Namespace, confinement: Confinement) -> Keeper | None:
    """``--state-dir``'s keeper, when steps cannot read it (else the credential stays in
    memory, as this says in the log); its saved credential is loaded unless the agent
    was handed one by its previous version."""
    from app.agent.state import CredentialFile, Keeper

    if args.state_dir is None:
        return None
    state, work = str(args.state_dir), str(args.work_dir.absolute())
    if state == work or state.startswith(work + "/") or work.startswith(state + "/"):
        raise ValueError(
            f"--state-dir {state} and --work-dir {work} overlap: keep the state directory "
            "apart (e.g. /var/lib/ployd/state beside /var/lib/ployd/work)"
        )
    if not confinement.protects(args.state_dir):
        log.warning(
            "--state-dir %s: not used: host steps run as this agent's user without a "
            "sandbox and could read a credential kept there, so it stays in memory (a "
            "restart needs a new token); install bubblewrap, or run the agent as root "
            "(steps then run as another user), to keep it",
            args.state_dir,
        )
        return None
    file = CredentialFile(args.state_dir)
    try:
        file.prepare()
    except OSError as e:
        log.warning("--state-dir %s: not used: %s", args.state_dir, e)
        return None
    saved = file.load(args.server) if args.credential is None else None
    return Keeper(file, args.server, args.token, saved)


def version() -> str:
    """This agent's version: its package's (``app.__version__``), the server's own when
    run from the server's source."""
    import app

    return app.__version__


async def amain(
    args: argparse.Namespace, argv: Sequence[str] = (), package: str | None = None
) -> int:
    from app.agent.agent import Agent
    from app.agent.client import AgentClient
    from app.agent.container import detect_runtime
    from app.agent.hardware import detect, gpu_problem
    from app.agent.sandbox import Confinement, SandboxError
    from app.agent.update import SelfUpdate

    hide = [*args.hide, *([str(args.state_dir)] if args.state_dir is not None else [])]
    try:
        confinement = Confinement.configure(
            args.isolation, args.work_dir, step_user=args.step_user, hide=hide
        )
    except SandboxError as e:
        log.error("%s", e)
        return 2
    try:
        keeper = keeper_for(args, confinement)
    except ValueError as e:
        log.error("%s", e)
        return 2
    if not (args.credential or args.token or (keeper and keeper.saved)):
        log.error(
            "no token and no credential saved in %s: pass --token, --token-fd or set %s",
            args.state_dir,
            TOKEN_ENV,
        )
        return 2
    first = args.credential or (keeper.first() if keeper is not None else args.token)
    if keeper is not None and keeper.saved is not None and args.credential is None:
        args.agent_id = keeper.saved.agent_id  # the name the server knows it by
    client = AgentClient(args.server, first or "", version=version())
    args.token = args.credential = None  # the client (and the keeper) hold them now
    log.info(
        "ployd agent %s on Python %s (%s), for %s",
        client.version,
        sys.version.split()[0],
        package or "from source",
        args.server,
    )
    try:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        registration = None
        runtime = detect_runtime()  # what jobs' images run with (None: none)
        # Once: sent at registration and with each claim.
        hardware = detect(args.work_dir, containers=runtime.name if runtime is not None else "")
        if args.expect_gpus and args.credential_fd is None:  # before its first job
            problem = gpu_problem(hardware.gpus, *args.expect_gpus)
            if problem is not None:
                log.error("%s: taking no job; telling the server", problem)
                try:
                    await client.report_not_ready(problem)
                except Exception as e:  # unreachable: the boot timeout still ends it
                    log.error("could not tell the server (%r)", e)
                return NOT_READY_EXIT
            log.info("GPU check passed: %d x %s", *args.expect_gpus)
        if args.credential_fd is None:  # a fresh start: register with the token
            registration = Registration(
                name=args.agent_id,
                version=client.version,
                hardware=hardware,
                labels=args.labels,
            )
        agent = Agent(
            client,
            args.agent_id,
            args.work_dir,
            claim_wait=args.claim_wait,
            kill_grace_s=args.kill_grace,
            imds_url=args.imds_url,
            registration=registration,
            grace_s=args.grace_s,
            hardware=hardware,
            runtime=runtime,
            confinement=confinement,
            pass_env=args.pass_env,
            keeper=keeper,
        )
        if package is not None:
            agent.updater = SelfUpdate(
                Path(package),
                without_token(argv),
                args.server,
                client.http,
                version=client.version,
                fallback_dir=args.work_dir,
                handover=handover(lambda: agent.agent_id, lambda: client.agent_token),
            )
            agent.update_retry_s = args.update_retry
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.terminate)
        return await agent.run(once=args.once)
    finally:
        client.close()


class _JsonLines(logging.Formatter):
    """One JSON object a line: time, level, logger, message, agent (and exception)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__()
        self.agent_id = agent_id

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import datetime, timezone

        when = datetime.fromtimestamp(record.created, timezone.utc)
        out = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "agent": self.agent_id,
            "agent_version": version(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def main(argv: Sequence[str] | None = None, package: str | None = None) -> int:
    """Run the agent. ``package``: the file this agent runs from (a ``ployd-agent.pyz``),
    which it may replace with the server's version; None (run from source): it never
    updates."""
    not_dumpable()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(_JsonLines(args.agent_id))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    else:
        logging.basicConfig(
            level=logging.INFO,
            format=f"%(asctime)s agent {args.agent_id} {version()} %(levelname)s %(message)s",
        )
    return asyncio.run(amain(args, argv, package))


if __name__ == "__main__":
    sys.exit(main())
