"""Running attempts' log chunks, as rows of ``log_chunks`` (the S3 log store keeps them
here until the attempt ends, then writes them to S3 as one object: ``app.logs.s3``).

A chunk is addressed by ``(attempt_id, seq)``; ``offset`` is where it starts in the log
and ``lines`` how many newlines come before it, so a byte range or a line number is found
without reading the log from its start; ``received_ms`` is when it arrived (the log page's
per-line timestamps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select

from app.core.states import AttemptState
from app.store.db import Tx
from app.store.models import Attempt, LogChunk


@dataclass(frozen=True)
class Chunk:
    """Where a chunk sits in its log (not its bytes)."""

    seq: int
    offset: int
    size: int
    lines: int  # newlines before it
    newlines: int  # newlines in it

    @property
    def end(self) -> int:
        return self.offset + self.size


_CHUNK = (LogChunk.seq, LogChunk.offset, LogChunk.size, LogChunk.lines, LogChunk.newlines)


def _chunk(row: Any) -> Chunk:
    return Chunk(int(row.seq), int(row.offset), int(row.size), int(row.lines), int(row.newlines))


def has_chunks(tx: Tx, attempt_id: int) -> bool:
    q = select(LogChunk.id).where(LogChunk.attempt_id == attempt_id).limit(1)
    return tx.scalar(q) is not None


def last(tx: Tx, attempt_id: int) -> Chunk | None:
    """The attempt's last chunk (highest ``seq``)."""
    row = tx.execute(
        select(*_CHUNK)
        .where(LogChunk.attempt_id == attempt_id)
        .order_by(LogChunk.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else _chunk(row)


def append(
    tx: Tx, attempt_id: int, data: bytes, seq: int | None = None, now: float | None = None
) -> int:
    """Store chunk ``seq`` (None: the next one) after the attempt's last chunk, received
    at ``now`` (Unix time; default the present); the log's size after it. A chunk already
    stored is not stored again (the size is then that of the chunks so far)."""
    tail = last(tx, attempt_id)
    end = tail.end if tail else 0
    if seq is None:
        seq = tail.seq + 1 if tail else 0
    dup = select(LogChunk.id).where(LogChunk.attempt_id == attempt_id, LogChunk.seq == seq)
    if tx.scalar(dup) is not None:
        return end  # this chunk is stored already
    tx.add(
        LogChunk(
            attempt_id=attempt_id,
            seq=seq,
            offset=end,
            size=len(data),
            lines=tail.lines + tail.newlines if tail else 0,
            newlines=data.count(b"\n"),
            data=data,
            received_ms=int((time.time() if now is None else now) * 1000),
        )
    )
    tx.flush()
    return end + len(data)


def read(tx: Tx, attempt_id: int, offset: int, end: int | None) -> bytes:
    """Bytes [offset, end) of the attempt's chunks (to their end when ``end`` is None)."""
    q = select(LogChunk.offset, LogChunk.data).where(
        LogChunk.attempt_id == attempt_id, LogChunk.offset + LogChunk.size > offset
    )
    if end is not None:
        q = q.where(LogChunk.offset < end)
    parts = []
    for off, data in tx.execute(q.order_by(LogChunk.seq)):
        lo = max(offset - off, 0)
        hi = len(data) if end is None else min(end - off, len(data))
        parts.append(bytes(data[lo:hi]))
    return b"".join(parts)


def lines_before(tx: Tx, attempt_id: int, offset: int) -> int | None:
    """How many newlines precede byte ``offset`` of the chunks; None when the attempt
    has no chunks (its log, if any, is elsewhere)."""
    row = tx.execute(
        select(LogChunk.offset, LogChunk.lines)
        .where(LogChunk.attempt_id == attempt_id, LogChunk.offset < offset)
        .order_by(LogChunk.offset.desc())
        .limit(1)
    ).first()
    if row is not None:
        chunk = read(tx, attempt_id, row.offset, offset)
        return int(row.lines) + chunk.count(b"\n")
    if has_chunks(tx, attempt_id):
        return 0
    return None


def times(tx: Tx, attempt_id: int) -> list[tuple[int, int]]:
    """(offset, Unix milliseconds) at which each of the attempt's chunks arrived, by
    offset; chunks stored without a time are left out."""
    rows = tx.execute(
        select(LogChunk.offset, LogChunk.received_ms)
        .where(LogChunk.attempt_id == attempt_id, LogChunk.received_ms.is_not(None))
        .order_by(LogChunk.offset)
    ).all()
    return [(int(off), int(ms)) for off, ms in rows if ms is not None]


def first_offset(tx: Tx, attempt_id: int) -> int | None:
    """Where the attempt's first chunk starts (above 0: after an earlier compaction)."""
    q = select(func.min(LogChunk.offset)).where(LogChunk.attempt_id == attempt_id)
    found = tx.scalar(q)
    return None if found is None else int(found)


def layout(tx: Tx, attempt_id: int) -> tuple[list[Chunk], int]:
    """The attempt's chunks in order, and how many newlines they hold in all."""
    rows = tx.execute(
        select(*_CHUNK).where(LogChunk.attempt_id == attempt_id).order_by(LogChunk.seq)
    ).all()
    total = tx.scalar(
        select(func.coalesce(func.sum(LogChunk.newlines), 0)).where(
            LogChunk.attempt_id == attempt_id
        )
    )
    return [_chunk(r) for r in rows], int(total or 0)


def data_between(tx: Tx, attempt_id: int, lo: int, hi: int) -> list[bytes]:
    """The bytes of chunks ``lo`` to ``hi`` (both included), in order."""
    rows = tx.execute(
        select(LogChunk.data)
        .where(LogChunk.attempt_id == attempt_id, LogChunk.seq >= lo, LogChunk.seq <= hi)
        .order_by(LogChunk.seq)
    ).all()
    return [bytes(data) for (data,) in rows]


def delete_through(tx: Tx, attempt_id: int, seq: int) -> None:
    """Drop the attempt's chunks up to ``seq`` (included)."""
    tx.execute(delete(LogChunk).where(LogChunk.attempt_id == attempt_id, LogChunk.seq <= seq))


def unfinished(tx: Tx) -> list[int]:
    """Attempts that ended but still have chunks (a replica stopped while compacting)."""
    final = [s.value for s in AttemptState if s.final]
    q = (
        select(LogChunk.attempt_id)
        .join(Attempt, Attempt.id == LogChunk.attempt_id)
        .where(Attempt.state.in_(final))
        .distinct()
    )
    return [int(x) for x in tx.scalars(q)]
