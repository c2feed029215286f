"""A cache of spot prices per (instance type, AZ), filled by the EC2 adapter from
``describe_spot_price_history`` records; no AWS calls here.

The caller asks ``needs(types, azs)`` what to refresh, calls AWS for those, and passes
the records to ``update`` (with ``checked=`` the pairs it asked about, so that a pair
with no spot offer is not asked about again before the TTL). A price is kept until it is
replaced: an old spot price is a better guess than none, ``stale`` only says it is time
to ask again. ``version`` changes whenever a price changes (the scheduler caches on it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.core.clock import aware

DEFAULT_TTL_S = 300.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return aware(ts)


class SpotPrices:
    """Spot prices per ``(instance type, AZ)``; ``clock`` returns seconds (monotonic)."""

    def __init__(
        self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._prices: dict[tuple[str, str], tuple[float, datetime]] = {}
        self._checked: dict[tuple[str, str], float] = {}
        self._version = 0

    @property
    def version(self) -> int:
        """Changes whenever a stored price changes."""
        return self._version

    def update(
        self,
        records: Iterable[Mapping[str, Any]],
        checked: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Store ``describe_spot_price_history`` records (``InstanceType``,
        ``AvailabilityZone``, ``SpotPrice`` (text or number), ``Timestamp`` (datetime or ISO
        text)): per key the newest ``Timestamp`` wins, whatever the order. Records of
        another ``ProductDescription`` than Linux/UNIX, and malformed ones, are skipped.
        ``checked``: ``(type, az)`` pairs that were asked about (fresh now even without a
        record). Returns how many prices changed."""
        now = self._clock()
        for pair in checked:
            self._checked[pair] = now
        changed = 0
        for r in records:
            product = r.get("ProductDescription")
            if product is not None and not str(product).startswith("Linux/UNIX"):
                continue
            try:
                key = (str(r["InstanceType"]), str(r["AvailabilityZone"]))
                price = float(r["SpotPrice"])
            except (KeyError, TypeError, ValueError):
                continue
            if not price >= 0:
                continue
            ts = _timestamp(r.get("Timestamp")) or _EPOCH
            self._checked[key] = now
            old = self._prices.get(key)
            if old is not None and old[1] > ts:
                continue
            self._prices[key] = (price, ts)
            if old is None or old[0] != price:
                changed += 1
        if changed:
            self._version += 1
        return changed

    def get(self, instance_type: str, az: str) -> float | None:
        """The newest known spot price in USD/hour, or ``None``."""
        hit = self._prices.get((instance_type, az))
        return hit[0] if hit is not None else None

    def age(self, instance_type: str, az: str) -> float | None:
        """Seconds since the pair was last checked, or ``None`` when never."""
        at = self._checked.get((instance_type, az))
        return None if at is None else self._clock() - at

    def stale(self, instance_type: str, az: str) -> bool:
        """Never checked, or checked ``ttl_s`` or more ago."""
        at = self._checked.get((instance_type, az))
        return at is None or self._clock() - at >= self.ttl_s

    def needs(
        self, types: Sequence[str], azs: Sequence[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What to ask ``describe_spot_price_history`` for: the instance types and the AZs
        (each in the given order) that have at least one stale pair; ``((), ())`` when
        every pair is fresh."""
        now = self._clock()
        stale_types: list[str] = []
        stale_azs: set[str] = set()
        for t in dict.fromkeys(types):
            bad = False
            for az in azs:
                at = self._checked.get((t, az))
                if at is None or now - at >= self.ttl_s:
                    bad = True
                    stale_azs.add(az)
            if bad:
                stale_types.append(t)
        return tuple(stale_types), tuple(az for az in dict.fromkeys(azs) if az in stale_azs)
