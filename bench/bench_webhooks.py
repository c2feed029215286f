"""Bench: GitHub webhooks on `ployd serve` (SQLite), against a fake GitHub on loopback.

Three processes, so that what is measured is the server and not its neighbours:

* this one: `ployd serve` built with ``app.server.start_server`` (SQLite in a temp dir,
  the local executor with 0 agents, the GitHub App configured) and, on another port, a
  bare aiohttp handler that only reads the body and answers 202 (the floor);
* ``bench/_load.py``: the open-loop load generator (aiohttp client);
* this script again with ``--fake-github``: the fake GitHub of the tests
  (``tests/fakes/github.py``, every request checked against GitHub's OpenAPI), niced,
  since the real GitHub is not on this machine. A middleware added to the fake's app
  stamps, with ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process on
  Linux), the moment it receives each ``POST /repos/{owner}/{repo}/check-runs``.

1. Webhook answer latency and throughput: signed ``pull_request`` (opened) deliveries
   built from tests/fixtures/github/webhooks/pull_request.opened.1.json (with an
   ``installation``, a unique ``X-GitHub-Delivery`` each), offered open-loop at fixed
   rates, to the bare handler and to PloyD, same client, same rates. PloyD is measured
   twice: with its GitHub worker doing its real work meanwhile (the realistic case, the
   one the target is about: token, list the PR's files, read `.ployd.yml` -> none, mark
   the delivery processed) and with the worker stopped (the queue not drained: the
   webhook path alone). The repository of these deliveries has no `.ployd.yml`, so the
   work behind each delivery is bounded (2 API calls, no pipeline). After each level the
   bench waits for the worker to drain its queue and reports how long that took.
   Target: PloyD's p99 < 10 ms at 200 deliveries/s (worker on).
2. push -> first check run created: N signed ``push`` deliveries (one new commit each,
   ``before`` the previous one) for a repository whose `.ployd.yml` has 3 jobs; from
   just before the POST of the delivery to the moment the fake receives the first
   ``POST .../check-runs`` for that commit. Baseline: one bare round trip of a POST to the
   same fake (``POST .../check-runs`` with an installation token): what one GitHub API
   call costs here. Target: p50 < 100 ms.

Usage: python bench/bench_webhooks.py [--rates 50,100,200,400] [--pushes 40]
Exit status 0 when both targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "bench-webhook-secret"
OWNER = "bench-org"
LOAD_REPO = "load"  # no .ployd.yml: pull_request deliveries start nothing
PUSH_REPO = "models"  # a .ployd.yml with 3 jobs
PR_NUMBER = 7
TARGET_RATE = 200
TARGET_P99_MS = 10.0
TARGET_PUSH_P50_MS = 100.0
WARMUP = 60

CONFIG = """\
version: 1
jobs:
  lint:
    steps:
      - run: echo lint
  unit:
    steps:
      - run: echo unit
  train:
    needs: [unit]
    steps:
      - run: echo train
