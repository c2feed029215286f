"""Logs in S3 (``PLOYD_S3_BUCKET``), for several replicas sharing one database.

* While an attempt runs, its chunks are rows of ``log_chunks`` (whichever replica an
  agent's POST reaches), written in the engine's transaction; unique
  ``(attempt_id, seq)`` makes a repeated chunk a no-op.
* ``finish`` (when the attempt ends, off the event loop) writes the whole log as ONE
  object, ``<prefix><pipeline>/<job>/<attempt>.log`` (multipart above 8 MB, streamed
  from the rows), with a sparse line index in its metadata, and beside it
  ``<attempt>.log.times``, when each chunk arrived (``offset unix-milliseconds`` a line,
  as the disk store's file: the page's per-line timestamps), then deletes the rows.
* Reads: from the rows while there are any, else S3 range GETs.

boto3 blocks: every method that may call S3 is meant for a worker thread.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.logs.store import LogStore
from app.store import logchunks as chunks

if TYPE_CHECKING:
    from app.store.db import Database, Tx

log = logging.getLogger("ployd.logs")

PART_BYTES = 8 << 20  # multipart part size (S3's minimum is 5 MB)
INDEX_POINTS = 48  # line checkpoints kept in the object's metadata (2 KB limit)
INDEX_META = "ployd-lines"
BATCH = 64  # chunk rows loaded at a time while compacting
HEADS_CACHED = 1024
TIMES_SUFFIX = ".times"  # the chunks' arrival times, beside the log's object
TIMES_CACHED = 64


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None


def _attempt_id(path: str) -> int:
    """``<pipeline>/<job>/<attempt>.log`` -> attempt id."""
    name = path.rsplit("/", 1)[-1]
    try:
        return int(name.split(".", 1)[0])
    except ValueError:
        raise ValueError(f"not a log path: {path!r}") from None


def _error_code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _parse_index(raw: str) -> list[tuple[int, int]]:
    points = []
    for item in raw.split(","):
        off, _, lines = item.partition(":")
        if off.isdigit() and lines.isdigit():
            points.append((int(off), int(lines)))
    return points


class S3LogStore(LogStore):
    needs_finish = True

    def __init__(self, db: Database, config: S3Config, client: Any = None) -> None:
        self.db = db
        self.config = config
        self.prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self._client = client
        self._lock = threading.Lock()
        self._heads: OrderedDict[str, tuple[int, list[tuple[int, int]]]] = OrderedDict()
        self._times: OrderedDict[str, list[tuple[int, int]]] = OrderedDict()

    # ---- S3 ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 client, built on first use (in a worker thread: it blocks)."""
        with self._lock:
            if self._client is None:
                from app.adapters import aws

                self._client = aws.client(
                    "s3", region=self.config.region, endpoint_url=self.config.endpoint_url
                )
            return self._client

    def key(self, path: str) -> str:
        return self.prefix + path

    def _head(self, path: str) -> tuple[int, list[tuple[int, int]]] | None:
        """(size, line checkpoints) of a finished log's object; cached (objects never
        change once written)."""
        key = self.key(path)
        with self._lock:
            if key in self._heads:
                self._heads.move_to_end(key)
                return self._heads[key]
        try:
            r = self.client.head_object(Bucket=self.config.bucket, Key=key)
        except Exception as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        meta = {k.lower(): v for k, v in (r.get("Metadata") or {}).items()}
        found = (int(r["ContentLength"]), _parse_index(meta.get(INDEX_META, "")))
        with self._lock:
            self._heads[key] = found
            while len(self._heads) > HEADS_CACHED:
                self._heads.popitem(last=False)
        return found

    def _get(self, path: str, offset: int, end: int) -> bytes:
        """Bytes [offset, end) of the finished object (end exclusive)."""
        if end <= offset:
            return b""
        try:
            r = self.client.get_object(
                Bucket=self.config.bucket, Key=self.key(path), Range=f"bytes={offset}-{end - 1}"
            )
        except Exception as e:
            if _error_code(e) in ("NoSuchKey", "InvalidRange", "404", "416"):
                return b""
            raise
        body = r["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _stored_times(self, path: str) -> list[tuple[int, int]]:
        """(offset, Unix ms) of each chunk, from the finished log's ``.times`` object; []
        when there is none (a log finished before PloyD kept them). Cached once found."""
        key = self.key(path) + TIMES_SUFFIX
        with self._lock:
            if key in self._times:
                self._times.move_to_end(key)
                return self._times[key]
        try:
            r = self.client.get_object(Bucket=self.config.bucket, Key=key)
        except Exception as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return []
            raise
        body = r["Body"]
        try:
            found = _parse_times(bytes(body.read()).decode("ascii", "replace"))
        finally:
            body.close()
        with self._lock:
            self._times[key] = found
            while len(self._times) > TIMES_CACHED:
                self._times.popitem(last=False)
        return found

    def _all_times(self, path: str, attempt_id: int) -> list[tuple[int, int]]:
        """The chunks' times: the rows', after those in S3 of chunks compacted earlier."""
        with self.db.session() as s:
            first = chunks.first_offset(s, attempt_id)
            rows = chunks.times(s, attempt_id) if first is not None else []
        if first is None:  # no rows: the log has ended, its times are in S3
            return self._stored_times(path)
        if first > 0:  # chunks that came after an earlier compaction
            earlier = [t for t in self._stored_times(path) if t[0] < first]
            return earlier + rows
        return rows

    # ---- chunks (rows of log_chunks) ------------------------------------------------

    def append(
        self, path: str, data: bytes, seq: int | None = None, session: Tx | None = None
    ) -> int:
        if session is None:
            with self.db.session() as s:
                return self.append(path, data, seq, s)
        return chunks.append(session, _attempt_id(path), data, seq)

    # ---- the interface ----------------------------------------------------------------

    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        offset = max(offset, 0)
        end = None if limit is None else offset + max(limit, 0)
        if end is not None and end <= offset:
            return b""
        attempt_id = _attempt_id(path)
        with self.db.session() as s:
            if chunks.has_chunks(s, attempt_id):
                return chunks.read(s, attempt_id, offset, end)
        head = self._head(path)
        if head is None:
            return b""
        size = head[0]
        return self._get(path, offset, size if end is None else min(end, size))

    def size(self, path: str) -> int:
        with self.db.session() as s:
            last = chunks.last(s, _attempt_id(path))
            if last is not None:
                return last.end
        head = self._head(path)
        return head[0] if head else 0

    def chunk_times(self, path: str) -> list[tuple[int, float]]:
        return [(off, ms / 1000) for off, ms in self._all_times(path, _attempt_id(path))]

    def lines_before(self, path: str, offset: int) -> int:
        if offset <= 0:
            return 0
        attempt_id = _attempt_id(path)
        with self.db.session() as s:
            counted = chunks.lines_before(s, attempt_id, offset)
        if counted is not None:
            return counted
        head = self._head(path)
        if head is None:
            return 0
        size, points = head
        offset = min(offset, size)
        base_off, base_lines = 0, 0
        for off, lines in points:
            if off <= offset:
                base_off, base_lines = off, lines
        count, pos = base_lines, base_off
        while pos < offset:  # at most one index gap, in 4 MB range GETs
            data = self._get(path, pos, min(offset, pos + (4 << 20)))
            if not data:
                break
            count += data.count(b"\n")
            pos += len(data)
        return count

    def finish(self, path: str) -> None:
        """Compact the attempt's chunks into one object and delete them. Safe to repeat:
        with no chunks left there is nothing to do."""
        attempt_id = _attempt_id(path)
        with self.db.session() as s:
            meta, total_nl = chunks.layout(s, attempt_id)
        if not meta:
            return
        prefix = b""
        if meta[0].offset > 0:  # chunks that came after an earlier compaction
            head = self._head(path)
            prefix = self._get(path, 0, meta[0].offset) if head else b""
        size = meta[-1].offset + meta[-1].size
        points = [(m.offset, m.lines) for m in meta]
        index = _thin(points, size)
        metadata = {
            INDEX_META: ",".join(f"{o}:{n}" for o, n in index),
            "ployd-newlines": str(meta[0].lines + total_nl),
        }
        seqs = [m.seq for m in meta]
        stamps = self._all_times(path, attempt_id)
        if stamps:  # first: the rows stay until the log's object is written too
            self.client.put_object(
                Bucket=self.config.bucket,
                Key=self.key(path) + TIMES_SUFFIX,
                Body="".join(f"{off} {ms}\n" for off, ms in stamps).encode(),
                ContentType="text/plain; charset=utf-8",
            )
        self._upload(path, attempt_id, prefix, seqs, size, metadata)
        with self._lock:
            self._heads.pop(self.key(path), None)
            self._times.pop(self.key(path) + TIMES_SUFFIX, None)
        with self.db.session() as s:
            chunks.delete_through(s, attempt_id, seqs[-1])
        log.debug("log %s: %d chunks -> s3://%s/%s", path, len(seqs), self.config.bucket, path)

    def _pieces(self, attempt_id: int, seqs: list[int]) -> Any:
        for i in range(0, len(seqs), BATCH):
            lo, hi = seqs[i], seqs[min(i + BATCH, len(seqs)) - 1]
            with self.db.session() as s:
                pieces = chunks.data_between(s, attempt_id, lo, hi)
            yield from pieces

    def _upload(
        self,
        path: str,
        attempt_id: int,
        prefix: bytes,
        seqs: list[int],
        size: int,
        metadata: dict[str, str],
    ) -> None:
        bucket, key = self.config.bucket, self.key(path)
        common = {"ContentType": "text/plain; charset=utf-8", "Metadata": metadata}
        if size <= PART_BYTES:
            body = prefix + b"".join(self._pieces(attempt_id, seqs))
            self.client.put_object(Bucket=bucket, Key=key, Body=body, **common)
            return
        upload = self.client.create_multipart_upload(Bucket=bucket, Key=key, **common)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            buf = bytearray(prefix)
            for piece in self._pieces(attempt_id, seqs):
                buf += piece
                while len(buf) >= PART_BYTES:
                    self._part(key, upload_id, parts, bytes(buf[:PART_BYTES]))
                    del buf[:PART_BYTES]
            if buf or not parts:
                self._part(key, upload_id, parts, bytes(buf))
            self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except Exception:
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    def _part(self, key: str, upload_id: str, parts: list[dict[str, Any]], body: bytes) -> None:
        n = len(parts) + 1
        r = self.client.upload_part(
            Bucket=self.config.bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=body
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"]})

    def unfinished(self) -> list[int]:
        """Attempts that have chunks left although they ended (a replica stopped while
        compacting): compacted again at start."""
        with self.db.session() as s:
            return chunks.unfinished(s)


def _parse_times(text: str) -> list[tuple[int, int]]:
    out = []
    for row in text.splitlines():
        off, _, ms = row.partition(" ")
        if off.isdigit() and ms.isdigit():
            out.append((int(off), int(ms)))
    return sorted(out)


def _thin(points: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """At most ``INDEX_POINTS`` checkpoints, spread evenly over the log."""
    if len(points) <= INDEX_POINTS:
        return points
    out: list[tuple[int, int]] = []
    step = size / INDEX_POINTS
    i = 0
    for k in range(INDEX_POINTS):
        target = k * step
        while i + 1 < len(points) and points[i + 1][0] <= target:
            i += 1
        if not out or out[-1] != points[i]:
            out.append(points[i])
    return out
