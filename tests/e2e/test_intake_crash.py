"""Durability of the webhook intake under ``kill -9`` (issue 15), on both databases.

`ployd serve` runs as its own process; signed deliveries go at it concurrently and it is
SIGKILLed in the middle of the burst. Restarted on the same database, every delivery that
was answered 2xx is in the inbox (group commit answers only after the commit), each once,
and a delivery sent again is acknowledged as a duplicate and not stored twice.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from app.store.db import Database
from app.store.models import InboxEvent
from tests.conftest import pid_gone
from tests.fakes.github import delivery_headers, load_fixture, serve_fake_github

ROOT = Path(__file__).resolve().parents[2]
SECRET = "crash-test-secret"
N = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_serve(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "serve", cwd=str(ROOT), env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{env['PLOYD_PORT']}/healthz"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:  # poll the server's state, with a deadline
            assert proc.returncode is None, log.read_text()[-3000:]
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("ployd serve did not start:\n" + log.read_text()[-3000:])


async def test_kill_9_mid_burst_loses_no_answered_delivery(tmp_path: Path, db_url: str) -> None:
    async with serve_fake_github() as fake:
        repo = fake.add_repo("acme", "durable", files={"README.md": "x\n"})
        inst = fake.installations[repo.installation_id]
        push = copy.deepcopy(load_fixture("push.1"))
        push.update(
            ref="refs/heads/main",
            before="0" * 40,
            after=repo.branches["main"],
            repository={
                "id": repo.id,
                "name": "durable",
                "full_name": "acme/durable",
                "owner": {"login": "acme"},
                "default_branch": "main",
            },
            installation={"id": inst.id, "account": {"login": inst.account}},
        )
        body = json.dumps(push).encode()
        key = tmp_path / "app.pem"
        key.write_text(fake.private_key_pem)
        env = {
            **os.environ,
            "PLOYD_HOST": "127.0.0.1",
            "PLOYD_PORT": str(free_port()),
            "PLOYD_DATA_DIR": str(tmp_path / "data"),
            "PLOYD_DATABASE_URL": db_url,
            "PLOYD_LOCAL_AGENTS": "0",
            "PLOYD_GITHUB_APP_ID": str(fake.app_id),
            "PLOYD_GITHUB_PRIVATE_KEY_FILE": str(key),
            "PLOYD_GITHUB_API_URL": fake.url,
            "PLOYD_GITHUB_WEBHOOK_SECRET": SECRET,
        }
        log = tmp_path / "serve.log"
        url = f"http://127.0.0.1:{env['PLOYD_PORT']}/webhooks/github"
        proc = await start_serve(env, log)
        answered: list[str] = []
        killed = asyncio.Event()

        async def deliver(http: aiohttp.ClientSession, delivery: str) -> None:
            headers = delivery_headers("push", body, SECRET, delivery_id=delivery)
            try:
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if 200 <= r.status < 300:
                        answered.append(delivery)
            except (TimeoutError, aiohttp.ClientError):
                return  # the server died under this one: it was not answered
            if len(answered) >= N // 5 and not killed.is_set():
                killed.set()
                os.kill(proc.pid, signal.SIGKILL)  # the server we started, by its pid

        connector = aiohttp.TCPConnector(limit=32)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.gather(*(deliver(http, f"crash-{n}") for n in range(N)))
        await proc.wait()
        assert killed.is_set() and proc.returncode == -signal.SIGKILL and pid_gone(proc.pid)
        assert N // 5 <= len(answered) < N  # killed mid-burst: some were never answered

        proc = await start_serve(env, log)
        try:
            async with aiohttp.ClientSession() as http:
                again = answered[:20]
                for delivery in again:  # GitHub's redelivery of an answered delivery
                    headers = delivery_headers("push", body, SECRET, delivery_id=delivery)
                    async with http.post(url, data=body, headers=headers) as r:
                        assert r.status == 200 and (await r.json())["duplicate"] == delivery
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()

        db = Database.connect(db_url, migrate=False)
        try:
            with db.session() as s:
                stored = set(s.scalars(select(InboxEvent.delivery_id)).all())
                n_rows = s.scalar(select(func.count()).select_from(InboxEvent))
        finally:
            db.dispose()
        missing = [d for d in answered if d not in stored]
        assert not missing, f"{len(missing)} deliveries answered 2xx were lost: {missing[:5]}"
        assert n_rows == len(stored)  # each once
        fake.take_violations()
