"""Where artifact and cache bytes live: S3 (the agent moves bytes through presigned URLs,
it never holds AWS credentials) or the server's data directory (the agent moves bytes
through the server, authenticated with its job token).

Keys are the same in both stores (``artifacts/t{tenant}/r{repo}/j{job}/a{attempt}/{id}``,
``caches/t{tenant}/r{repo}/{sha256(key)}.tar.gz``); S3 puts ``PLOYD_S3_PREFIX`` in front,
the local store puts ``PLOYD_DATA_DIR`` in front. boto3 calls block: callers on the
event loop run ``stat`` and ``delete`` in a thread (presigning does no I/O).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.settings import Settings

PRESIGN_TTL_S = 3600


@dataclass(frozen=True)
class Target:
    """Where the agent PUTs or GETs one blob. ``auth``: the URL is the server's own
    (relative), so the agent adds its job token; never for a presigned URL."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "headers": self.headers, "auth": self.auth}


class BlobStore(Protocol):
    kind: str

    def upload_target(self, key: str, server_url: str) -> Target: ...

    def download_target(self, key: str, server_url: str, filename: str | None = None) -> Target: ...

    def stat(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...


class BadUpload(Exception):
    """The bytes sent do not match the size or SHA-256 announced."""


class LocalStore:
    """Blobs under a directory (``PLOYD_DATA_DIR``); the agent goes through the server."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        norm = posixpath.normpath(key)
        if norm.startswith(("/", "..")) or "\0" in norm:
            raise ValueError(f"bad storage key {key!r}")
        return self.root / norm

    def upload_target(self, key: str, server_url: str) -> Target:
        return Target("PUT", server_url, auth=True)

    def download_target(self, key: str, server_url: str, filename: str | None = None) -> Target:
        return Target("GET", server_url, auth=True)

    def stat(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    async def write(self, key: str, chunks: AsyncIterator[bytes], size: int, sha256: str) -> None:
        """Stream an upload into place, checking its size and SHA-256 (``BadUpload``);
        the file appears only when complete."""
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{id(chunks):x}.part")
        h, n = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as f:
                async for chunk in chunks:
                    n += len(chunk)
                    if n > size:
                        raise BadUpload(f"more than the {size} bytes announced")
                    h.update(chunk)
                    f.write(chunk)
            if n != size:
                raise BadUpload(f"{n} bytes received, {size} announced")
            if h.hexdigest() != sha256:
                raise BadUpload("the SHA-256 does not match the one announced")
            tmp.replace(dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


class S3Store:
    """Blobs in an S3 bucket; the agent gets presigned PUT and GET URLs."""

    kind = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    def upload_target(self, key: str, server_url: str) -> Target:
        url = self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=PRESIGN_TTL_S,
        )
        return Target("PUT", str(url))

    def download_target(self, key: str, server_url: str, filename: str | None = None) -> Target:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            quoted = urllib.parse.quote(filename)
            params["ResponseContentDisposition"] = f"attachment; filename*=UTF-8''{quoted}"
        url = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=PRESIGN_TTL_S
        )
        return Target("GET", str(url))

    def stat(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_store(settings: Settings) -> BlobStore:
    """S3 when PLOYD_S3_BUCKET is set (PLOYD_AWS_REGION, PLOYD_AWS_ENDPOINT_URL as for
    EC2), else the data directory."""
    bucket = settings.s3_bucket
    if not bucket:
        return LocalStore(settings.data_dir)
    from app.adapters import aws

    client = aws.client(
        "s3", region=settings.aws_region or None, endpoint_url=settings.aws_endpoint_url or None
    )
    return S3Store(client, bucket, settings.s3_prefix)
