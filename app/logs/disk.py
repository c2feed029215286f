"""Logs on disk: one file per attempt, appended in chunk order, read by byte range.

Beside each log, ``<attempt>.log.idx`` holds line checkpoints (``offset lines`` per
line, every ``CHECKPOINT_EVERY`` bytes at a chunk boundary), so the line number at any
offset of a 100 MB log costs one short read; and ``<attempt>.log.times`` when each
chunk arrived (``offset unix-milliseconds`` per chunk), the page's per-line timestamps.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from app.logs.store import LogStore

if TYPE_CHECKING:
    from app.store.db import Tx

CHECKPOINT_EVERY = 256 * 1024
READ_PIECE = 1 << 20


class DiskLogStore(LogStore):
    """Stores each attempt's log as ``ROOT/<pipeline>/<job>/<attempt>.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        # path -> (size, newlines in the whole log, offset of the last checkpoint)
        self._tails: dict[str, tuple[int, int, int]] = {}

    def _abs(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"log path outside the log store: {rel}")
        return p

    def append(
        self, path: str, data: bytes, seq: int | None = None, session: Tx | None = None
    ) -> int:
        """Append ``data``; returns the new size. Order and idempotence on ``seq`` are
        the engine's (``attempts.log_seq``, in the same transaction)."""
        p = self._abs(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self._index(path, p, size, data)
        if data:
            stamp = f"{size - len(data)} {int(time.time() * 1000)}\n".encode()
            fd = os.open(self._times(p), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, stamp)
            finally:
                os.close(fd)
        return size

    @staticmethod
    def _times(p: Path) -> Path:
        return p.with_name(p.name + ".times")

    def chunk_times(self, path: str) -> list[tuple[int, float]]:
        try:
            text = self._times(self._abs(path)).read_text()
        except FileNotFoundError:
            return []
        out = []
        for row in text.splitlines():
            off, _, ms = row.partition(" ")
            if off.isdigit() and ms.isdigit():
                out.append((int(off), int(ms) / 1000))
        return sorted(out)

    def _index(self, path: str, p: Path, size: int, data: bytes) -> None:
        with self._lock:
            tail = self._tails.get(path)
            if tail is None or tail[0] != size - len(data):
                tail = self._recount(path, p, size)
            else:
                tail = (size, tail[1] + data.count(b"\n"), tail[2])
            if size - tail[2] >= CHECKPOINT_EVERY:
                with self._idx(p).open("a") as f:
                    f.write(f"{size} {tail[1]}\n")
                tail = (size, tail[1], size)
            self._tails[path] = tail

    def _recount(self, path: str, p: Path, size: int) -> tuple[int, int, int]:
        """The tail after a restart: the last checkpoint, then count to the end."""
        points = self._checkpoints(p)
        off, lines = points[-1] if points else (0, 0)
        return size, lines + self._count(path, off, size), off

    @staticmethod
    def _idx(p: Path) -> Path:
        return p.with_name(p.name + ".idx")

    def _checkpoints(self, p: Path) -> list[tuple[int, int]]:
        try:
            text = self._idx(p).read_text()
        except FileNotFoundError:
            return []
        out = []
        for row in text.splitlines():
            off, _, lines = row.partition(" ")
            if off.isdigit() and lines.isdigit():
                out.append((int(off), int(lines)))
        return out

    def _count(self, path: str, start: int, end: int) -> int:
        count, offset = 0, start
        while offset < end:
            data = self.read(path, offset, min(READ_PIECE, end - offset))
            if not data:
                break
            count += data.count(b"\n")
            offset += len(data)
        return count

    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        p = self._abs(path)
        try:
            with p.open("rb") as f:
                f.seek(max(offset, 0))
                return f.read() if limit is None else f.read(max(limit, 0))
        except FileNotFoundError:
            return b""

    def size(self, path: str) -> int:
        try:
            return self._abs(path).stat().st_size
        except FileNotFoundError:
            return 0

    def finish(self, path: str) -> None:
        with self._lock:
            self._tails.pop(path, None)

    def lines_before(self, path: str, offset: int) -> int:
        if offset <= 0:
            return 0
        points = self._checkpoints(self._abs(path))
        i = bisect.bisect_right(points, (offset, float("inf"))) - 1
        off, lines = points[i] if i >= 0 else (0, 0)
        return lines + self._count(path, off, offset)
