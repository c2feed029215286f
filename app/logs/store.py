"""Logs on disk: one file per attempt, appended in chunk order, read by byte range."""

from __future__ import annotations

import os
from pathlib import Path


class LogStore:
    """Stores each attempt's log as ``ROOT/<pipeline>/<job>/<attempt>.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, pipeline_id: int, job_id: int, attempt_id: int) -> str:
        return f"{pipeline_id}/{job_id}/{attempt_id}.log"

    def _abs(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"log path outside the log store: {rel}")
        return p

    def append(self, rel: str, data: bytes) -> int:
        """Append ``data``; returns the new size."""
        p = self._abs(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def read(self, rel: str, offset: int = 0, limit: int | None = None) -> bytes:
        p = self._abs(rel)
        try:
            with p.open("rb") as f:
                f.seek(offset)
                return f.read() if limit is None else f.read(limit)
        except FileNotFoundError:
            return b""

    def size(self, rel: str) -> int:
        try:
            return self._abs(rel).stat().st_size
        except FileNotFoundError:
            return 0
