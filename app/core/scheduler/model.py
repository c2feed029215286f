"""The scheduler's values: where machines can start (``Placement``, ``Fleet``), what a job
asks for (``Requirements``) and one way to start it (``Candidate``). All immutable and
hashable, so the scheduler can cache on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from app.core.config.model import HardwareSpec, PlannedJob, Resources, SpotPolicy, Workload
from app.core.hardware import parse_spec
from app.core.jobspec import StoredJobSpec

Market = Literal["spot", "on-demand"]
SPOT: Market = "spot"
ON_DEMAND: Market = "on-demand"


@dataclass(frozen=True, slots=True)
class Placement:
    """One place a machine can start: a subnet in an availability zone of a region."""

    region: str
    az: str
    subnet_id: str


ReservationKind = Literal["on-demand", "capacity-block"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Capacity already paid for: an On-Demand Capacity Reservation (``kind="on-demand"``,
    by id ``cr-...`` or by resource group ARN) or an EC2 Capacity Block for ML
    (``kind="capacity-block"``, by id). Its instances start in ``az`` (of ``region``) as
    ``instance_type``; ``price_usd_hour`` is what its hours cost (an ODCR: the on-demand
    price when unset; a block: its price divided by its hours).

    ``instance_type``/``az``/``region`` are "" while unknown (an entry with only an id,
    before DescribeCapacityReservations said): such a reservation is not offered.
    ``starts``/``ends`` (UTC): its window (a Capacity Block's; EC2 ends a block's
    instances ``BLOCK_END_MARGIN`` before ``ends``). ``tenants`` (``forge:id-or-name``,
    ``*``) and ``workloads``: who may use it (empty: everyone). ``state`` and
    ``available``: what EC2 last said (``State``, ``AvailableInstanceCount``; None:
    not asked); only ``active`` is used, and not while ``available`` is 0.
    """

    target: str  # cr-... id, or arn:aws:resource-groups:... for an ODCR group
    instance_type: str
    az: str
    region: str
    kind: ReservationKind = "on-demand"
    price_usd_hour: float | None = None
    starts: datetime | None = None
    ends: datetime | None = None
    tenants: tuple[str, ...] = ()
    workloads: tuple[Workload, ...] = ()
    state: str = "active"
    available: int | None = None
    kind_given: bool = True  # False: the entry left ``kind`` out (EC2's ReservationType)

    @property
    def by_group(self) -> bool:
        return self.target.startswith("arn:")

    @property
    def known(self) -> bool:
        """Whether its instance type and AZ are known (given, or said by EC2)."""
        return bool(self.instance_type and self.az)

    @property
    def label(self) -> str:
        what = "Capacity Block" if self.kind == "capacity-block" else "capacity reservation"
        return f"{what} {self.target}"


@dataclass(frozen=True, slots=True)
class Fleet:
    """The operator's settings for the scheduler.

    * ``placements``: where machines may start, in preference order (ties between equally
      good candidates go to the placement listed first).
    * ``allowed_classes``: the hardware classes this PloyD may start; ``None`` = all.
    * ``max_spot_fraction``: spot is skipped where its price is above this fraction of the
      on-demand price (1.0: never pay more than on-demand); ``class_max_spot_fraction``
      overrides it per hardware class, e.g. ``(("h100", 0.6),)``.
    * ``offerings``: the ``(instance type, AZ)`` pairs that exist (from
      ``describe_instance_type_offerings``); ``None`` = every type in every AZ.
    * ``train_spot_fallback``: ``workload: train`` with ``spot: auto`` runs on-demand only
      (the documented rule); ``True`` adds spot after every on-demand candidate.
    * ``reservations``: capacity already paid for (``Reservation``), tried before every
      other candidate of a job whose hardware its instance type fits, in this order.
    """

    placements: tuple[Placement, ...]
    allowed_classes: frozenset[str] | None = None
    max_spot_fraction: float = 1.0
    class_max_spot_fraction: tuple[tuple[str, float], ...] = ()
    offerings: frozenset[tuple[str, str]] | None = None
    train_spot_fallback: bool = False
    reservations: tuple[Reservation, ...] = ()

    def __post_init__(self) -> None:
        for cls, f in (("*", self.max_spot_fraction), *self.class_max_spot_fraction):
            if not f > 0:
                raise ValueError(f"max spot fraction for {cls} must be above 0, not {f}")

    def allows(self, cls: str) -> bool:
        return self.allowed_classes is None or cls in self.allowed_classes

    def spot_cap(self, cls: str) -> float:
        """The highest spot price, as a fraction of on-demand, for hardware class ``cls``."""
        for c, f in self.class_max_spot_fraction:
            if c == cls:
                return f
        return self.max_spot_fraction

    def offered(self, instance_type: str, az: str) -> bool:
        return self.offerings is None or (instance_type, az) in self.offerings


