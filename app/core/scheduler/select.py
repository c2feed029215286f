"""Requirements + catalog + fleet + spot prices -> launch candidates, best first.

Every (instance type that fits, placement, market) the job and the operator allow, sorted
by, in this order:

1. the job's hardware list: ``[h100, a100]`` puts every h100 candidate first;
2. the market, where the workload cares: ``train`` on-demand before spot, ``batch`` spot
   before on-demand;
3. the workload's preference among instance types (``hardware.order_for_workload``):
   ``inference`` latency-class accelerators (tier ``inference``: l4, a10g, inferentia, t4,
   l40s) before training-class ones; ``preprocess`` CPU types with the most memory per
   vCPU first; ``train`` exact accelerator count first (the machine is kept whole);
   ``test`` / ``batch`` none;
4. the effective hourly price: the spot price when known, else on-demand x
   ``SPOT_ESTIMATE``; on-demand at the region's price (``OnDemandPrices``, from the
   Pricing API) or else the catalog's list price; placements in several regions are
   ordered by these prices across regions;
5. ties: placement order as configured, then instance type name, on-demand first.

Before all of these: the fleet's reservations (On-Demand Capacity Reservations and
Capacity Blocks, already paid for) whose instance type fits the job, whatever its
market rules, when the job may use them now (``reserved.why_not``: EC2 says it is
active with a free instance, ``now`` is inside its window and a block outlasts the
job's timeout, the job's tenant and workload are among those it serves). ``now`` and
the tenant are inputs: the scheduler reads no clock.

Markets: ``spot: never`` on-demand only; ``spot: always`` spot only; ``spot: auto`` both,
except ``train`` (on-demand only, unless ``Fleet.train_spot_fallback``) and after a spot
interruption (on-demand only). Spot is skipped where its price (or estimate) is above the
fleet's cap (a fraction of on-demand).

Candidates are shared between jobs; what depends only on the job's requirement shape
(the fitting types and their ranks) is cached per shape, and the sorted result until the
spot prices change (see ``Scheduler``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

from app.core.config.model import HardwareSpec, Resources, SpotPolicy, Workload
from app.core.hardware import Catalog, InstanceType
from app.core.scheduler.model import (
    ON_DEMAND,
    SPOT,
    Candidate,
    Fleet,
    Requirements,
    Reservation,
)
from app.core.scheduler.prices import OnDemandPrices, SpotPrices
from app.core.scheduler.reserved import TenantNames, why_not

# Assumed spot price as a fraction of on-demand while no spot price is known: AWS spot is
# "usually 60-70% cheaper" (docs/configuration.md), so 65% off.
SPOT_ESTIMATE = 0.35
# Cached requirement shapes per scheduler before the caches are dropped and rebuilt.
MAX_CACHED = 1024

_ReqKey = tuple[tuple[HardwareSpec, ...], Resources | None, tuple[str, ...], Workload]


class _Fit(NamedTuple):
    type: InstanceType
    tier: int  # index in the job's hardware list
    rank: tuple[float, ...]  # the workload's preference, lower first


# A candidate with its rank in the job-independent order of every candidate (by price,
# then placement index, name, on-demand first); per job only ranks are compared.
_Ranked = tuple[int, Candidate]
_first = itemgetter(0)


def _req_key(req: Requirements) -> _ReqKey:
    return (req.hardware, req.resources, req.instance_types, req.workload)


def markets(req: Requirements, fleet: Fleet) -> tuple[bool, bool]:
    """(on-demand allowed, spot allowed) for ``req``."""
    if req.spot is SpotPolicy.NEVER:
        return True, False
    if req.spot is SpotPolicy.ALWAYS:
        return False, True
    if req.after_interruption:
        return True, False
    if req.workload is Workload.TRAIN and not fleet.train_spot_fallback:
        return True, False
    return True, True


def _market_rank(workload: Workload) -> tuple[int, int]:
    """(on-demand, spot) sort rank."""
    if workload is Workload.TRAIN:
        return 0, 1
    if workload is Workload.BATCH:
        return 1, 0
    return 0, 0


def _rank(
    t: InstanceType, workload: Workload, requested: int | None, cat: Catalog
) -> tuple[float, ...]:
    if workload is Workload.INFERENCE:
        training = cat.has_class(t.cls) and cat.hardware_class(t.cls).tier == "training"
        return (1.0 if training else 0.0,)
    if workload is Workload.PREPROCESS:
        return (0.0 if t.cls == "cpu" else 1.0, -(t.memory_gb / t.vcpus))
    if workload is Workload.TRAIN:
        extra = t.count - requested if requested is not None and t.count >= requested else 0
        return (float(extra),)
    return ()


def fitting(req: Requirements, catalog: Catalog) -> list[tuple[InstanceType, int]]:
    """Every catalog type that fits ``req``, ignoring the fleet: ``(type, tier)`` with tier
    the index in the hardware list (each type only in its first tier)."""
    out: list[tuple[InstanceType, int]] = []
    if req.hardware:
        seen: set[str] = set()
        for tier, spec in enumerate(req.hardware):
            for t in catalog.for_spec(spec):
                if t.name not in seen:
                    seen.add(t.name)
                    out.append((t, tier))
    elif req.resources is not None:
        out = [(t, 0) for t in catalog.for_resources(req.resources)]
    else:
        for name in dict.fromkeys(req.instance_types):
            try:
                out.append((catalog.get(name), 0))
            except KeyError:
                continue
    return out


def _requested(req: Requirements, fits: Sequence[tuple[InstanceType, int]]) -> list[int | None]:
    """Per tier: the count asked for (what ``train`` matches exactly)."""
    if req.hardware:
        return [s.count for s in req.hardware]
    r = req.resources
    if r is not None:
        return [r.gpu.count if r.gpu is not None else r.cpu]
    return [min((t.count for t, _ in fits), default=None)]


class Scheduler:
    """The scheduler for one catalog, fleet and spot price cache, with its caches.

    Candidates do not depend on the job, so they are built once and shared: on-demand ones
    once, spot ones once per version of the spot prices, each with its rank in the order
    of all candidates by (price, placement, name, market) (``prepare``). Per requirement
    shape the fitting types and their ranks are kept, and the sorted result until the
    spot prices change.
    """

    def __init__(
        self,
        catalog: Catalog,
        fleet: Fleet,
        spot_prices: SpotPrices | None = None,
        od_prices: OnDemandPrices | None = None,
    ) -> None:
        self.catalog = catalog
        self.fleet = fleet
        self.spot_prices = spot_prices
        self.od_prices = od_prices  # per region; the catalog's list price where unknown
        self._od: tuple[Candidate, ...] | None = None
        self._od_version = -1
        self._table: dict[str, tuple[tuple[_Ranked, ...], tuple[_Ranked, ...]]] = {}
        self._reserved: dict[str, tuple[Candidate, ...]] = {}
        self._version: tuple[int, int] = (-1, -1)
        self._fits: dict[_ReqKey, tuple[_Fit, ...]] = {}
        self._done: dict[tuple[_ReqKey, bool, bool], tuple[Candidate, ...]] = {}

    def candidates(
        self,
        req: Requirements,
        *,
        now: datetime | None = None,
        tenant: TenantNames | None = None,
        pool: bool = False,
    ) -> list[Candidate]:
        """Every allowed way to start ``req``, best first (empty: see ``why_none``).

        Reservations are offered only where ``reserved.why_not`` allows them at ``now``
        (None: not known, so none with a window) for a job of ``tenant`` (the names it
        goes by; None: not known, so none reserved for some tenants) and ``req``'s
        workload and timeout; ``pool``: for a warm pool (no tenant, no workload)."""
        done = self._candidates(req)
        if not done or done[0].reservation is None:  # reserved ones come first
            return list(done)
        workload = None if pool else req.workload
        tenant = None if pool else tenant
        return [
            c
            for c in done
            if c.reservation is None
            or why_not(
                c.reservation, now, workload=workload, tenant=tenant, timeout_s=req.timeout_s
            )
            is None
        ]

    def update_reservations(self, reservations: Sequence[Reservation]) -> None:
        """What EC2 now says of the fleet's reservations (their types, AZs, states, free
        instances, windows): the fleet gets these, and the candidates are built again."""
        new = tuple(reservations)
        if new == self.fleet.reservations:
            return
        self.fleet = replace(self.fleet, reservations=new)
        self._reserved = _reserved(
            [t for t in self.catalog.types() if self.fleet.allows(t.cls)],
            self.fleet,
            self.on_demand,
        )
        self._done.clear()

    def _candidates(self, req: Requirements) -> tuple[Candidate, ...]:
        self.prepare()
        use_od, use_spot = markets(req, self.fleet)
        rk = _req_key(req)
        dk = (rk, use_od, use_spot)
        done = self._done.get(dk)
        if done is None:
            if len(self._done) >= MAX_CACHED:
                self._done.clear()
            done = self._build(self._fits_for(req, rk), req.workload, use_od, use_spot)
            self._done[dk] = done
        return done

    def prepare(self) -> None:
        """Build the candidate table for the current spot prices, if not done yet (the
        caller may call this right after refreshing the prices, off a job's path)."""
        od_version = self.od_prices.version if self.od_prices is not None else 0
        version = (self.spot_prices.version if self.spot_prices is not None else 0, od_version)
        if version == self._version:
            return
        fleet, prices = self.fleet, self.spot_prices
        types = [t for t in self.catalog.types() if fleet.allows(t.cls)]
        if self._od is None or od_version != self._od_version:
            self._od = tuple(
                Candidate(t.name, f"{t.cls}:{t.count}", p, ON_DEMAND, od, od)
                for t in types
                for p in fleet.placements
                if fleet.offered(t.name, p.az)
                for od in (self.on_demand(t, p.region),)
            )
            self._reserved = _reserved(types, fleet, self.on_demand)
            self._od_version = od_version
        spot: list[Candidate] = []
        for t in types:
            hw, cap = f"{t.cls}:{t.count}", fleet.spot_cap(t.cls)
            for p in fleet.placements:
                if not fleet.offered(t.name, p.az):
                    continue
                od = self.on_demand(t, p.region)
                price = prices.get(t.name, p.az) if prices is not None else None
                if price is None:
                    if cap >= SPOT_ESTIMATE:
                        spot.append(Candidate(t.name, hw, p, SPOT, od * SPOT_ESTIMATE, od, True))
                elif price <= cap * od:
                    spot.append(Candidate(t.name, hw, p, SPOT, price, od))
        index = {p: i for i, p in reversed(list(enumerate(fleet.placements)))}
        order = sorted(
            [*self._od, *spot],
            key=lambda c: (c.price_usd_hour, index[c.placement], c.instance_type, c.spot),
        )
        od_of: dict[str, list[_Ranked]] = {t.name: [] for t in types}
        spot_of: dict[str, list[_Ranked]] = {t.name: [] for t in types}
        for rank, c in enumerate(order):
            (spot_of if c.spot else od_of)[c.instance_type].append((rank, c))
        self._table = {n: (tuple(od_of[n]), tuple(spot_of[n])) for n in od_of}
        self._done.clear()
        self._version = version

    def on_demand(self, t: InstanceType, region: str) -> float:
        """``t``'s on-demand price in ``region``: the Pricing API's, else the catalog's."""
        known = self.od_prices.get(t.name, region) if self.od_prices is not None else None
        return t.price_usd_hour if known is None else known

    def _fits_for(self, req: Requirements, rk: _ReqKey) -> tuple[_Fit, ...]:
        fits = self._fits.get(rk)
        if fits is None:
            if len(self._fits) >= MAX_CACHED:
                self._fits.clear()
            cat, fleet = self.catalog, self.fleet
            found = [f for f in fitting(req, cat) if fleet.allows(f[0].cls)]
            requested = _requested(req, found)
            fits = tuple(
                _Fit(t, tier, _rank(t, req.workload, requested[tier], cat)) for t, tier in found
            )
            self._fits[rk] = fits
        return fits

    def _build(
        self, fits: Sequence[_Fit], workload: Workload, use_od: bool, use_spot: bool
    ) -> tuple[Candidate, ...]:
        od_rank, spot_rank = _market_rank(workload)
        buckets: dict[tuple[float, ...], list[_Ranked]] = {}
        table = self._table
        # capacity already paid for comes first (whatever the market rules: it costs
        # nothing more to use), in the job's hardware order, then the workload's
        reserved: list[tuple[tuple[float, ...], int, Candidate]] = []
        for t, tier, rank in fits:
            for i, c in enumerate(self._reserved.get(t.name, ())):
                reserved.append(((tier, *rank), i, c))
        reserved.sort(key=lambda x: (x[0], x[1]))
        for t, tier, rank in fits:
            od, spot = table[t.name]
            if use_od and od:
                key = (tier, od_rank, *rank)
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = []
                bucket.extend(od)
            if use_spot and spot:
                key = (tier, spot_rank, *rank)
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = []
                bucket.extend(spot)
        out: list[Candidate] = [c for _, _, c in reserved]
        for key in sorted(buckets):
            bucket = buckets[key]
            bucket.sort(key=_first)
            out.extend([c for _, c in bucket])
        return tuple(out)


def _reserved(
    types: Sequence[InstanceType],
    fleet: Fleet,
    on_demand: Callable[[InstanceType, str], float],
) -> dict[str, tuple[Candidate, ...]]:
    """Per instance type: its reservations' candidates, in the fleet's order, each in the
    first placement of the reservation's AZ (none there: the reservation cannot be used,
    ``unplaced_reservations`` says so). Whether a job may use one now is decided per
    job (``Scheduler.candidates``)."""
    by_name = {t.name: t for t in types}
    out: dict[str, list[Candidate]] = {}
    for r in fleet.reservations:
        if not r.known:
            continue
        t = by_name.get(r.instance_type)
        p = next((p for p in fleet.placements if p.az == r.az), None)
        if t is None or p is None:
            continue
        od = on_demand(t, p.region)
        price = od if r.price_usd_hour is None else r.price_usd_hour
        c = Candidate(t.name, f"{t.cls}:{t.count}", p, ON_DEMAND, price, od, reservation=r)
        out.setdefault(t.name, []).append(c)
    return {k: tuple(v) for k, v in out.items()}


def unplaced_reservations(catalog: Catalog, fleet: Fleet) -> list[tuple[Reservation, str]]:
    """The fleet's reservations no job can use, with why."""
    out: list[tuple[Reservation, str]] = []
    for r in fleet.reservations:
        if not r.known:
            out.append((r, "its instance type and AZ are not known yet (EC2 was not asked)"))
        elif not any(t.name == r.instance_type for t in catalog.types()):
            out.append((r, f"{r.instance_type} is not in the hardware catalog"))
        elif not fleet.allows(catalog.get(r.instance_type).cls):
            out.append((r, f"{r.instance_type}'s class is not allowed"))
        elif not any(p.az == r.az for p in fleet.placements):
            out.append((r, f"no subnet in {r.az}"))
    return out


@lru_cache(maxsize=16)
def scheduler_for(catalog: Catalog, fleet: Fleet, spot_prices: SpotPrices | None) -> Scheduler:
    """The (cached) scheduler of this catalog, fleet and spot price cache."""
    return Scheduler(catalog, fleet, spot_prices)


def candidates(
    req: Requirements,
    catalog: Catalog,
    fleet: Fleet,
    spot_prices: SpotPrices | None = None,
    *,
    now: datetime | None = None,
    tenant: TenantNames | None = None,
) -> list[Candidate]:
    """Every allowed way to start ``req``, best first (see the module docstring); empty
    when there is none (``explain.why_none`` says why)."""
    return scheduler_for(catalog, fleet, spot_prices).candidates(req, now=now, tenant=tenant)
