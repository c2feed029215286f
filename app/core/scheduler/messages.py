"""What a waiting job says, and how long it waits before trying every candidate again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from app.core.scheduler.model import Candidate

MAX_WAITING_MESSAGE = 400
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 120.0
BACKOFF_JITTER = 0.2  # at most this fraction is taken off by ``jitter``


def _utc(t: datetime) -> datetime:
    """Naive datetimes are UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _duration(seconds: float) -> str:
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return "<1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def waiting_message(
    tried: Sequence[Candidate],
    since: datetime,
    now: datetime,
    limit: int = MAX_WAITING_MESSAGE,
) -> str:
    """``waiting for capacity since 14:02 UTC (3 min): tried p5.4xlarge spot us-east-1a,
    p5.4xlarge on-demand us-east-1a and 4 more``: each candidate once, in the order tried,
    at most ``limit`` characters (the date is added when ``since`` is not today)."""
    start, end = _utc(since), _utc(now)
    when = f"{start:%H:%M}" if start.date() == end.date() else f"{start:%Y-%m-%d %H:%M}"
    head = f"waiting for capacity since {when} UTC ({_duration((end - start).total_seconds())})"
    keys = list(dict.fromkeys(c.key for c in tried))
    if not keys:
        return head + ": no machine tried yet"
    text = head + ": tried "
    for i, key in enumerate(keys):
        rest = len(keys) - i - 1
        sep = ", " if i else ""
        more = f" and {rest} more" if rest else ""
        # keep room for the " and N more" that follows whenever a key is left out
        room = len(f" and {rest + 1} more")
        if len(text) + len(sep) + len(key) + len(more) > limit or (
            rest and len(text) + len(sep) + len(key) + room > limit
        ):
            return text.rstrip(", ") + f" and {len(keys) - i} more" if i else head
        text += sep + key
    return text


def backoff(attempts: int, jitter: float = 0.0) -> float:
    """Seconds to wait before trying every candidate again after ``attempts`` rounds that
    found no capacity: 0 before the first, then 5, 10, 20, 40, 80, 120, 120, ... seconds.
    ``jitter`` in [0, 1] (the caller's random number; core draws none) takes up to 20 %
    off, so that many waiting jobs do not retry in the same instant."""
    if attempts <= 0:
        return 0.0
    wait = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** min(attempts - 1, 32))
    return wait * (1.0 - BACKOFF_JITTER * min(max(jitter, 0.0), 1.0))
