"""Glob patterns as GitHub Actions reads them, for branches, tags and paths.

``*`` matches any characters except ``/``; ``**`` matches any characters including
``/``; ``?`` one character except ``/``; ``[abc]`` a class. A pattern starting with
``!`` in a list negates the earlier matches (GitHub's rule: the last matching pattern wins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # "**/" also matches no directory at all
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                out.append("[" + pattern[i + 1 : j].replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, value: str) -> bool:
    return compile_glob(pattern).match(value) is not None


def matches_any(patterns: Sequence[str], value: str) -> bool:
    """Whether ``value`` is selected by ``patterns`` (``!pattern`` entries exclude)."""
    selected = False
    for p in patterns:
        if p.startswith("!"):
            if selected and glob_match(p[1:], value):
                selected = False
        elif not selected and glob_match(p, value):
            selected = True
    return selected


def any_file_matches(patterns: Sequence[str], files: Iterable[str]) -> bool:
    return any(matches_any(patterns, f) for f in files)


def all_files_ignored(ignore: Sequence[str], files: Iterable[str]) -> bool:
    """True when every file matches ``ignore`` (and there is at least one file)."""
    files = list(files)
    return bool(files) and all(matches_any(ignore, f) for f in files)
