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

Usage: python bench/bench_webhooks.py [--rates 50,100,200,400] [--pushes 40] [--duration 3]
       [--connections 16]   (PLOYD_BENCH_POSTGRES_URL: PloyD on PostgreSQL too)
Exit status 0 when both targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
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
PR_BYTES = 28_000

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


# ============================================================================ the peers
# Each in its own process, as PloyD's own server would be: ``--peer bare|gidgethub``
# prints {"port": N} and serves until its stdin closes; @octokit/webhooks runs on node.


def _peer_main(kind: str) -> None:
    from aiohttp import web
    from gidgethub import sansio

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def gidgethub_verify(request: web.Request) -> web.Response:
        body = await request.read()
        sansio.Event.from_http(request.headers, body, secret=SECRET)  # verify, then parse
        return web.Response(status=202)

    async def serve() -> None:
        app = web.Application(client_max_size=32 << 20)
        app.router.add_post("/webhooks/github", bare if kind == "bare" else gidgethub_verify)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():
            pass
        await runner.cleanup()

    asyncio.run(serve())


OCTOKIT_VERSION = "13"  # @octokit/webhooks: Probot's receiver
OCTOKIT_PEER = """\
import http from "node:http";
import { Webhooks, createNodeMiddleware } from "@octokit/webhooks";
const webhooks = new Webhooks({ secret: process.argv[2] });
webhooks.onAny(() => {});
const middleware = createNodeMiddleware(webhooks, { path: "/webhooks/github" });
const server = http.createServer(middleware);
server.keepAliveTimeout = 60000;
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
process.stdin.on("end", () => server.close(() => process.exit(0)));
process.stdin.resume();
"""


