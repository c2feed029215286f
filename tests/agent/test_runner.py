"""The step runner: exit codes, bash semantics, timeouts, cancellation, masking, flushing."""

from __future__ import annotations

import asyncio
import base64
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from app.agent.runner import JobResult, LogStream, Masker, StepSpec, run_steps


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.steps: list[tuple[int, str, int | None]] = []
        self.triggers: list[tuple[str, asyncio.Event]] = []

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    async def log(self, data: str) -> None:
        self.chunks.append(data)
        for needle, ev in self.triggers:
            if needle in self.text:
                ev.set()

    async def step(self, index: int, state: str, code: int | None) -> None:
        self.steps.append((index, state, code))


def S(i: int, run: str, **kw: object) -> StepSpec:
    return StepSpec(index=i, title=kw.pop("title", f"step{i}"), run=run, **kw)  # type: ignore[arg-type]


async def go(tmp_path: Path, steps: list[StepSpec], rec: Recorder, **kw: object) -> JobResult:
    return await run_steps(
        steps, cwd=tmp_path, on_log=rec.log, on_step=rec.step, **kw  # type: ignore[arg-type]
    )


async def test_success_and_headers(tmp_path: Path) -> None:
    rec = Recorder()
    r = await go(tmp_path, [S(0, "echo hello", title="Install"), S(1, "echo err >&2")], rec)
    assert r.result == "succeeded" and r.reason is None and r.exit_code == 0
    assert [s.state for s in r.steps] == ["succeeded", "succeeded"]
    lines = rec.text.splitlines()
    assert lines[0] == "▶ Install"
    assert lines[1] == "hello"
    assert lines[2].startswith("✓ Install (")
    assert "err" in lines  # stderr merged
    assert rec.steps == [(0, "running", None), (0, "succeeded", 0),
                         (1, "running", None), (1, "succeeded", 0)]


async def test_failure_exit_code_skips_rest(tmp_path: Path) -> None:
    rec = Recorder()
    r = await go(tmp_path, [S(0, "true"), S(1, "exit 3", title="pytest"), S(2, "echo never")], rec)
    assert (r.result, r.reason, r.failed_step, r.exit_code) == ("failed", "script_failure", 1, 3)
    assert [s.state for s in r.steps] == ["succeeded", "failed", "skipped"]
    assert (1, "failed", 3) in rec.steps and (2, "skipped", None) in rec.steps
    assert "✗ pytest (exit 3, " in rec.text and "never" not in rec.text


@pytest.mark.parametrize(
    "script",
    ["false\necho after", "false | true\necho after", "cat /nonexistent | sort\necho after"],
)
async def test_errexit_and_pipefail(tmp_path: Path, script: str) -> None:
    rec = Recorder()
    r = await go(tmp_path, [S(0, script)], rec)
    assert r.result == "failed"
    assert "after" not in rec.text


async def test_env_layers_and_cwd(tmp_path: Path) -> None:
    rec = Recorder()
    steps = [S(0, 'echo "$A $B $C $TOKEN_X"; pwd', env={"B": "step", "C": "c"})]
    r = await go(
        tmp_path, steps, rec, env={"A": "job", "B": "job"}, base_env={"PATH": os.environ["PATH"]},
        secrets={"TOKEN_X": "tok-123"},
    )
    assert r.succeeded
    assert "job step c ***" in rec.text
    assert str(tmp_path) in rec.text


async def test_step_timeout_kills_group_with_background_child(
    tmp_path: Path, wait_gone: Callable[[int], bool]
) -> None:
    rec = Recorder()
    script = "sleep 300 &\necho $! > child.pid\nwait"
    r = await go(tmp_path, [S(0, script, timeout_s=0.3), S(1, "echo next")], rec, kill_grace_s=1)
    assert (r.result, r.reason, r.failed_step) == ("timed_out", "timeout", 0)
    assert [s.state for s in r.steps] == ["timed_out", "skipped"]
    assert "step timeout" in rec.text
    child = int((tmp_path / "child.pid").read_text())
    assert wait_gone(child)


