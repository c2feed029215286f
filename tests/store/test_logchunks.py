"""A running attempt's log chunks as rows, on both databases: appended in order and once,
read by byte range, line numbers, compaction's layout, and what is left after a crash."""

from __future__ import annotations

from app.store import logchunks as chunks
from tests.store import rows as make


def test_chunks_in_order_once_and_by_range(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        p = make.pipeline(s, make.repository(s, make.tenant(s, "acme"), "acme/app"))
        a = make.attempt(s, make.job(s, p, "t"), "running")
        assert not chunks.has_chunks(s, a.id) and chunks.last(s, a.id) is None
        assert chunks.lines_before(s, a.id, 5) is None  # no chunks: the log is elsewhere

        assert chunks.append(s, a.id, b"one\ntwo\n", 0) == 8
        assert chunks.append(s, a.id, b"three", 1) == 13
        assert chunks.append(s, a.id, b"three", 1) == 13  # a repeated chunk: a no-op
        assert chunks.append(s, a.id, b"\nfour\n") == 19  # no seq: the next one
        last = chunks.last(s, a.id)
        assert last is not None and (last.seq, last.offset, last.end) == (2, 13, 19)
        assert (last.lines, last.newlines) == (2, 2)

        assert chunks.read(s, a.id, 0, None) == b"one\ntwo\nthree\nfour\n"
        assert chunks.read(s, a.id, 4, 11) == b"two\nthr"
        assert chunks.read(s, a.id, 19, None) == b""
        assert [chunks.lines_before(s, a.id, off) for off in (0, 4, 8, 14, 19)] == [
            0,
            1,
            2,
            3,
            4,
        ]

        layout, newlines = chunks.layout(s, a.id)
        assert [(c.seq, c.offset, c.size, c.lines) for c in layout] == [
            (0, 0, 8, 0),
            (1, 8, 5, 2),
            (2, 13, 6, 2),
        ]
        assert newlines == 4
        assert chunks.data_between(s, a.id, 1, 2) == [b"three", b"\nfour\n"]
        chunks.delete_through(s, a.id, 1)
        assert [c.seq for c in chunks.layout(s, a.id)[0]] == [2]


def test_unfinished_lists_ended_attempts_with_chunks(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        p = make.pipeline(s, make.repository(s, make.tenant(s, "acme"), "acme/app"))
        j = make.job(s, p, "t")
        ended = make.attempt(s, j, "failed")
        running = make.attempt(s, j, "running")
        compacted = make.attempt(s, j, "succeeded")
        for a in (ended, running):
            chunks.append(s, a.id, b"x\n", 0)
            chunks.append(s, a.id, b"y\n", 1)
        assert chunks.unfinished(s) == [ended.id]
        assert compacted.id not in chunks.unfinished(s)
