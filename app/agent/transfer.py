"""The agent's artifacts and caches (docs/agent-protocol.md, "Artifacts and caches").

* Caches: the key's ``${{ hashFiles(...) }}`` is evaluated on the checked-out workspace
  (``app.agent.cachekey``) before the steps; the server answers an exact hit, a
  restore-key (prefix) hit or a miss; a hit is downloaded, its SHA-256 checked, and
  extracted into the cache paths (``~`` is the agent's HOME, relative paths are in the
  workspace). After a successful job, when the exact key missed, the paths are archived
  (tar + gzip) and uploaded. Forks' jobs do neither (the server says so in the job).
* Artifacts: after the steps (whatever their result, unless the job was cancelled) the
  files of the workspace matching ``artifacts.paths`` are announced with size and
  SHA-256, uploaded to the targets the server hands out, and confirmed. Patterns that
  leave the workspace, and symlinks that point out of it, are refused and said so.

Bytes move to presigned URLs (S3) without any credential, or to the server's own URLs
with the job token; the token is never sent anywhere else. Nothing here fails the job:
a transfer that does not work is reported in the job log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.client
import io
import json
import mimetypes
import os
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.agent.cachekey import CacheKeyError, evaluate_key, normalize_pattern, short_key
from app.agent.client import AgentClient
from app.agent.compat import extract_member
from app.agent.globs import matches_any
from app.agent.httpclient import TRANSPORT_ERRORS, split_url
from app.protocol import ArtifactsPayload, CachePayload

LogSink = Callable[[str], Awaitable[None]]
CHUNK = 1 << 20
MANIFEST = "ployd-cache.json"
TRANSFER_RETRIES = 3
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
OCTET_STREAM = "application/octet-stream"


class TransferError(Exception):
    """An upload or a download that did not work."""


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


# ---- the workspace (blocking helpers, run in a thread) -------------------------------


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of the workspace's files, ``.git`` left out, symlinked
    directories not followed; symlinked files are listed (the caller checks them)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = sorted(d for d in dirnames if not (rel_dir == "." and d == ".git"))
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield rel, Path(dirpath) / name


def cache_key(root: Path, key: str) -> str:
    """``key`` with ``hashFiles`` evaluated over the workspace (files only inside it)."""
    files = {rel: p for rel, p in walk_files(root) if not p.is_symlink() or _inside(root, p)}
    return evaluate_key(key, files, lambda rel: files[rel].read_bytes())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Selected:
    files: list[tuple[str, Path, int, str]]  # (relative path, path, size, sha256)
    refused: list[str]  # a message per refused pattern or file


def select_artifacts(root: Path, patterns: list[str]) -> Selected:
    """The workspace files matching ``patterns`` (globs, ``**`` allowed, ``!`` excludes)."""
    pats, refused = [], []
    for p in patterns:
        try:
            pats.append(normalize_pattern(p))
        except CacheKeyError:
            refused.append(f"pattern {p!r}: outside the workspace")
    files = []
    if any(not p.startswith("!") for p in pats):
        for rel, path in walk_files(root):
            if not matches_any(pats, rel):
                continue
            if path.is_symlink() and not _inside(root, path):
                refused.append(f"{rel}: a symlink out of the workspace")
                continue
            if not path.is_file():
                continue
            files.append((rel, path, path.stat().st_size, sha256_file(path)))
    return Selected(files, refused)


def expand_path(path: str, workspace: Path, home: Path) -> Path:
    """A cache path: ``~`` is the agent's HOME, a relative path is in the workspace."""
    if path == "~" or path.startswith("~/"):
        return home / path[2:] if path != "~" else home
    p = Path(path)
    return p if p.is_absolute() else workspace / p