async def test_sigterm_ignored_is_killed_after_grace(
    tmp_path: Path, wait_gone: Callable[[int], bool]
) -> None:
    rec = Recorder()
    script = "trap '' TERM\nsleep 300 &\necho $! > child.pid\nwait"
    r = await go(tmp_path, [S(0, script, timeout_s=0.3)], rec, kill_grace_s=0.2)
    assert r.result == "timed_out"
    assert wait_gone(int((tmp_path / "child.pid").read_text()))


async def test_step_timeout_with_continue_on_error_goes_on(tmp_path: Path) -> None:
    rec = Recorder()
    steps = [S(0, "sleep 300", timeout_s=0.2, continue_on_error=True), S(1, "echo next")]
    r = await go(tmp_path, steps, rec, kill_grace_s=0.5)
    assert r.result == "succeeded"
    assert [s.state for s in r.steps] == ["timed_out", "succeeded"]


async def test_job_timeout(tmp_path: Path) -> None:
    rec = Recorder()
    steps = [S(0, "true"), S(1, "sleep 300", timeout_s=100), S(2, "true")]
    t0 = time.monotonic()
    r = await go(tmp_path, steps, rec, timeout_s=0.4, kill_grace_s=0.5)
    assert time.monotonic() - t0 < 5
    assert (r.result, r.reason, r.failed_step) == ("timed_out", "timeout", 1)
    assert [s.state for s in r.steps] == ["succeeded", "timed_out", "skipped"]
    assert "job timeout" in rec.text


async def test_cancel_mid_step_kills_group(
    tmp_path: Path, wait_gone: Callable[[int], bool]
) -> None:
    rec = Recorder()
    cancel = asyncio.Event()
    rec.triggers.append(("ready", cancel))
    script = "sleep 300 &\necho $! > child.pid\necho ready\nwait"
    r = await go(tmp_path, [S(0, script), S(1, "echo never")], rec, cancel=cancel,
                 flush_interval=0.01, kill_grace_s=1)
    assert (r.result, r.reason, r.failed_step) == ("cancelled", "cancelled", 0)
    assert [s.state for s in r.steps] == ["cancelled", "skipped"]
    assert wait_gone(int((tmp_path / "child.pid").read_text()))
    assert "never" not in rec.text


async def test_cancel_before_start(tmp_path: Path) -> None:
    rec = Recorder()
    cancel = asyncio.Event()
    cancel.set()
    r = await go(tmp_path, [S(0, "touch ran"), S(1, "true")], rec, cancel=cancel)
    assert r.result == "cancelled"
    assert not (tmp_path / "ran").exists()


async def test_continue_on_error(tmp_path: Path) -> None:
    rec = Recorder()
    steps = [S(0, "exit 2", continue_on_error=True, title="flaky"), S(1, "echo next")]
    r = await go(tmp_path, steps, rec)
    assert r.result == "succeeded" and r.failed_step is None
    assert [(s.state, s.exit_code) for s in r.steps] == [("failed", 2), ("succeeded", 0)]
    assert "(continue-on-error)" in rec.text and "next" in rec.text


async def test_background_child_holding_output_does_not_hang(
    tmp_path: Path, wait_gone: Callable[[int], bool]
) -> None:
    rec = Recorder()
    script = "sleep 300 &\necho $! > child.pid\necho done"
    r = await go(tmp_path, [S(0, script), S(1, "echo next")], rec, drain_s=0.1)
    assert r.result == "succeeded" and "next" in rec.text
    assert wait_gone(int((tmp_path / "child.pid").read_text()))  # killed at job end


