"""Both log stores: chunks in order and once, byte ranges, line numbers; S3 (moto):
chunks in the database while running, one object after, range GETs."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from app.engine.engine import OutOfOrder
from app.logs.disk import DiskLogStore
from app.logs.s3 import S3LogStore
from app.logs.store import LogStore
from app.protocol import LogChunk as Chunk
from app.store.models import LogChunk
from tests.logs.world import LogWorld, s3_client


def chunk_rows(w: LogWorld, attempt_id: int | None = None) -> int:
    with w.engine.db.session() as s:
        q = select(func.count()).select_from(LogChunk)
        if attempt_id is not None:
            q = q.where(LogChunk.attempt_id == attempt_id)
        return int(s.scalar(q) or 0)


def objects(w: LogWorld, moto: str) -> list[dict[str, Any]]:
    bucket = w.services.settings.s3_bucket
    return s3_client(moto).list_objects_v2(Bucket=bucket).get("Contents", [])


@pytest.mark.parametrize("store", ["disk", "s3"])
async def test_chunks_in_order_and_once(log_world: Callable[..., Any], store: str) -> None:
    async with log_world(store) as w:
        w.pipeline()
        c = await w.claim()
        e = w.engine
        e.record_log(c.attempt_id, c.token, Chunk(0, "zero\n"))
        e.record_log(c.attempt_id, c.token, Chunk(1, "one\n"))
        e.record_log(c.attempt_id, c.token, Chunk(1, "one\n"))  # a retried POST: ignored
        e.record_log(c.attempt_id, c.token, Chunk(0, "zero\n"))
        with pytest.raises(OutOfOrder) as ooo:
            e.record_log(c.attempt_id, c.token, Chunk(3, "three\n"))  # 2 is missing
        assert ooo.value.expected == 2
        e.record_log(c.attempt_id, c.token, Chunk(2, "two\n"))
        e.record_log(c.attempt_id, c.token, Chunk(3, "three\n"))
        want = b"zero\none\ntwo\nthree\n"
        path = f"1/{c.job_id}/{c.attempt_id}.log"
        assert w.store.read(path) == want
        assert w.store.size(path) == len(want)
        assert w.store.read(path, 5, 4) == b"one\n"
        assert w.store.read(path, 100) == b""
        assert [w.store.lines_before(path, o) for o in (0, 5, 9, 13, 19)] == [0, 1, 2, 3, 4]
        if store == "s3":
            assert chunk_rows(w, c.attempt_id) == 4
        w.finish(c, "succeeded")
        await w.settled()
        assert w.store.read(path) == want
        assert w.store.read(path, 5, 4) == b"one\n"
        assert [w.store.lines_before(path, o) for o in (0, 5, 9, 13, 19)] == [0, 1, 2, 3, 4]


async def test_s3_store_refuses_a_second_copy_of_a_chunk(log_world: Callable[..., Any]) -> None:
    async with log_world("s3") as w:
        w.pipeline()
        c = await w.claim()
        store = w.store
        assert isinstance(store, S3LogStore)
        path = f"1/{c.job_id}/{c.attempt_id}.log"
        assert store.append(path, b"a\n", seq=0) == 2
        assert store.append(path, b"b\n", seq=1) == 4
        assert store.append(path, b"b\n", seq=1) == 4  # the same seq again: a no-op
        assert store.read(path) == b"a\nb\n"
        assert chunk_rows(w, c.attempt_id) == 2


async def test_s3_finish_makes_one_object_and_range_reads_work(
    log_world: Callable[..., Any], moto_server: str
) -> None:
    async with log_world("s3") as w:
        w.pipeline()
        c = await w.claim()
        rnd = random.Random(7)
        lines = [f"line {i} " + "x" * rnd.randrange(0, 300) + "\n" for i in range(60_000)]
        # ~10 MB in ~1 MB chunks: above the multipart threshold.
        text = "".join(lines)
        pieces = [text[i : i + (1 << 20)] for i in range(0, len(text), 1 << 20)]
        for piece in pieces:
            w.log(c, piece)
        path = f"1/{c.job_id}/{c.attempt_id}.log"
        data = text.encode()
        assert w.store.size(path) == len(data)
        assert chunk_rows(w, c.attempt_id) == len(pieces)
        assert objects(w, moto_server) == []  # nothing in S3 while it runs
        w.finish(c, "succeeded")
        await w.settled()
        assert chunk_rows(w, c.attempt_id) == 0
        objs = objects(w, moto_server)  # the log, and when each of its chunks arrived
        assert [o["Key"] for o in objs] == [f"ployd/logs/{path}", f"ployd/logs/{path}.times"]
        assert objs[0]["Size"] == len(data)
        offsets = [0]
        for piece in pieces[:-1]:
            offsets.append(offsets[-1] + len(piece.encode()))
        assert [off for off, _ in w.store.chunk_times(path)] == offsets
        assert w.store.size(path) == len(data)
        for off, n in ((0, 100), (len(data) - 50, 100), (5_000_123, 3_000_000), (len(data), 5)):
            assert w.store.read(path, off, n) == data[off : off + n]
        for off in (0, 1, 1 << 20, 5_000_123, len(data) - 1, len(data)):
            assert w.store.lines_before(path, off) == data[:off].count(b"\n"), off
        # Finishing again (a restart) changes nothing.
        w.store.finish(path)
        assert len(objects(w, moto_server)) == 2 and w.store.read(path, 0, 7) == b"line 0 "


async def test_s3_logs_left_unfinished_are_finished_at_start(
    log_world: Callable[..., Any], moto_server: str
) -> None:
    async with log_world("s3") as w:
        w.pipeline()
        c = await w.claim()
        w.log(c, "before the crash\n")
        w.services.finisher.detach()  # as if the replica stopped before compacting
        w.finish(c, "failed")
        assert chunk_rows(w, c.attempt_id) == 1
        store = w.store
        assert isinstance(store, S3LogStore)
        assert store.unfinished() == [c.attempt_id]
        from app.engine.logfinisher import LogFinisher

        finisher = LogFinisher(w.engine, store)
        finisher.recover()
        await finisher.drain()
        assert chunk_rows(w, c.attempt_id) == 0 and len(objects(w, moto_server)) == 2  # .times
        assert store.read(f"1/{c.job_id}/{c.attempt_id}.log") == b"before the crash\n"


def test_the_disk_store_is_a_log_store(tmp_path: Any) -> None:
    with pytest.raises(TypeError):  # abstract: a store is built by its own class
        LogStore(tmp_path)  # type: ignore[abstract]
    store = DiskLogStore(tmp_path)
    assert isinstance(store, DiskLogStore) and isinstance(store, LogStore)
    store.append("1/1/1.log", b"a\nb")
    store.append("1/1/1.log", b"\nc\n")
    assert store.read("1/1/1.log") == b"a\nb\nc\n" and store.lines_before("1/1/1.log", 4) == 2


def test_disk_line_index_survives_a_restart(tmp_path: Any) -> None:
    store = DiskLogStore(tmp_path)
    rnd = random.Random(3)
    data = b"".join((b"y" * rnd.randrange(0, 200)) + b"\n" for _ in range(30_000))
    for i in range(0, len(data), 70_000):
        store.append("1/2/3.log", data[i : i + 70_000])
    assert store._checkpoints(store._abs("1/2/3.log"))  # an index was written
    again = DiskLogStore(tmp_path)  # a new process: no cached tail
    again.append("1/2/3.log", b"more\n")
    data += b"more\n"
    for off in (0, 69_999, 700_001, len(data) - 3, len(data)):
        assert again.lines_before("1/2/3.log", off) == data[:off].count(b"\n")


async def test_s3_chunk_times_of_a_log_finished_without_them(
    log_world: Callable[..., Any], moto_server: str
) -> None:
    async with log_world("s3") as w:
        w.pipeline()
        c = await w.claim()
        store = w.store
        assert isinstance(store, S3LogStore)
        path = f"1/{c.job_id}/{c.attempt_id}.log"
        assert store.chunk_times(path) == []  # no log yet
        store.append(path, b"a\n", seq=0)
        store.finish(path)
        assert [off for off, _ in store.chunk_times(path)] == [0]
        # a log finished before PloyD kept the times: none, and no error
        bucket = w.services.settings.s3_bucket
        s3_client(moto_server).delete_object(Bucket=bucket, Key=f"ployd/logs/{path}.times")
        fresh = S3LogStore(w.engine.db, store.config)  # another replica: nothing cached
        assert fresh.chunk_times(path) == [] and fresh.read(path) == b"a\n"