@dataclass(frozen=True, slots=True)
class Requirements:
    """What one job needs from the scheduler.

    ``hardware`` (specs in preference order) or ``resources``; ``instance_types`` is the
    fallback when neither is known: the candidate names stored on a job row planned from
    ``resources`` (the row does not keep the resources themselves).
    ``after_interruption``: the previous attempt lost its spot machine; with
    ``spot: auto`` the retry runs on-demand. ``timeout_s``: the job's timeout (a
    Capacity Block that ends before it would is not offered).
    """

    hardware: tuple[HardwareSpec, ...]
    resources: Resources | None
    workload: Workload = Workload.TEST
    spot: SpotPolicy = SpotPolicy.AUTO
    after_interruption: bool = False
    instance_types: tuple[str, ...] = ()
    timeout_s: int = 0  # the job's timeout (0: unknown): a Capacity Block must outlast it

    @classmethod
    def from_planned(cls, job: PlannedJob, after_interruption: bool = False) -> Requirements:
        return cls(
            hardware=tuple(job.hardware),
            resources=job.resources if not job.hardware else None,
            workload=job.spec.workload,
            spot=job.spec.spot,
            after_interruption=after_interruption,
            instance_types=() if job.hardware or job.resources else tuple(job.candidates),
            timeout_s=job.spec.timeout_s,
        )

    @classmethod
    def from_row(
        cls,
        spec: StoredJobSpec,
        hardware: Sequence[str],
        candidates: Sequence[str] = (),
        after_interruption: bool = False,
    ) -> Requirements:
        """From a stored job: ``jobs.spec`` (its ``workload`` and ``spot``),
        ``jobs.hardware`` (``["l4:1", ...]``) and ``jobs.candidates`` (instance type names,
        used only when ``hardware`` is empty). Raises ``ValueError`` on a bad value."""
        specs = tuple(parse_spec(str(h)) for h in hardware)
        return cls(
            hardware=specs,
            resources=None,
            workload=spec.workload,
            spot=spec.spot,
            after_interruption=after_interruption,
            instance_types=() if specs else tuple(str(c) for c in candidates),
            timeout_s=spec.timeout_s,
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to start a job: an instance type in a placement, on a market, at a price.

    ``hardware`` is what the instance type provides, as a spec: ``"l4:4"`` for
    ``g6.12xlarge``, ``"cpu:8"`` for ``c7i.2xlarge``. ``price_usd_hour`` is the spot price
    for spot (``estimated``: no spot price known, on-demand x ``SPOT_ESTIMATE``), else the
    on-demand price (the region's). ``reservation``: it starts in that capacity
    reservation or Capacity Block (on-demand capacity, already paid for).
    """

    instance_type: str
    hardware: str
    placement: Placement
    market: Market
    price_usd_hour: float
    on_demand_usd_hour: float
    estimated: bool = False
    reservation: Reservation | None = None

    @property
    def spot(self) -> bool:
        return self.market == SPOT

    @property
    def launch_market(self) -> str:
        """The market as EC2 names it: ``spot``, ``on-demand`` or ``capacity-block``."""
        r = self.reservation
        return "capacity-block" if r is not None and r.kind == "capacity-block" else self.market

    @property
    def key(self) -> str:
        """For "tried ..." messages and avoid lists: ``g6.xlarge spot us-east-1a``
        (a Capacity Block's market: ``capacity-block``, as its machine row says)."""
        return f"{self.instance_type} {self.launch_market} {self.placement.az}"
