"""Where attempts' logs live: the ``LogStore`` interface and its choice at start.

A log is addressed by its path (``<pipeline>/<job>/<attempt>.log``, from ``path_for``).
Chunks from the agent are appended in order; the engine accepts chunk ``seq`` only once
(``attempts.log_seq``), and a store that keeps chunks in the database also refuses a
second copy of one (unique ``(attempt_id, seq)``). Reads are by byte range, so a page of
a 100 MB log never loads the whole log.

Two implementations:

* ``DiskLogStore`` (``app.logs.disk``): one file per attempt under
  ``PLOYD_DATA_DIR/logs``, the embedded default.
* ``S3LogStore`` (``app.logs.s3``): with ``PLOYD_S3_BUCKET``. A running attempt's chunks
  are rows of ``log_chunks`` (any replica may receive them); ``finish`` writes the log
  as ONE S3 object and deletes the rows; reads of a finished log are range GETs.

``make_log_store`` builds the one the settings ask for; ``LogStore`` itself is abstract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings
    from app.store.db import Database, Tx


class LogStore(ABC):
    """Append, read by byte range, size, finish; plus line numbers at a byte offset.

    Every method blocks (a file, the database, S3): from the event loop, call the
    reading ones through ``asyncio.to_thread``. ``append`` is the exception: it is
    called inside the engine's transaction and, for S3, touches only the database.
    """

    #: True when ``finish`` does real work (the S3 store compacts chunks).
    needs_finish: bool = False

    def path_for(self, pipeline_id: int, job_id: int, attempt_id: int) -> str:
        return f"{pipeline_id}/{job_id}/{attempt_id}.log"

    @abstractmethod
    def append(
        self, path: str, data: bytes, seq: int | None = None, session: Tx | None = None
    ) -> int:
        """Append chunk ``seq``; returns the log's new size. ``session`` is the caller's
        open transaction: a store that keeps chunks in the database writes them there,
        so a chunk and the attempt's ``log_seq`` commit together."""

    @abstractmethod
    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        """Up to ``limit`` bytes (all when None) from ``offset``; b"" past the end."""

    @abstractmethod
    def size(self, path: str) -> int:
        """The log's size in bytes (0 when there is none)."""

    @abstractmethod
    def finish(self, path: str) -> None:
        """The attempt has ended: nothing more will be appended."""

    def chunk_times(self, path: str) -> list[tuple[int, float]]:
        """(offset, Unix time) at which each chunk of the log was received, by offset:
        the log page's per-line timestamps. [] when this store keeps none."""
        return []

    @abstractmethod
    def lines_before(self, path: str, offset: int) -> int:
        """How many newlines precede byte ``offset``: the 1-based number of the line
        that starts there, minus one. Uses an index, not a scan from the start."""


def make_log_store(settings: Settings, db: Database) -> LogStore:
    """The store the settings ask for: S3 when ``PLOYD_S3_BUCKET`` is set, else disk."""
    if settings.s3_bucket:
        from app.logs.s3 import S3Config, S3LogStore

        return S3LogStore(
            db,
            S3Config(
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                region=settings.aws_region or None,
                endpoint_url=settings.aws_endpoint_url or None,
            ),
        )
    from app.logs.disk import DiskLogStore

    return DiskLogStore(settings.logs_dir)
