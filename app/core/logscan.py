"""Finding the line a person wants to see first in a failing step's log."""

from __future__ import annotations

import re

ERROR_LINE = re.compile(
    r"(\berror\b|\bERROR\b|Error:|\bFAILED\b|\bFAIL\b|Traceback \(most recent call last\)"
    r"|\bpanic:|\bfatal:|Exception\b|AssertionError)"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def first_error_line(lines: list[str]) -> int | None:
    """The 0-based index of the first line that looks like an error, or None."""
    for i, line in enumerate(lines):
        if ERROR_LINE.search(ANSI.sub("", line)):
            return i
    return None


def tail(lines: list[str], n: int = 60) -> list[str]:
    return lines[-n:]