async def start_octokit(root: Path) -> tuple[Child | None, str]:
    """@octokit/webhooks installed from the npm registry into ``root`` and run with the
    machine's node; (None, why) when node or the registry is not there."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node/npm not found on PATH"
    peer = root / "octokit"
    peer.mkdir()
    (peer / "package.json").write_text('{"name": "bench-peer", "private": true}\n')
    proc = await asyncio.create_subprocess_exec(
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--silent",
        f"@octokit/webhooks@{OCTOKIT_VERSION}",
        cwd=str(peer),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        return None, f"npm install failed: {err.decode(errors='replace').strip()[:300]}"
    version = json.loads((peer / "node_modules/@octokit/webhooks/package.json").read_text())[
        "version"
    ]
    (peer / "peer.mjs").write_text(OCTOKIT_PEER)
    child = await Child.start_exe("@octokit/webhooks", node, str(peer / "peer.mjs"), SECRET)
    return child, f"@octokit/webhooks {version} on node {await _node_version(node)}"


async def _node_version(node: str) -> str:
    proc = await asyncio.create_subprocess_exec(node, "--version", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode().strip()


# ============================================================================ the bench


class Child:
    """A subprocess spoken to in JSON lines over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @classmethod
    async def start(cls, name: str, *args: str) -> Child:
        return await cls.start_exe(name, sys.executable, *args)

    @classmethod
    async def start_exe(cls, name: str, exe: str, *args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            exe,
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
    # a pull request with a real description: ~28 KB, as measured in issue 15
    size = len(json.dumps(p))
    line = "- [x] retrain the tokenizer on the cleaned corpus; eval on the held-out split\n"
    pr["body"] = line * max(0, (PR_BYTES - size) // len(line))
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


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def summarize_closed(result: dict[str, Any]) -> dict[str, Any]:
    lat = result["latencies_ms"]
    ok = sum(v for k, v in result["statuses"].items() if k.startswith("2"))
    n = sum(result["statuses"].values()) + result["errors"]
    return {
        "n": n,
        "ok": ok,
        "bad": n - ok,
        "statuses": result["statuses"],
        "tput": ok / result["elapsed_s"] if result["elapsed_s"] > 0 else float("nan"),
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
    }


def inbox_counts(server: Any, prefix: str) -> tuple[int, int]:
    """(rows, rows processed) of the inbox whose delivery id starts with ``prefix``."""
    from sqlalchemy import func, select

    from app.store.models import InboxEvent

    like = InboxEvent.delivery_id.like(prefix + "%")
    with server.services.db.session() as s:
        rows = s.scalar(select(func.count()).select_from(InboxEvent).where(like))
        done = s.scalar(
            select(func.count())
            .select_from(InboxEvent)
            .where(like, InboxEvent.status == "processed")
        )
    return int(rows or 0), int(done or 0)


@contextlib.contextmanager
def postgres_database(url: str) -> Any:
    """A fresh database on the server of ``url`` (dropped after)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


async def run(rates: list[int], pushes: int, duration: float = 3.0, concurrency: int = 16) -> int:
    import aiohttp
    from aiohttp import web

    from app.adapters.github.config import GitHubAppConfig
    from app.server import loop_name, settle_heap, start_server
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
        settle_heap()  # as `ployd serve` does once started
        gh = server.github
        assert gh is not None
        ployd_url = server.url + "/webhooks/github"

        body_file = root / "pull_request.json"
        body_file.write_bytes(json.dumps(pr_payload(fake)).encode())
        print(
            f"ployd's event loop: {loop_name()}; "
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

        # ---- part 0: throughput, closed loop (as wrk), the peers side by side
        async def closed(
            url: str, tag: str, cpu: Callable[[], float], seconds: float = duration
        ) -> dict[str, Any]:
            prefix = f"{tag}-{uuid.uuid4().hex[:8]}-"
            job = {
                "mode": "closed",
                "url": url,
                "concurrency": concurrency,
                "duration_s": seconds,
                "event": "pull_request",
                "body_file": str(body_file),
                "secret": SECRET,
                "prefix": prefix,
            }
            assert load is not None
            cpu0 = cpu()
            r = summarize_closed(await load.ask(job, timeout=seconds + 120))
            r["cpu_ms"] = (cpu() - cpu0) * 1000 / max(r["n"], 1)  # the server's, per request
            r["prefix"] = prefix
            return r

        async def ployd_closed(srv: Any, tag: str, worker_on: bool) -> dict[str, Any]:
            """PloyD under the burst; then its worker drains the inbox, and every 2xx'd
            delivery is counted there, stored and processed."""
            parts = srv.github
            url = srv.url + "/webhooks/github"
            await closed(url, "warm", self_cpu, 0.5)
            await asyncio.wait_for(parts.worker.drain(), 300)
            if not worker_on:
                await parts.worker.stop()  # the queue grows; restart picks the rows up
            r = await closed(url, tag, self_cpu)
            t = time.perf_counter()
            if not worker_on:
                await parts.worker.start()
            await asyncio.wait_for(parts.worker.drain(), 600)
            r["drain_s"] = time.perf_counter() - t
            r["stored"], r["processed"] = inbox_counts(srv, r["prefix"])
            r["worker_on"] = worker_on
            return r

        peers: dict[str, Child] = {}
        peer_note: dict[str, str] = {
            "bare": "aiohttp, reads the body, 202",
            "gidgethub": "aiohttp + gidgethub Event.from_http (verify + parse)",
        }
        for kind in ("bare", "gidgethub"):
            peers[kind] = await Child.start(f"peer {kind}", __file__, "--peer", kind)
        octo, octo_note = await start_octokit(root)
        if octo is not None:
            peers["octokit"] = octo
        peer_note["octokit"] = octo_note
        tput: dict[str, dict[str, Any]] = {}
        try:
            for kind, child in peers.items():
                port = (await child.read())["port"]
                url = f"http://127.0.0.1:{port}/webhooks/github"
                pid = child.proc.pid

                def cpu(pid: int = pid) -> float:
                    return proc_cpu(pid)

                await closed(url, "warm", cpu, 0.5)
                tput[kind] = await closed(url, kind, cpu)
        finally:
            for child in peers.values():
                await child.close()
        tput["ployd-sqlite"] = await ployd_closed(server, "sqlite", worker_on=False)
        tput["ployd-sqlite+worker"] = await ployd_closed(server, "sqlite-on", worker_on=True)
        pg_url = os.environ.get("PLOYD_BENCH_POSTGRES_URL") or os.environ.get(
            "PLOYD_TEST_POSTGRES_URL"
        )
        if pg_url:
            with postgres_database(pg_url) as db_url:
                pg_settings = dataclasses.replace(
                    settings, data_dir=root / "data-pg", database_url=db_url
                )
                pg_server = await start_server(pg_settings)
                settle_heap()
                try:
                    tput["ployd-postgres"] = await ployd_closed(pg_server, "pg", worker_on=False)
                finally:
                    await pg_server.stop()

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
        f"0. throughput, closed loop: {concurrency} connections x {duration:.0f} s each, "
        "the same signed pull_request, a fresh X-GitHub-Delivery each, one after another"
    )
    hdr0 = (
        f"   {'server':<22} {'2xx':>6} {'non-2xx':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'x octokit':>9} {'x gidgethub':>11} {'CPU ms/req':>10}  notes"
    )
    print(hdr0)
    print("   " + "-" * (len(hdr0) - 3))
    octo_t = tput["octokit"]["tput"] if "octokit" in tput else float("nan")
    gidget_t = tput["gidgethub"]["tput"]
    for kind, r in tput.items():
        if kind.startswith("ployd"):
            note = (
                f"inbox: {r['stored']} stored, {r['processed']} processed of {r['ok']} 2xx; "
                + ("worker on" if r["worker_on"] else "worker paused in the burst")
                + f", drained {r['drain_s']:.1f} s after"
            )
        else:
            note = peer_note[kind]
        print(
            f"   {kind:<22} {r['ok']:>6} {r['bad']:>7} {r['tput']:>8.0f} {r['p50']:>7.2f} "
            f"{r['p99']:>7.2f} {r['tput'] / octo_t:>9.2f} {r['tput'] / gidget_t:>11.2f} "
            f"{r['cpu_ms']:>10.3f}  {note}"
        )
    if "octokit" not in tput:
        print(f"   @octokit/webhooks not measured: {peer_note['octokit']}")
    print("   (the load generator is one Python process: the bare row is its ceiling here;")
    print("   CPU ms/req: the server process's own CPU per request, whatever else runs here)")
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
    sq = tput["ployd-sqlite"]["tput"]
    ok3 = "octokit" not in tput or sq >= 1.0 * octo_t
    ok4 = sq >= 0.5 * gidget_t
    print(
        f"target: ployd on SQLite >= 1.0x @octokit/webhooks: {sq / octo_t:.2f}x -> "
        + ("OK" if ok3 and "octokit" in tput else "NOT MEASURED" if ok3 else "TOO SLOW")
    )
    print(
        f"target: ployd on SQLite >= 0.5x gidgethub verify: {sq / gidget_t:.2f}x -> "
        + ("OK" if ok4 else "TOO SLOW")
    )
    ok5 = True
    if "ployd-postgres" in tput:
        ratio = tput["ployd-postgres"]["tput"] / sq
        ok5 = ratio >= 0.5
        print(f"target: PostgreSQL >= 0.5x SQLite: {ratio:.2f}x -> {'OK' if ok5 else 'TOO SLOW'}")
    else:
        print("target: PostgreSQL >= 0.5x SQLite: not measured (set PLOYD_BENCH_POSTGRES_URL)")
    lost = {
        k: (r["ok"], r["stored"], r["processed"])
        for k, r in tput.items()
        if k.startswith("ployd") and not (r["stored"] == r["processed"] == r["ok"])
    }
    ok6 = not lost
    print(
        "target: every 2xx'd delivery stored and processed: "
        + ("OK" if ok6 else f"MISSING (2xx, stored, processed): {lost}")
    )
    return 0 if all((ok1, ok2, ok3, ok4, ok5, ok6)) else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--fake-github":
        _fake_main(int(sys.argv[2]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--peer":
        _peer_main(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,400", help="deliveries/s per level")
    parser.add_argument("--pushes", type=int, default=40, help="push deliveries (part 2)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per server (0)")
    parser.add_argument("--connections", type=int, default=16, help="connections (part 0)")
    parser.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default=os.environ.get("PLOYD_EVENT_LOOP") or "auto",
        help="PloyD's event loop, as PLOYD_EVENT_LOOP sets it for `ployd serve`",
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    from app.server import run_on_loop

    return run_on_loop(args.event_loop, run(rates, args.pushes, args.duration, args.connections))


if __name__ == "__main__":
    sys.exit(main())
