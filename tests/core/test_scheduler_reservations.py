"""Capacity already paid for comes first: the fleet's On-Demand Capacity Reservations and
Capacity Blocks are a job's first candidates when their instance type fits it, in the
job's hardware order; one in an AZ without a subnet is said to be unusable."""

from __future__ import annotations

from app.core.config.model import SpotPolicy, Workload
from app.core.hardware import Catalog, parse_spec
from app.core.scheduler import Fleet, Placement, Requirements, Reservation, Scheduler
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
