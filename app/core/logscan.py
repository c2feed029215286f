"""Finding the line a person wants to see first in a failing step's log (the cause
finder, ``app.core.cause``, decides which)."""

from __future__ import annotations

from app.core.cause import ANSI, find_cause

__all__ = ["ANSI", "first_error_line", "tail"]


def first_error_line(lines: list[str]) -> int | None:
    """The 0-based index of the line that says why the step failed, or None."""
    cause = find_cause(lines)
    return cause.index if cause is not None else None


def tail(lines: list[str], n: int = 60) -> list[str]:
    return lines[-n:]
