"""Time helpers shared by every layer (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def aware(dt: datetime) -> datetime: ...


@overload
def aware(dt: None) -> None: ...


def aware(dt: datetime | None) -> datetime | None:
    """``dt`` with a time zone: a naive datetime (as SQLite gives stored times back) is
    UTC; an aware one, and None, are returned unchanged."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)