async def test_masks_plain_base64_and_url_forms(tmp_path: Path) -> None:
    rec = Recorder()
    secret = "p@ss word/x+y=z"
    url_py = "import urllib.parse as u, os; print(u.quote(os.environ['SEC'], safe=''))"
    script = (
        'echo "plain: $SEC"\n'
        'printf %s "$SEC" | base64\n'
        f"{sys.executable} -c {shlex.quote(url_py)}\n"
    )
    r = await go(tmp_path, [S(0, script)], rec, secrets={"SEC": secret})
    assert r.succeeded
    text = rec.text
    assert secret not in text
    assert base64.b64encode(secret.encode()).decode().rstrip("=") not in text
    assert quote(secret, safe="") not in text
    assert text.count("***") == 3


def test_masker_secret_split_at_every_position() -> None:
    secret = "hunter2-very-secret"
    line = f"token={secret} and {base64.b64encode(secret.encode()).decode()}\n"
    for cut in range(1, len(line)):
        for cut2 in range(cut, len(line), 7):
            m = Masker([secret])
            out = m.feed(line[:cut]) + m.feed(line[cut:cut2]) + m.feed(line[cut2:]) + m.finish()
            assert out == "token=*** and ***\n", (cut, cut2, out)


def test_masker_releases_a_harmless_tail() -> None:
    m = Masker(["abcdef"])
    assert m.feed("xx abc") == "xx "  # could be the start of the secret: held
    assert m.feed("xyz") == "abcxyz"
    assert m.feed("ab") == ""
    assert m.finish() == "ab"


async def test_secret_split_across_reads_end_to_end(tmp_path: Path) -> None:
    """The secret's two halves leave the process in two writes (two pipe reads)."""
    rec = Recorder()
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    got_first = asyncio.Event()
    rec.triggers.append(("before-", got_first))
    script = (
        f'printf "before-%s" "${{SEC:0:5}}"\nread x < {fifo}\n'
        'printf "%s-after\\n" "${SEC:5}"'
    )

    async def release() -> None:
        await got_first.wait()
        fd = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
        os.write(fd, b"go\n")
        os.close(fd)

    helper = asyncio.create_task(release())
    r = await go(tmp_path, [S(0, script)], rec, secrets={"SEC": "0123456789abc"},
                 flush_interval=0.01)
    await helper
    assert r.succeeded
    assert "0123456789abc" not in rec.text and "01234" not in rec.text
    assert "before-***-after" in rec.text


async def test_flushes_while_the_step_runs(tmp_path: Path) -> None:
    """Output reaches the sink within the flush interval, before the step ends."""
    rec = Recorder()
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    first = asyncio.Event()
    rec.triggers.append(("first", first))

    async def release() -> None:
        await first.wait()
        assert "second" not in rec.text
        fd = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
        os.write(fd, b"go\n")
        os.close(fd)

    helper = asyncio.create_task(release())
    r = await go(tmp_path, [S(0, f"echo first\nread x < {fifo}\necho second")], rec,
                 flush_interval=0.05)
    await helper
    assert r.succeeded and "second" in rec.text


async def test_large_output_is_chunked(tmp_path: Path) -> None:
    chunks: list[str] = []

    async def sink(data: str) -> None:
        chunks.append(data)

    stream = LogStream(sink, flush_interval=60)
    r = await run_steps([S(0, "head -c 300000 /dev/zero | tr '\\0' x")], cwd=tmp_path,
                        on_log=sink)
    assert r.succeeded
    body = "".join(chunks)
    assert body.count("x") == 300000
    assert len(chunks) > 3
    assert max(len(c) for c in chunks) <= stream.max_buffer + 64 * 1024 + 100


async def test_undecodable_bytes_do_not_break_the_stream(tmp_path: Path) -> None:
    rec = Recorder()
    r = await go(tmp_path, [S(0, "printf 'a\\xffb\\n'; printf '\\xc3'; printf '\\xa9\\n'")], rec)
    assert r.succeeded
    assert "a\ufffdb" in rec.text and "é" in rec.text
