"""SIGHUP makes a running `ployd serve` read PLOYD_POLICY_FILE again: a real process, a
real signal, the effect read back over the admin API; a bad file keeps the old policy."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from app.settings import Settings
from app.store.db import Database
from app.store.models import Pipeline

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n"


async def until(check: Callable[[], Any], what: str, deadline_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_sighup_reads_the_policy_file_again(
    tmp_path: Path, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("defaults:\n  max_timeout: 2h\n")
    repo, _ = make_repo({".ployd.yml": CONFIG})
    env = {
        **os.environ,
        "PLOYD_HOST": "127.0.0.1",
        "PLOYD_PORT": "0",
        "PLOYD_DATA_DIR": str(tmp_path / "data"),
        "PLOYD_LOCAL_AGENTS": "0",
        "PLOYD_POLICY_FILE": str(policy),
    }
    env.pop("PLOYD_DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    logs: list[str] = []

    async def read_logs() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            logs.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read_logs())
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"listening on (http://\S+)", first)
        assert found, first + "".join(logs)
        url = found.group(1)
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/api/v1/pipelines", json={"repo": str(repo)}) as r:
                assert r.status == 201, await r.text()
                pid = int((await r.json())["id"])
            db = Database.connect(Settings.from_env(env).db_url)
            try:
                with db.session() as s:
                    pipeline = s.get(Pipeline, pid)
                    assert pipeline is not None
                    tid = pipeline.repository.tenant_id
            finally:
                db.dispose()

            async def effective() -> dict[str, Any]:
                async with http.get(url + f"/api/v1/tenants/{tid}/policy") as r:
                    assert r.status == 200
                    body: dict[str, Any] = await r.json()
                    return body["effective"]

            assert await effective() == {"max_timeout": "2h"}
            policy.write_text("defaults:\n  max_timeout: 1h\n  allowed_hardware: [cpu]\n")
            assert await effective() == {"max_timeout": "2h"}  # not before the signal
            proc.send_signal(signal.SIGHUP)

            async def reloaded() -> bool:
                return await effective() == {"max_timeout": "1h", "allowed_hardware": ["cpu"]}

            await until(reloaded, "the new policy after SIGHUP")
            policy.write_text("defaults: [unclosed\n")
            proc.send_signal(signal.SIGHUP)

            async def refused() -> bool:
                return any("policy file not reloaded" in line for line in logs)

            await until(refused, "the bad file to be reported")
            assert await reloaded()  # the previous policy stays in force
        assert proc.returncode is None  # SIGHUP did not stop it
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
        await reader
    assert code == 0, "".join(logs)
