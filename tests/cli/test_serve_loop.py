"""`ployd serve` runs on uvloop where it is installed (PLOYD_EVENT_LOOP=auto), on
asyncio's own loop when asked, and refuses a loop it does not know or cannot load."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.server import loop_factory, loop_name, run_on_loop
from app.settings import Settings, SettingsError
from tests.cli.test_serve_single import _port, wait_serving


def serve_and_read_log(tmp_path: Path, **env: str) -> str:
    """Start `ployd serve` with ``env``, wait for /healthz, stop it: what it logged."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")}
    port = _port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            env={
                **base,
                "PLOYD_DATA_DIR": str(tmp_path / "data"),
                "PLOYD_LOCAL_AGENTS": "0",
                "PLOYD_PORT": str(port),
                **env,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_serving(proc, port, log.read_text)
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    return log.read_text()


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_serve_runs_on_uvloop_by_default_and_on_asyncio_when_asked(tmp_path: Path) -> None:
    assert "event loop: uvloop" in serve_and_read_log(tmp_path / "auto")
    assert "event loop: asyncio" in serve_and_read_log(
        tmp_path / "asyncio", PLOYD_EVENT_LOOP="asyncio"
    )


def test_an_unknown_event_loop_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")}
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env={**env, "PLOYD_DATA_DIR": str(tmp_path / "data"), "PLOYD_EVENT_LOOP": "trio"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "PLOYD_EVENT_LOOP='trio': one of auto, uvloop, asyncio" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before the data dir was made


def test_uvloop_asked_for_where_it_is_missing_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def without_uvloop(name: str, *args: object) -> object:
        return None if name == "uvloop" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_uvloop)
    with pytest.raises(SettingsError, match="PLOYD_EVENT_LOOP=uvloop: uvloop is not installed"):
        Settings.from_env({"PLOYD_EVENT_LOOP": "uvloop"})
    assert Settings.from_env({"PLOYD_EVENT_LOOP": "auto"}).event_loop == "auto"
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop: ImportError
    assert loop_factory("auto") is None  # auto: asyncio's own loop then
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_run_on_loop_runs_the_coroutine_on_the_loop_named() -> None:
    async def which() -> str:
        return loop_name()

    assert run_on_loop("asyncio", which()) == "asyncio"
    if importlib.util.find_spec("uvloop") is not None:
        assert run_on_loop("uvloop", which()) == "uvloop"
