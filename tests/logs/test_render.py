"""ANSI to HTML, and paging a large log without reading it whole."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.logs.disk import DiskLogStore
from app.logs.window import back_window, forward_window, locate_error
from app.reporters.views import failure_details
from app.web.logs.ansi import AnsiState, plain, render_line


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain", "plain"),
        ("\x1b[31mred\x1b[0m after", '<span class="f1">red</span> after'),
        (
            "\x1b[1;92mok\x1b[22m still",
            '<span class="f10 b">ok</span><span class="f10"> still</span>',
        ),
        ("\x1b[38;5;4mblue\x1b[39m", '<span class="f4">blue</span>'),
        ("\x1b[38;5;200mpink\x1b[38;2;1;2;3mrgb", "pinkrgb"),
        ("\x1b[41;97m on red \x1b[m", '<span class="f15 b1"> on red </span>'),
        ("<script>alert(1)</script>&", "&lt;script&gt;alert(1)&lt;/script&gt;&amp;"),
        ("\"quoted\" 'x'", "\"quoted\" 'x'"),
        ("10%\r50%\r100% done", "100% done"),
        ("erase\x1b[K line\x1b[2A", "erase line"),
        ("\x1b]0;title\x07text \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "text link"),
        ("bell\x07 nul\x00 tab\tkept", "bell nul tab\tkept"),
    ],
)
def test_ansi_to_html(text: str, html: str) -> None:
    assert render_line(text, AnsiState()) == html


def test_ansi_state_carries_to_the_next_line() -> None:
    state = AnsiState()
    assert render_line("\x1b[33mwarning:", state) == '<span class="f3">warning:</span>'
    assert render_line("still yellow\x1b[0m", state) == '<span class="f3">still yellow</span>'
    assert render_line("plain", state) == "plain"
    assert plain("\x1b[1mbold\x1b[0m\r") == "bold"


def big_log(path: Path, mb: int) -> bytes:
    """A generated log of about ``mb`` MB with an error line in the middle."""
    line = b"step output \x1b[32mok\x1b[0m " + b"." * 60 + b"\n"
    n = mb * (1 << 20) // len(line)
    data = line * (n // 2) + b"E   AssertionError: boom\n" + line * (n // 2)
    store = DiskLogStore(path)
    for i in range(0, len(data), 1 << 20):
        store.append("1/1/1.log", data[i : i + (1 << 20)])
    return data


class CountingStore(DiskLogStore):
    bytes_read = 0

    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        data = super().read(path, offset, limit)
        self.bytes_read += len(data)
        return data


def test_paging_a_20mb_log_reads_only_pages(tmp_path: Path) -> None:
    data = big_log(tmp_path, 20)
    store = CountingStore(tmp_path)
    size = len(data)
    tail = back_window(store, "1/1/1.log", size, size)
    assert tail.end == size and tail.data.count(b"\n") == 2000
    total_lines = data.count(b"\n")
    assert tail.first_line == total_lines - 1999
    assert data[tail.start - 1 : tail.start] == b"\n"
    assert store.bytes_read < 3 << 20, store.bytes_read
    earlier = back_window(store, "1/1/1.log", tail.start, size)
    assert earlier.end == tail.start and earlier.first_line == tail.first_line - 2000
    later = forward_window(store, "1/1/1.log", earlier.end + 5, size)  # aligned back
    assert later.start == tail.start and later.first_line == tail.first_line
    first = forward_window(store, "1/1/1.log", 0, size, lines=10)
    assert first.first_line == 1 and first.data == b"".join(data.splitlines(True)[:10])
    assert store.bytes_read < 12 << 20


def test_error_line_matches_the_reports(tmp_path: Path) -> None:
    from types import SimpleNamespace

    store = DiskLogStore(tmp_path)
    text = "".join(f"line {i}\n" for i in range(5000)) + "Traceback (most recent call last):\n"
    text += "".join(f"  frame {i}\n" for i in range(10))
    store.append("1/1/1.log", text.encode())
    size = len(text.encode())
    steps = [{"index": 0, "log_offset": 0}]
    found = locate_error(store, "1/1/1.log", size, steps, 0)
    assert found is not None and found.line == 5001
    attempt = SimpleNamespace(log_path="1/1/1.log", steps=steps, failed_step=0, log_size=size)
    assert failure_details(store, attempt)[2] == found.line  # type: ignore[arg-type]


async def test_page_of_a_large_log_is_paged(log_world: Callable[..., Any], tmp_path: Path) -> None:
    async with log_world() as w:
        pid = w.pipeline()
        c = await w.claim()
        w.step(c, 0, "running")
        line = "progress " + "=" * 70 + "\n"
        block = line * ((1 << 20) // len(line))
        for _ in range(20):
            w.log(c, block)
        w.log(c, "ERROR: the GPU fell over\n")
        w.log(c, "ok\n" * 3000)  # short lines: the error is within the last 64 KB
        w.step(c, 0, "failed", 1)
        w.finish(c, "failed", failed_step=0, code=1)
        job = w.job_id(pid)
        status, page, _ = await w.get(w.link(job))
        assert status == 200
        numbers = [int(n) for n in re.findall(r'<div class="l[^"]*" id="L(\d+)"', page)]
        err = re.search(r'<div class="l err" id="L(\d+)"', page)
        assert err is not None and "the GPU fell over" in page
        # The error is not in the last 2000 lines: the page starts 100 lines above it.
        assert numbers[0] == int(err.group(1)) - 100 and len(numbers) == 2000
        assert "earlier lines" in page and "later lines" in page
        assert len(page) < 1 << 20
        later = re.search(r'href="([^"]+)">↓ later lines', page)
        assert later is not None
        status, page2, _ = await w.get(w.url + later.group(1).replace("&amp;", "&"))
        numbers2 = [int(n) for n in re.findall(r'id="L(\d+)"', page2)]
        assert numbers2[0] == numbers[-1] + 1