"""


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# ============================================================================ fake GitHub
# (runs in its own process: ``bench_webhooks.py --fake-github N_COMMITS``)


def _fake_main(n_commits: int) -> None:
    from aiohttp import web

    from tests.fakes.github import FakeGitHub

    class BenchFake(FakeGitHub):
        """The tests' fake, plus the arrival time of the first check run of each sha."""

        def __init__(self) -> None:
            super().__init__(validate_responses=False)
            self.first_check_run: dict[str, float] = {}

        def make_app(self) -> web.Application:
            app = super().make_app()
            app.middlewares.append(self._stamp)
            return app

        @web.middleware
        async def _stamp(self, request: web.Request, handler: Any) -> web.StreamResponse:
            t = time.monotonic()
            if request.path == "/_bench/first-check-runs":
                return web.json_response(self.first_check_run)
            if request.method == "POST" and request.path.endswith("/check-runs"):
                body = await request.read()  # cached: the fake reads it again
                with contextlib.suppress(ValueError, AttributeError):
                    sha = json.loads(body).get("head_sha")
                    if sha:
                        self.first_check_run.setdefault(sha, t)
            resp: web.StreamResponse = await handler(request)
            return resp

    async def serve() -> None:
        with contextlib.suppress(OSError):
            os.nice(10)  # GitHub is not on this machine: let PloyD and the client go first
        fake = BenchFake()
        load = fake.add_repo(OWNER, LOAD_REPO, files={"README.md": "load\n"})
        pull = fake.add_pull(
            load.full_name, PR_NUMBER, head_files={"train.py": "print(1)\n"}, user="alice"
        )
        models = fake.add_repo(OWNER, PUSH_REPO, files={".ployd.yml": CONFIG})
        shas = [models.branches["main"]]
        for i in range(n_commits):
            shas.append(fake.add_commit(models.full_name, {"model.py": f"x = {i}\n"}))
        runner = web.AppRunner(fake.make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        fake.base_url = f"http://{host}:{port}"
        inst = fake.installations[load.installation_id]
        ready = {
            "url": fake.url,
            "app_id": fake.app_id,
            "private_key_pem": fake.private_key_pem,
            "installation": {"id": inst.id, "account": {"login": inst.account}},
            "repo_ids": {LOAD_REPO: load.id, PUSH_REPO: models.id},
            "pr_head_sha": pull.head_sha,
            "push_shas": shas,
            "token": fake.issue_token(inst.id),
        }
        print(json.dumps(ready), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"stats":
                stats = {
                    "requests": len(fake.requests),
                    "violations": [str(v) for v in fake.violations[:5]],
                    "n_violations": len(fake.violations),
                }
                print(json.dumps(stats), flush=True)
        await runner.cleanup()

    asyncio.run(serve())


# ============================================================================ the bench


class Child:
    """A subprocess spoken to in JSON lines over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @classmethod
    async def start(cls, name: str, *args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
            limit=1 << 24,
        )
        return cls(proc, name)

    async def read(self, timeout: float = 120) -> Any:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited (code {await self.proc.wait()})")
        return json.loads(line)

    async def ask(self, message: Any, timeout: float = 120) -> Any:
        assert self.proc.stdin is not None
        text = message if isinstance(message, str) else json.dumps(message)
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read(timeout)

    async def close(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()  # this process only, by its handle
            await self.proc.wait()


def repository(fake: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "id": fake["repo_ids"][name],
        "name": name,
        "full_name": f"{OWNER}/{name}",
        "owner": {"login": OWNER, "type": "Organization"},
        "default_branch": "main",
        "private": True,
    }


def pr_payload(fake: dict[str, Any]) -> dict[str, Any]:
    """As tests/e2e/github_world.py builds it, from the recorded pull_request.opened."""
    from tests.fakes.github import load_fixture

    p = copy.deepcopy(load_fixture("pull_request.opened.1"))
    repo = repository(fake, LOAD_REPO)
    pr = p["pull_request"]
    pr.update(number=PR_NUMBER, state="open", user={"login": "alice", "type": "User"})
    pr["head"].update(sha=fake["pr_head_sha"], ref=f"pr-{PR_NUMBER}", repo=repo)
    pr["base"].update(ref="main", repo=repo)
    p.update(
        action="opened",
        number=PR_NUMBER,
        repository=repo,
        installation=fake["installation"],
        sender={"login": "alice"},
    )
    return p


def push_payload(fake: dict[str, Any], before: str, after: str) -> dict[str, Any]:
    from tests.fakes.github import load_fixture

    p = copy.deepcopy(load_fixture("push.1"))
    p.update(
        ref="refs/heads/main",
        before=before,
        after=after,
        deleted=False,
        repository=repository(fake, PUSH_REPO),
        installation=fake["installation"],
    )
    return p


def level_size(rate: int) -> int:
    """Requests per level: ~2.5-8 s of load, 400 to 1000 requests."""
    return max(400, min(1000, int(rate * 2.5)))


def summarize(result: dict[str, Any], rate: int, n: int) -> dict[str, Any]:
    lat = result["latencies_ms"]
    ok = sum(v for k, v in result["statuses"].items() if k.startswith("2"))
    return {
        "rate": rate,
        "n": n,
        "ok": ok,
        "bad": n - ok,
        "statuses": result["statuses"],
        "tput": ok / result["elapsed_s"] if result["elapsed_s"] > 0 else float("nan"),
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "max": max(lat) if lat else float("nan"),
        "lag99": result["lag_ms_p99"],
    }


async def run(rates: list[int], pushes: int) -> int:
    import aiohttp
    from aiohttp import web

    from app.adapters.github.config import GitHubAppConfig
    from app.server import start_server
    from app.settings import Settings
    from tests.fakes.github import delivery_headers

    load_before = os.getloadavg()[0]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tmp = tempfile.TemporaryDirectory(prefix="bench-webhooks-")
    root = Path(tmp.name)
    fake_proc: Child | None = None
    load: Child | None = None
    server: Any = None
    bare_runner: web.AppRunner | None = None
    try:
        fake_proc = await Child.start("fake GitHub", __file__, "--fake-github", str(pushes + 3))
        fake = await fake_proc.read()
        load = await Child.start("load generator", str(ROOT / "bench" / "_load.py"))

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=202)

        bare_app = web.Application()
        bare_app.router.add_post("/webhooks/github", bare)
        bare_runner = web.AppRunner(bare_app, access_log=None)
        await bare_runner.setup()
        bare_site = web.TCPSite(bare_runner, "127.0.0.1", 0)
        await bare_site.start()
        bare_url = f"http://127.0.0.1:{bare_runner.addresses[0][1]}/webhooks/github"

        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=root / "data",
            local_agents=0,
            public_url="http://ployd.bench",
            secret_key="bench-secret-key",
            github=GitHubAppConfig(
                app_id=fake["app_id"],
                private_key_pem=fake["private_key_pem"],
                api_url=fake["url"],
                webhook_secret=SECRET,
            ),
        )
        server = await start_server(settings)
        gh = server.github
        assert gh is not None
        ployd_url = server.url + "/webhooks/github"

        body_file = root / "pull_request.json"
        body_file.write_bytes(json.dumps(pr_payload(fake)).encode())
        print(
            f"pull_request body: {body_file.stat().st_size} bytes; "
            f"rates {rates}/s; requests per level {[level_size(r) for r in rates]}",
            flush=True,
        )

        async def level(url: str, rate: int, n: int, tag: str) -> dict[str, Any]:
            job = {
                "url": url,
                "rate": rate,
                "n": n,
                "event": "pull_request",
                "body_file": str(body_file),
                "secret": SECRET,
                "prefix": f"{tag}-{uuid.uuid4().hex[:8]}-",
            }
            assert load is not None
            return summarize(await load.ask(job), rate, n)

        async def drain() -> float:
            t = time.perf_counter()
            await asyncio.wait_for(gh.worker.drain(), 120)
            await gh.reporter.idle()
            return time.perf_counter() - t

        # warm-up: connections, the installation token, SQLite's first pages
        await level(bare_url, 50, WARMUP, "warm")
        await level(ployd_url, 50, WARMUP, "warm")
        await drain()

        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for rate in rates:
            n = level_size(rate)
            rows[("bare", rate)] = await level(bare_url, rate, n, "bare")
            before = gh.worker.processed
            r = await level(ployd_url, rate, n, "on")
            t_load = n / rate
            r["drain_s"] = await drain()
            r["worker_rate"] = (gh.worker.processed - before) / (t_load + r["drain_s"])
            rows[("on", rate)] = r

        # ---- part 2: push -> first check run (the worker must run: before "paused")
        shas = fake["push_shas"]
        timeout = aiohttp.ClientTimeout(total=30)
        push_lat: list[float] = []
        async with aiohttp.ClientSession(timeout=timeout) as http:
            t_fake: dict[str, float] = {}
            sent: dict[str, float] = {}
            for i in range(1, len(shas)):
                before, after = shas[i - 1], shas[i]
                body = json.dumps(push_payload(fake, before, after)).encode()
                headers = delivery_headers("push", body, SECRET)
                t0 = time.monotonic()
                async with http.post(ployd_url, data=body, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 202, (resp.status, await resp.text())
                sent[after] = t0
                await drain()
                await asyncio.sleep(0.02)
            async with http.get(fake["url"] + "/_bench/first-check-runs") as resp:
                t_fake = await resp.json()
            missing = [s for s in sent if s not in t_fake]
            if missing:
                raise RuntimeError(f"no check run reached the fake for {len(missing)} pushes")
            lat_all = [(t_fake[sha] - t_sent) * 1000 for sha, t_sent in sent.items()]
            push_lat = lat_all[3:]  # the first 3: warm-up (token, first pipeline)

            # baseline: one bare round trip of a POST to the fake
            rtt: list[float] = []
            cr_url = f"{fake['url']}/repos/{OWNER}/{PUSH_REPO}/check-runs"
            auth = {
                "Authorization": f"token {fake['token']}",
                "Accept": "application/vnd.github+json",
                "User-Agent": "bench",
            }
            for i in range(len(push_lat) + 5):
                t = time.perf_counter()
                async with http.post(
                    cr_url, json={"name": f"baseline {i}", "head_sha": shas[0]}, headers=auth
                ) as resp:
                    await resp.read()
                    assert resp.status == 201, (resp.status, await resp.text())
                if i >= 5:
                    rtt.append((time.perf_counter() - t) * 1000)

        # ---- part 1 again with the worker stopped: the webhook path alone
        await gh.worker.stop()
        for rate in rates:
            rows[("paused", rate)] = await level(ployd_url, rate, level_size(rate), "paused")

        stats = await fake_proc.ask("stats")
    finally:
        if server is not None:
            await server.stop()
        if bare_runner is not None:
            await bare_runner.cleanup()
        for child in (load, fake_proc):
            if child is not None:
                await child.close()
        tmp.cleanup()

    # ---- report
    print()
    print(
        f"load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores (other work on the machine widens the p99s)"
    )
    print("1. webhook answer latency: signed pull_request deliveries, open loop, keep-alive")
    print("   (latency: request start -> whole answer read, at the client; tput: 2xx/s)")
    hdr = (
        f"   {'rate/s':>6}  {'server':<22} {'n':>5} {'non-2xx':>7} {'tput/s':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  {'x bare p50/p99':>14}  notes"
    )
    print(hdr)
    print("   " + "-" * (len(hdr) - 3))
    names = {
        "bare": "bare aiohttp (202)",
        "on": "ployd, worker on",
        "paused": "ployd, worker stopped",
    }
    for rate in rates:
        base = rows[("bare", rate)]
        for kind in ("bare", "on", "paused"):
            r = rows[(kind, rate)]
            ratio = (
                ""
                if kind == "bare"
                else f"{r['p50'] / base['p50']:.1f}x / {r['p99'] / base['p99']:.1f}x"
            )
            notes = f"client lag p99 {r['lag99']:.1f} ms"
            if "drain_s" in r:
                notes += f"; queue drained {r['drain_s']:.2f} s after, {r['worker_rate']:.0f}/s"
            print(
                f"   {rate:>6}  {names[kind]:<22} {r['n']:>5} {r['bad']:>7} {r['tput']:>7.1f} "
                f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.1f}  {ratio:>14}  {notes}"
            )
    p50, p95 = pct(push_lat, 50), pct(push_lat, 95)
    b50, b95 = pct(rtt, 50), pct(rtt, 95)
    print()
    print(f"2. push -> first POST .../check-runs received by the fake (n={len(push_lat)})")
    print(f"   ployd serve:              p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    print(f"   one POST to the fake:     p50 {b50:7.2f} ms   p95 {b95:7.2f} ms  (baseline)")
    print(f"   ratio p50:                {p50 / b50:7.1f} round trips")
    print(
        f"   fake GitHub: {stats['requests']} requests, {stats['n_violations']} violations"
        + (f" e.g. {stats['violations'][0]}" if stats["violations"] else "")
    )
    print()
    ok1 = ("on", TARGET_RATE) in rows and rows[("on", TARGET_RATE)]["p99"] < TARGET_P99_MS
    ok1 = ok1 and rows[("on", TARGET_RATE)]["bad"] == 0
    ok2 = p50 < TARGET_PUSH_P50_MS
    if ("on", TARGET_RATE) in rows:
        r = rows[("on", TARGET_RATE)]
        print(
            f"target: webhook p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE}/s (worker on): "
            f"{r['p99']:.2f} ms -> {'OK' if ok1 else 'TOO SLOW'}"
            f"   (worker stopped: {rows[('paused', TARGET_RATE)]['p99']:.2f} ms)"
        )
    else:
        print(f"target: webhook p99 at {TARGET_RATE}/s: not measured (--rates) -> TOO SLOW")
    print(
        f"target: push -> first check run p50 < {TARGET_PUSH_P50_MS:.0f} ms: "
        f"{p50:.2f} ms -> {'OK' if ok2 else 'TOO SLOW'}"
    )
    return 0 if ok1 and ok2 else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--fake-github":
        _fake_main(int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,400", help="deliveries/s per level")
    parser.add_argument("--pushes", type=int, default=40, help="push deliveries (part 2)")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    return asyncio.run(run(rates, args.pushes))


if __name__ == "__main__":
    sys.exit(main())
