"""SQLite is the embedded, one-process default: a second `ployd serve` on the same
database file refuses to start, says why, and points at PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(proc: subprocess.Popen[bytes], port: int, exited: Callable[[], str]) -> None:
    """Poll `ployd serve`'s /healthz on ``port`` until it answers; fail if ``proc`` exits
    first (with ``exited()``'s text) or after 120 s."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, exited()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return
        except OSError:
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.2)  # a poll interval


def test_a_second_server_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")}
    env |= {"PLOYD_DATA_DIR": str(tmp_path / "data"), "PLOYD_LOCAL_AGENTS": "0"}
    port = _port()
    first = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        env={**env, "PLOYD_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_serving(first, port, lambda: "the first server exited")
        second = subprocess.run(
            [sys.executable, "-m", "app", "serve"],
            env={**env, "PLOYD_PORT": str(_port())},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr
        assert "SQLite is for one process" in second.stderr
        assert "PostgreSQL" in second.stderr and "Run several replicas" in second.stderr
        assert first.poll() is None  # the first one serves on, untouched
    finally:
        first.terminate()
        first.wait(60)
