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


class OnDemandPrices:
    """On-demand prices per ``(instance type, region)``, filled by the EC2 adapter from
    the AWS Pricing API (``pricing:GetProducts``); no AWS calls here. A pair with no
    price (never asked, or Pricing unreachable or refusing) falls back to the catalog's
    list price (``get`` answers ``None``). Asked again after ``ttl_s`` (prices change
    rarely: a day by default); a failed ask is retried after ``retry_s``."""

    def __init__(
        self,
        ttl_s: float = 86400.0,
        retry_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self._clock = clock
        self._prices: dict[tuple[str, str], float] = {}
        self._checked: dict[str, tuple[float, float]] = {}  # region -> (at, ttl)
        self._version = 0
        self.errors: dict[str, str] = {}  # region -> why its prices are the catalog's

    @property
    def version(self) -> int:
        return self._version

    def get(self, instance_type: str, region: str) -> float | None:
        return self._prices.get((instance_type, region))

    def source(self, region: str) -> str:
        """Where ``region``'s on-demand prices come from, for ``ployd plan`` and logs."""
        if region in self.errors:
            return f"catalog list prices (Pricing API: {self.errors[region]})"
        if any(r == region for _, r in self._prices):
            return "AWS Pricing API"
        return "catalog list prices"

    def stale(self, region: str) -> bool:
        hit = self._checked.get(region)
        return hit is None or self._clock() - hit[0] >= hit[1]

    def update(self, region: str, prices: Mapping[str, float]) -> int:
        """Store ``region``'s prices (instance type -> USD/hour); returns how many changed."""
        self._checked[region] = (self._clock(), self.ttl_s)
        self.errors.pop(region, None)
        changed = 0
        for t, p in prices.items():
            if not p >= 0:
                continue
            if self._prices.get((t, region)) != p:
                self._prices[(t, region)] = float(p)
                changed += 1
        if changed:
            self._version += 1
        return changed

    def failed(self, region: str, why: str) -> None:
        """Pricing did not answer for ``region``: its known prices are kept (the catalog
        for the rest), and it is asked again after ``retry_s``."""
        self._checked[region] = (self._clock(), self.retry_s)
        self.errors[region] = why
