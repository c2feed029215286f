"""Cache keys: ``${{ hashFiles('glob', ...) }}`` evaluated over a file listing.

Pure: the caller passes the workspace's files (relative POSIX paths) and a reader, so the
rules are testable without a disk. The agent feeds it the checked-out workspace.

``hashFiles`` works like GitHub Actions': the patterns are globs relative to the
workspace (``**`` crosses directories, ``!pattern`` excludes), the matching files are
sorted by path, and the result is the hex SHA-256 over each file's path and the SHA-256 of
its contents, so renaming a file changes the key as well as editing it. No matching file
gives the empty string (``pip-`` stays a valid key).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable, Iterable

from app.agent.globs import matches_any

MAX_KEY_LENGTH = 512

_HASH_FILES = re.compile(r"\$\{\{\s*hashFiles\((?P<args>[^)]*)\)\s*\}\}")
_ARG = re.compile(r"""\s*(?:'(?P<s>[^']*)'|"(?P<d>[^"]*)")\s*(?:,|$)""")


class CacheKeyError(ValueError):
    """A cache key or pattern that cannot be used."""


def parse_args(args: str) -> tuple[str, ...]:
    """``'a', "b"`` -> ("a", "b")."""
    out: list[str] = []
    pos = 0
    args = args.strip()
    while pos < len(args):
        m = _ARG.match(args, pos)
        if m is None or m.end() == pos:
            raise CacheKeyError(f"hashFiles({args}): arguments must be quoted strings")
        out.append(m.group("s") if m.group("s") is not None else m.group("d") or "")
        pos = m.end()
    if not out:
        raise CacheKeyError("hashFiles() needs at least one pattern")
    return tuple(out)


def normalize_pattern(pattern: str) -> str:
    """A pattern relative to the workspace, ``./`` dropped. Absolute patterns and ones
    with ``..`` are refused: a key only hashes files of the checked-out code."""
    neg = pattern.startswith("!")
    body = pattern[1:] if neg else pattern
    while body.startswith("./"):
        body = body[2:]
    if not body or body.startswith("/") or ".." in body.split("/"):
        raise CacheKeyError(f"{pattern!r}: patterns are relative to the workspace, without '..'")
    return ("!" if neg else "") + body


def hash_files(patterns: Iterable[str], files: Iterable[str], read: Callable[[str], bytes]) -> str:
    """The hex digest over the files selected by ``patterns`` ('' when none match)."""
    pats = [normalize_pattern(p) for p in patterns]
    chosen = sorted({f for f in files if matches_any(pats, f)})
    if not chosen:
        return ""
    h = hashlib.sha256()
    for path in chosen:
        h.update(path.encode() + b"\0")
        h.update(hashlib.sha256(read(path)).digest())
    return h.hexdigest()


def uses_hash_files(key: str) -> bool:
    return _HASH_FILES.search(key) is not None


def evaluate_key(key: str, files: Iterable[str], read: Callable[[str], bytes]) -> str:
    """``key`` with every ``${{ hashFiles(...) }}`` replaced by its digest."""
    listing = list(files)
    memo: dict[tuple[str, ...], str] = {}

    def sub(m: re.Match[str]) -> str:
        pats = parse_args(m.group("args"))
        if pats not in memo:
            memo[pats] = hash_files(pats, listing, read)
        return memo[pats]

    out = _HASH_FILES.sub(sub, key).strip()
    check_key(out)
    return out


def check_key(key: str) -> None:
    """Raise ``CacheKeyError`` for a key that cannot be stored."""
    if not key:
        raise CacheKeyError("the cache key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise CacheKeyError(f"the cache key is longer than {MAX_KEY_LENGTH} characters")
    if "${{" in key:
        raise CacheKeyError(f"{key!r}: unknown expression (only hashFiles() is evaluated)")
    if any(ord(c) < 32 for c in key):
        raise CacheKeyError("the cache key holds control characters")


def short_key(key: str, keep: int = 40) -> str:
    """A key for a log line: long digests cut with an ellipsis."""
    return key if len(key) <= keep else key[:keep] + "…"


def safe_relpath(path: str) -> str:
    """A file path relative to the workspace, normalized; ``CacheKeyError`` when it is
    absolute, empty, or climbs out with ``..``."""
    if not path or "\0" in path or "\\" in path or path.startswith("/"):
        raise CacheKeyError(f"{path!r}: not a relative path")
    norm = posixpath.normpath(path)
    if norm in (".", "") or norm.startswith("../") or norm == "..":
        raise CacheKeyError(f"{path!r}: outside the workspace")
    return norm
