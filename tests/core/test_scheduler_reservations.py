"""Capacity already paid for comes first: the fleet's On-Demand Capacity Reservations and
Capacity Blocks are a job's first candidates when their instance type fits it, in the
job's hardware order; one in an AZ without a subnet is said to be unusable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.config.model import SpotPolicy, Workload
from app.core.hardware import Catalog, parse_spec
from app.core.scheduler import Fleet, Placement, Requirements, Reservation, Scheduler
from app.core.scheduler.reserved import span, tenant_names, why_not
from app.core.scheduler.select import unplaced_reservations

EAST = Placement("us-east-1", "us-east-1a", "subnet-0123456789abcdef0")
WEST = Placement("us-west-2", "us-west-2b", "subnet-0123456789abcdef1")
ODCR = Reservation("cr-0123456789abcdef0", "g6.2xlarge", "us-west-2b", "us-west-2")
BLOCK = Reservation(
    "cr-0123456789abcdef1", "p5.48xlarge", "us-east-1a", "us-east-1", "capacity-block", 31.5
)


def req(*hardware: str, spot: SpotPolicy = SpotPolicy.AUTO) -> Requirements:
    return Requirements(tuple(parse_spec(h) for h in hardware), None, Workload.TEST, spot)


def test_a_reservation_that_fits_is_tried_first_whatever_the_market_rules() -> None:
    cat = Catalog.load(None)
    sched = Scheduler(cat, Fleet((EAST, WEST), reservations=(ODCR, BLOCK)))
    for spot in SpotPolicy:
        first, *rest = sched.candidates(req("l4", spot=spot))
        assert (first.instance_type, first.reservation, first.placement) == (
            "g6.2xlarge", ODCR, WEST)
        # already paid for: first although g6.xlarge is cheaper; its price is on-demand's
        assert first.price_usd_hour == cat.get("g6.2xlarge").price_usd_hour
        assert first.market == first.launch_market == "on-demand"
        assert all(c.reservation is None for c in rest)
    # a job that the reservation's type does not fit never gets it
    assert all(c.reservation is None for c in sched.candidates(req("cpu:2")))


def test_reservations_follow_the_jobs_hardware_order_and_blocks_are_their_market() -> None:
    sched = Scheduler(Catalog.load(None), Fleet((EAST, WEST), reservations=(ODCR, BLOCK)))
    h100_first = sched.candidates(req("h100:8", "l4"))
    assert [c.reservation for c in h100_first[:2]] == [BLOCK, ODCR]
    assert h100_first[0].launch_market == "capacity-block"
    assert h100_first[0].key == "p5.48xlarge capacity-block us-east-1a"  # as its row's
    assert h100_first[0].price_usd_hour == 31.5
    l4_first = sched.candidates(req("l4", "h100:8"))
    assert [c.reservation for c in l4_first[:2]] == [ODCR, BLOCK]


def test_a_reservation_without_a_subnet_in_its_az_is_unusable_and_said_so() -> None:
    cat = Catalog.load(None)
    fleet = Fleet((EAST,), reservations=(ODCR,))
    assert all(c.reservation is None for c in Scheduler(cat, fleet).candidates(req("l4")))
    assert unplaced_reservations(cat, fleet) == [(ODCR, "no subnet in us-west-2b")]
    unknown = Reservation("cr-0123456789abcdef2", "x9.huge", "us-east-1a", "us-east-1")
    assert unplaced_reservations(cat, Fleet((EAST,), reservations=(unknown,))) == [
        (unknown, "x9.huge is not in the hardware catalog")
    ]


# -- windows, states and who may use a reservation (``reserved``; now is an input) --------

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _reserved(sched: Scheduler, r: Requirements, **kw: Any) -> list[Reservation | None]:
    return [c.reservation for c in sched.candidates(r, **kw) if c.reservation is not None]


def test_a_capacity_block_is_offered_only_inside_its_window_and_if_it_outlasts_the_job() -> None:
    block = replace(BLOCK, starts=NOW + timedelta(hours=2), ends=NOW + timedelta(hours=26))
    sched = Scheduler(Catalog.load(None), Fleet((EAST, WEST), reservations=(block,)))
    job = replace(req("h100:8"), timeout_s=3600)
    assert _reserved(sched, job, now=NOW) == []  # not started
    assert why_not(block, NOW) == "starts in 2h (2026-12-05 14:00 UTC)"
    assert _reserved(sched, job, now=NOW + timedelta(hours=2)) == [block]  # at its start
    # EC2 ends its instances 30 minutes before the end: 1h of job needs 1h30 left
    late = NOW + timedelta(hours=24, minutes=30)
    assert _reserved(sched, job, now=late) == [block]  # exactly 1h left before the cut
    later = late + timedelta(seconds=1)
    assert _reserved(sched, job, now=later) == []
    assert "before the job's timeout of 1h" in str(why_not(block, later, timeout_s=3600))
    assert _reserved(sched, replace(job, timeout_s=1800), now=later) == [block]
    cut = NOW + timedelta(hours=25, minutes=30)
    assert _reserved(sched, replace(job, timeout_s=60), now=cut) == []
    assert str(why_not(block, cut)).startswith("ended (EC2 ends its instances 30 min")
    assert why_not(block, NOW + timedelta(hours=27)) == "ended"
    # without the time, a reservation with a window is not offered; one without is
    assert _reserved(sched, job) == []
    assert _reserved(Scheduler(Catalog.load(None), Fleet((EAST,), reservations=(BLOCK,))),
                     job) == [BLOCK]


def test_an_odcr_with_an_end_keeps_its_instances_past_it_so_any_job_may_use_it() -> None:
    odcr = replace(ODCR, ends=NOW + timedelta(minutes=10))
    sched = Scheduler(Catalog.load(None), Fleet((WEST,), reservations=(odcr,)))
    long_job = replace(req("l4"), timeout_s=6 * 3600)
    assert _reserved(sched, long_job, now=NOW) == [odcr]  # no 30-minute cut, no length rule
    assert _reserved(sched, long_job, now=NOW + timedelta(minutes=10)) == []


def test_only_active_reservations_with_a_free_instance_and_a_known_type_are_offered() -> None:
    cat = Catalog.load(None)
    for state in ("pending", "expired", "cancelled", "payment-failed"):
        r = replace(ODCR, state=state)
        assert _reserved(Scheduler(cat, Fleet((WEST,), reservations=(r,))), req("l4"),
                         now=NOW) == []
        assert why_not(r, NOW) == f"EC2 says it is {state}"
    full = replace(ODCR, available=0)
    assert _reserved(Scheduler(cat, Fleet((WEST,), reservations=(full,))), req("l4")) == []
    assert why_not(full, NOW) == "no instance free in it (AvailableInstanceCount 0)"
    one = replace(ODCR, available=1)
    assert _reserved(Scheduler(cat, Fleet((WEST,), reservations=(one,))), req("l4")) == [one]
    bare = Reservation("cr-0123456789abcdef3", "", "", "")  # an id only: EC2 not asked yet
    fleet = Fleet((WEST,), reservations=(bare,))
    assert _reserved(Scheduler(cat, fleet), req("l4"), now=NOW) == []
    assert unplaced_reservations(cat, fleet) == [
        (bare, "its instance type and AZ are not known yet (EC2 was not asked)")]


def test_a_reservation_for_some_tenants_and_workloads_is_theirs_only() -> None:
    team = replace(BLOCK, tenants=("github:acme",), workloads=(Workload.TRAIN,))
    sched = Scheduler(Catalog.load(None), Fleet((EAST,), reservations=(team,)))
    train = Requirements((parse_spec("h100:8"),), None, Workload.TRAIN)
    acme = tenant_names("github", "42", "acme")
    assert acme == ("github:42", "github:acme")
    assert _reserved(sched, train, now=NOW, tenant=acme) == [team]
    assert _reserved(sched, train, now=NOW, tenant=tenant_names("github", "7", "other")) == []
    assert _reserved(sched, train, now=NOW) == []  # tenant not known
    batch = replace(train, workload=Workload.BATCH)
    assert _reserved(sched, batch, now=NOW, tenant=acme) == []
    assert why_not(team, NOW, workload=Workload.BATCH, tenant=acme) == (
        "reserved for workloads train")
    # a warm pool (no tenant, no workload) gets only what is open to everyone
    assert _reserved(sched, train, now=NOW, tenant=acme, pool=True) == []
    by_id = replace(team, tenants=("github:42",), workloads=())
    sched = Scheduler(Catalog.load(None), Fleet((EAST,), reservations=(by_id,)))
    assert _reserved(sched, batch, now=NOW, tenant=acme) == [by_id]
    assert _reserved(sched, batch, now=NOW, tenant=acme, pool=True) == []
    anyone = replace(by_id, tenants=("*",))
    sched = Scheduler(Catalog.load(None), Fleet((EAST,), reservations=(anyone,)))
    assert _reserved(sched, batch, now=NOW, pool=True) == [anyone]
    # the other candidates are the same either way
    assert [c for c in sched.candidates(batch, now=NOW, pool=True) if c.reservation is None] \
        == [c for c in sched.candidates(batch) if c.reservation is None]


def test_update_reservations_rebuilds_the_candidates() -> None:
    sched = Scheduler(Catalog.load(None), Fleet((WEST,), reservations=(ODCR,)))
    assert _reserved(sched, req("l4")) == [ODCR]
    sched.update_reservations((replace(ODCR, state="expired"),))
    assert _reserved(sched, req("l4")) == []
    found = replace(ODCR, available=3)
    sched.update_reservations((found,))
    assert _reserved(sched, req("l4")) == [found]
    assert sched.fleet.reservations == (found,)


def test_span_reads_as_people_do() -> None:
    assert [span(timedelta(seconds=s)) for s in (30, 45 * 60, 3 * 3600 + 1200, 2 * 86400 + 7200,
                                                86400)] == ["30s", "45m", "3h 20m", "2d 2h", "1d"]
