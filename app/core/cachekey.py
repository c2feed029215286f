"""Cache keys (``${{ hashFiles(...) }}``) and workspace paths: defined in
``app.agent.cachekey``.

The agent evaluates keys on its checkout and may import nothing of the server's, so the
one definition ships with it; the server checks keys and artifact paths with it from here.
"""

from __future__ import annotations

from app.agent.cachekey import (
    MAX_KEY_LENGTH,
    CacheKeyError,
    check_key,
    evaluate_key,
    hash_files,
    normalize_pattern,
    parse_args,
    safe_relpath,
    short_key,
    uses_hash_files,
)

__all__ = [
    "MAX_KEY_LENGTH",
    "CacheKeyError",
    "check_key",
    "evaluate_key",
    "hash_files",
    "normalize_pattern",
    "parse_args",
    "safe_relpath",
    "short_key",
    "uses_hash_files",
]