def build_archive(paths: list[str], workspace: Path, home: Path, dest: Path) -> list[str]:
    """Write a tar.gz of the existing ``paths`` to ``dest``: member ``N/...`` holds the
    N-th path, a manifest names them. Returns the paths that were not there."""
    missing: list[str] = []
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        manifest = json.dumps({"version": 1, "paths": paths}).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for i, p in enumerate(paths):
            src = expand_path(p, workspace, home)
            if not src.exists() and not src.is_symlink():
                missing.append(p)
                continue
            tar.add(src, arcname=str(i), recursive=True)
    return missing


def extract_archive(archive: Path, paths: list[str], workspace: Path, home: Path) -> int:
    """Extract the archive's paths that this job caches too; the number restored. Every
    member must land inside its path (tarfile's ``tar`` filter, no ``..``)."""
    restored = 0
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.getmember(MANIFEST)
        f = tar.extractfile(member)
        saved = json.loads(f.read()) if f is not None else {}
        wanted = {str(i): p for i, p in enumerate(saved.get("paths", [])) if p in paths}
        for m in tar.getmembers():
            top, _, rest = m.name.partition("/")
            if top not in wanted:
                continue
            dest = expand_path(wanted[top], workspace, home)
            if rest:
                dest.mkdir(parents=True, exist_ok=True)
                extract_member(tar, m, rest, str(dest))
            elif m.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                restored += 1
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                extract_member(tar, m, dest.name, str(dest.parent))
                restored += 1
    return restored


# ---- moving bytes --------------------------------------------------------------------


class Mover:
    """PUT and GET to the targets the server hands out, streaming the files."""

    def __init__(self, client: AgentClient, token: str) -> None:
        self.client = client
        self.token = token

    def _where(self, target: dict[str, Any]) -> tuple[str, dict[str, str]]:
        url = str(target["url"])
        headers = {str(k): str(v) for k, v in (target.get("headers") or {}).items()}
        if target.get("auth"):  # the server's own URL: relative, with the job token
            if not url.startswith("/"):
                raise TransferError("the server asked for the job token on a foreign URL")
            url = self.client.server + url
            headers["Authorization"] = f"Bearer {self.token}"
        return url, headers

    async def put(self, target: dict[str, Any], path: Path, size: int) -> None:
        url, headers = self._where(target)
        headers["Content-Length"] = str(size)
        if not any(k.lower() == "content-type" for k in headers):  # guessed, as aiohttp did
            headers["Content-Type"] = mimetypes.guess_type(path.name)[0] or OCTET_STREAM
        for i in range(TRANSFER_RETRIES):
            resp = None
            with path.open("rb") as f:
                try:
                    resp = await self.client.http.request("PUT", url, body=f, headers=headers)
                except TRANSPORT_ERRORS as e:
                    if i == TRANSFER_RETRIES - 1:
                        raise TransferError(f"upload failed: {e!r}") from e
            if resp is not None:
                if resp.status < 300:
                    return
                if resp.status < 500:
                    raise TransferError(f"upload refused: HTTP {resp.status}: {resp.text()[:300]}")
            await asyncio.sleep(0.2 * 2**i)  # backoff between retries
        raise TransferError("upload failed after retries")

    async def get(self, target: dict[str, Any], dest: Path) -> str:
        """Download to ``dest``; the SHA-256 of what came."""
        url, headers = self._where(target)
        for i in range(TRANSFER_RETRIES):
            try:
                got = await self._get(url, headers, dest)
            except _LocalError as e:  # writing ``dest``: not the network's fault
                raise e.error from None
            except TRANSPORT_ERRORS as e:
                if i == TRANSFER_RETRIES - 1:
                    raise TransferError(f"download failed: {e!r}") from e
            else:
                if got.status < 300:
                    return got.digest
                if got.status < 500:
                    raise TransferError(f"download refused: HTTP {got.status}: {got.text[:300]}")
            await asyncio.sleep(0.2 * 2**i)  # backoff between retries
        raise TransferError("download failed after retries")

    async def _get(self, url: str, headers: dict[str, str], dest: Path) -> _Got:
        """One GET, following redirects (the token goes to the same origin only)."""
        for _ in range(MAX_REDIRECTS + 1):
            got = await self.client.http.call(
                "GET", url, functools.partial(_save, dest), headers=headers
            )
            if got.location is None:
                return got
            following = urllib.parse.urljoin(url, got.location)
            if split_url(following)[0] != split_url(url)[0]:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = following
        raise http.client.HTTPException(f"more than {MAX_REDIRECTS} redirects")


