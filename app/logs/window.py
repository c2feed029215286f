"""Pages of a log by byte offset: the last N lines, N lines from an offset, N lines
before one; and the first error line of a failed attempt. Never the whole log: a page
reads at most ``max_bytes`` (plus one block), whatever the log's size.

Every function blocks on the store: call them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.cause import Cause, find_cause
from app.logs.store import LogStore

PAGE_LINES = 2000
MAX_PAGE_BYTES = 2 << 20
BLOCK = 256 * 1024
TAIL_BYTES = 64 * 1024  # how far back from the end the error is looked for (as reports do)


@dataclass(frozen=True)
class Window:
    """Bytes [start, end) of a log, which starts at line ``first_line`` (1-based)."""

    start: int
    end: int
    data: bytes
    first_line: int
    size: int  # the log's size (complete lines only, for a running attempt)

    @property
    def earlier(self) -> bool:
        return self.start > 0

    @property
    def later(self) -> bool:
        return self.end < self.size


def complete_end(store: LogStore, path: str, size: int) -> int:
    """The offset after the last newline at or before ``size`` (a running log's last
    line may still be growing); ``size`` when the last block has no newline."""
    if size <= 0:
        return 0
    lo = max(size - BLOCK, 0)
    block = store.read(path, lo, size - lo)
    i = block.rfind(b"\n")
    return lo + i + 1 if i >= 0 else size


def back_window(
    store: LogStore,
    path: str,
    end: int,
    size: int,
    lines: int = PAGE_LINES,
    max_bytes: int = MAX_PAGE_BYTES,
) -> Window:
    """The ``lines`` lines that end at byte ``end``."""
    floor = max(end - max_bytes, 0)
    chunks: list[bytes] = []
    pos, need, start, first = end, lines, None, True
    while pos > floor and start is None:
        lo = max(floor, pos - BLOCK)
        block = store.read(path, lo, pos - lo)
        if len(block) != pos - lo:  # the log is shorter than we were told
            block = block[: pos - lo]
        chunks.append(block)
        hi = len(block)
        if first and block.endswith(b"\n"):
            hi -= 1  # the newline that ends the last line starts no line
        first = False
        while need > 0:
            i = block.rfind(b"\n", 0, hi)
            if i < 0:
                break
            need -= 1
            hi = i
            if need == 0:
                start = lo + i + 1
        pos = lo
    data = b"".join(reversed(chunks))
    if start is None:
        if pos == 0:
            start = 0
        else:  # max_bytes reached: begin at the first whole line
            i = data.find(b"\n")
            start = pos + i + 1 if 0 <= i < len(data) - 1 else pos
    data = data[start - pos :]
    return Window(start, start + len(data), data, store.lines_before(path, start) + 1, size)


def forward_window(
    store: LogStore,
    path: str,
    start: int,
    size: int,
    lines: int = PAGE_LINES,
    max_bytes: int = MAX_PAGE_BYTES,
) -> Window:
    """The ``lines`` lines from byte ``start`` (moved to the start of its line)."""
    start = min(max(start, 0), size)
    if start > 0:  # align: begin after the newline before ``start``
        lo = max(start - BLOCK, 0)
        before = store.read(path, lo, start - lo)
        i = before.rfind(b"\n")
        start = lo + i + 1 if i >= 0 else lo
    data = store.read(path, start, min(max_bytes, size - start))
    pos = -1
    for _ in range(lines):
        pos = data.find(b"\n", pos + 1)
        if pos < 0:
            break
    if pos >= 0:
        data = data[: pos + 1]
    elif len(data) == max_bytes and b"\n" in data:
        data = data[: data.rfind(b"\n") + 1]
    return Window(start, start + len(data), data, store.lines_before(path, start) + 1, size)


@dataclass(frozen=True)
class ErrorLine:
    offset: int  # where the line starts
    line: int  # its 1-based number
    cause: Cause | None = None  # what the cause finder made of it (None: the last line)


def locate_error(
    store: LogStore,
    path: str,
    size: int,
    steps: Sequence[Mapping[str, Any]],
    failed_step: int | None,
) -> ErrorLine | None:
    """The line that says why the failing step failed (``app.core.cause``; looking at
    most ``TAIL_BYTES`` back from the end, as the check run's excerpt does), else the
    last line."""
    if size <= 0:
        return None
    step = next((s for s in steps if s.get("index") == failed_step), None)
    step_off = step.get("log_offset") if step else None
    start = max(int(step_off) if isinstance(step_off, int) else 0, size - TAIL_BYTES)
    data = store.read(path, start, size - start)
    if start > 0 and start != step_off:  # a partial first line
        i = data.find(b"\n")
        if i < 0:
            return None
        start, data = start + i + 1, data[i + 1 :]
    rows = data.split(b"\n")
    if data.endswith(b"\n"):
        rows.pop()
    if not rows:
        return None
    cause = find_cause([r.decode("utf-8", "replace") for r in rows])
    idx = cause.index if cause is not None else len(rows) - 1
    offset = start + sum(len(r) + 1 for r in rows[:idx])
    return ErrorLine(offset, store.lines_before(path, offset) + 1, cause)
