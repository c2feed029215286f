"""Configuration errors: each one points at a file, line and column (1-based)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class ConfigError:
    """One problem in a `.ployd.yml`, formatted ``FILE:LINE:COL: message``."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"

    def to_dict(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


class ConfigInvalid(Exception):
    """Every problem found in a configuration, at once, in file order."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        unique: dict[tuple[int, int, str], ConfigError] = {}
        for e in errors:
            unique.setdefault((e.line, e.column, e.message), e)
        self.errors: list[ConfigError] = sorted(unique.values(), key=lambda e: (e.line, e.column))
        super().__init__("\n".join(str(e) for e in self.errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