@dataclass(frozen=True)
class _Got:
    status: int
    digest: str = ""  # the SHA-256 of the body saved (2xx)
    text: str = ""  # the body of an error
    location: str | None = None  # where a redirect points


class _LocalError(Exception):
    """Writing the downloaded file failed (carried out of the HTTP thread as itself)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _save(dest: Path, resp: http.client.HTTPResponse) -> _Got:
    """In the HTTP thread: stream a 2xx body into ``dest``, hashing it on the way."""
    location = resp.getheader("Location")
    if resp.status in REDIRECTS and location:
        resp.read()
        return _Got(resp.status, location=location)
    if resp.status >= 300:
        return _Got(resp.status, text=resp.read().decode("utf-8", errors="replace"))
    h = hashlib.sha256()
    try:
        f = dest.open("wb")
    except OSError as e:
        raise _LocalError(e) from e
    with f:
        while chunk := resp.read(CHUNK):
            h.update(chunk)
            try:
                f.write(chunk)
            except OSError as e:
                raise _LocalError(e) from e
    return _Got(resp.status, digest=h.hexdigest())


# ---- one job -------------------------------------------------------------------------


@dataclass
class CacheState:
    key: str | None = None  # the evaluated key; None when caching is off or broken
    exact_hit: bool = False
    write: bool = False


class JobTransfers:
    """The artifacts and cache of one attempt."""

    def __init__(
        self,
        client: AgentClient,
        attempt_id: int,
        token: str,
        log: LogSink,
        *,
        workspace: Path,
        scratch: Path,
        home: Path | None = None,
    ) -> None:
        self.client = client
        self.attempt_id = attempt_id
        self.token = token
        self.log = log
        self.workspace = workspace
        self.scratch = scratch
        self.home = home or Path(os.path.expanduser("~"))
        self.mover = Mover(client, token)

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        _, data = await self.client._post_retry(
            f"/attempts/{self.attempt_id}{path}", self.token, body
        )
        if not isinstance(data, dict):
            raise TransferError(f"POST {path}: the answer is not an object")
        return data

    @contextlib.contextmanager
    def _tmpdir(self) -> Iterator[Path]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix=".transfer-") as d:
            yield Path(d)

    # -- caches --

    async def restore_cache(self, cache: CachePayload | None) -> CacheState:
        state = CacheState()
        if cache is None:
            return state
        if not cache.read and not cache.write:
            await self.log("cache: off for pull requests from forks (not restored, not saved)\n")
            return state
        try:
            key = await asyncio.to_thread(cache_key, self.workspace, cache.key)
        except (CacheKeyError, OSError) as e:
            await self.log(f"cache: the key cannot be used: {e}\n")
            return state
        state.key, state.write = key, cache.write
        if not cache.read:
            return state
        restore_keys = list(cache.restore_keys)
        started = time.monotonic()
        try:
            answer = await self._call("/caches/restore", {"key": key, "restore_keys": restore_keys})
            if answer.get("disabled"):
                state.key = None
                await self.log(f"cache: {answer['disabled']}\n")
                return state
            hit = answer.get("hit")
            if not hit:
                tried = "; restore-keys matched nothing" if restore_keys else ""
                await self.log(f"cache: miss for {short_key(key)}{tried}\n")
                return state
            with self._tmpdir() as tmp:
                archive = tmp / "cache.tar.gz"
                digest = await self.mover.get(answer["download"], archive)
                if digest != answer.get("sha256"):
                    raise TransferError("the archive's SHA-256 does not match")
                paths = list(cache.paths)
                await asyncio.to_thread(extract_archive, archive, paths, self.workspace, self.home)
            state.exact_hit = hit == "exact"
            how = "exact hit" if state.exact_hit else f"restore-key hit, for {short_key(key)}"
            await self.log(
                f"cache: restored {short_key(str(answer['key']))} ({how}) "
                f"{human_size(int(answer.get('size', 0)))} in {time.monotonic() - started:.2f}s\n"
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a cache is an optimisation: the job goes on
            await self.log(f"cache: restore failed ({e}); going on without it\n")
        return state

    async def save_cache(
        self, cache: CachePayload | None, state: CacheState, succeeded: bool
    ) -> None:
        if cache is None or state.key is None or not state.write:
            return
        key = state.key
        if not succeeded:
            await self.log(f"cache: not saved ({short_key(key)}): the job did not succeed\n")
            return
        if state.exact_hit:
            await self.log(f"cache: {short_key(key)} was an exact hit; not saved again\n")
            return
        started = time.monotonic()
        paths = list(cache.paths)
        try:
            with self._tmpdir() as tmp:
                archive = tmp / "cache.tar.gz"
                missing = await asyncio.to_thread(
                    build_archive, paths, self.workspace, self.home, archive
                )
                if missing:
                    await self.log(f"cache: not there, left out: {', '.join(missing)}\n")
                if len(missing) == len(paths):
                    await self.log(f"cache: not saved ({short_key(key)}): no cache path exists\n")
                    return
                size = archive.stat().st_size
                digest = await asyncio.to_thread(sha256_file, archive)
                answer = await self._call(
                    "/caches/save", {"key": key, "size": size, "sha256": digest}
                )
                skip = answer.get("skip")
                if skip == "too_large":
                    limit = int(answer.get("max_bytes", 0))
                    await self.log(
                        f"cache: not saved ({short_key(key)}): {human_size(size)} is over the "
                        f"limit of {human_size(limit)} per entry (PLOYD_CACHE_MAX_SIZE)\n"
                    )
                    return
                if skip:
                    why = {"exists": "saved already", "saving": "another job saves it now"}.get(
                        str(skip), str(answer.get("disabled") or skip)
                    )
                    await self.log(f"cache: not saved ({short_key(key)}): {why}\n")
                    return
                await self.mover.put(answer["upload"], archive, size)
            done = await self._call("/caches/done", {"entry_id": answer["entry_id"]})
            if not done.get("ready"):
                raise TransferError(str(done.get("error") or "the server did not keep it"))
            await self.log(
                f"cache: saved {short_key(key)} {human_size(size)} "
                f"in {time.monotonic() - started:.2f}s\n"
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            await self.log(f"cache: save failed ({e})\n")

    # -- artifacts --

    async def upload_artifacts(self, artifacts: ArtifactsPayload | None) -> None:
        if artifacts is None or not artifacts.paths:
            return
        patterns = list(artifacts.paths)
        started = time.monotonic()
        try:
            chosen = await asyncio.to_thread(select_artifacts, self.workspace, patterns)
            for why in chosen.refused:
                await self.log(f"artifacts: refused {why}\n")
            if not chosen.files:
                await self.log(f"artifacts: no file matched {', '.join(patterns)}\n")
                return
            announce = [
                {"path": rel, "size": size, "sha256": sha} for rel, _, size, sha in chosen.files
            ]
            answer = await self._call("/artifacts", {"files": announce})
            local = {rel: (path, size) for rel, path, size, _ in chosen.files}
            sent, total = [], 0
            for up in answer.get("uploads", []):
                path, size = local[str(up["path"])]
                try:
                    await self.mover.put(up, path, size)
                except TransferError as e:
                    await self.log(f"artifacts: {up['path']}: {e}\n")
                    continue
                sent.append(int(up["id"]))
                total += size
            done = await self._call("/artifacts/done", {"ids": sent})
            kept = len(done.get("ready", []))
            await self.log(
                f"artifacts: uploaded {kept} file(s), {human_size(total)} "
                f"in {time.monotonic() - started:.2f}s\n"
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            await self.log(f"artifacts: upload failed ({e})\n")
