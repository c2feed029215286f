"""The hardware scheduler: requirements + catalog + fleet + spot prices -> ordered
launch candidates; why there are none; the spot price cache; waiting and backoff."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.core.config.loader import load_config
from app.core.config.model import GpuRequest, Resources, SpotPolicy, Workload
from app.core.expand import expand
from app.core.hardware import Catalog, parse_spec
from app.core.jobspec import StoredJobSpec
from app.core.scheduler import (
    SPOT_ESTIMATE,
    Candidate,
    Fleet,
    Placement,
    Requirements,
    Scheduler,
    SpotPrices,
    backoff,
    candidates,
    waiting_message,
    why_none,
)

W = Workload
S = SpotPolicy


def _t(name: str, cls: str, acc: int, vcpus: int, mem: float, price: float,
       acc_mem: float = 0) -> dict[str, Any]:
    return {"name": name, "class": cls, "accelerators": acc, "accelerator_memory_gb": acc_mem,
            "vcpus": vcpus, "memory_gb": mem, "price_usd_hour": price}


# A small catalog whose prices make each rule visible: a100.1 is the cheapest GPU (so
# inference must skip it for the latency class), r/m/c differ in memory per vCPU.
CAT = Catalog.from_data({
    "classes": {
        "cpu": {"kind": "cpu", "tier": "general"},
        "l4": {"kind": "gpu", "tier": "inference"},
        "a10g": {"kind": "gpu", "tier": "inference"},
        "a100": {"kind": "gpu", "tier": "training"},
        "h100": {"kind": "gpu", "tier": "training"},
    },
    "instance_types": [
        _t("c.large", "cpu", 0, 2, 4, 0.10),
        _t("m.large", "cpu", 0, 2, 8, 0.12),
        _t("r.large", "cpu", 0, 2, 16, 0.15),
        _t("c.xlarge", "cpu", 0, 4, 8, 0.20),
        _t("l4.1", "l4", 1, 4, 16, 0.80, 24),
        _t("l4.4", "l4", 4, 48, 192, 4.00, 24),
        _t("a10g.1", "a10g", 1, 4, 16, 1.00, 24),
        _t("a100.1", "a100", 1, 8, 64, 0.70, 40),
        _t("a100.8", "a100", 8, 96, 1152, 22.0, 40),
        _t("h100.1", "h100", 1, 16, 256, 7.00, 80),
        _t("h100.8", "h100", 8, 192, 2048, 55.0, 80),
    ],
})

A = Placement("us-east-1", "us-east-1a", "subnet-a")
B = Placement("us-east-1", "us-east-1b", "subnet-b")
FLEET = Fleet((A,))
FLEET2 = Fleet((B, A))  # configured order: b first


def req(hw: str | list[str] = "cpu", workload: Workload = W.TEST, spot: SpotPolicy = S.AUTO,
        after: bool = False, resources: Resources | None = None) -> Requirements:
    specs = () if resources else tuple(parse_spec(h) for h in ([hw] if isinstance(hw, str) else hw))
    return Requirements(specs, resources, workload, spot, after)


def keys(cs: list[Candidate]) -> list[str]:
    return [c.key for c in cs]


def short(cs: list[Candidate]) -> list[str]:
    """``l4.1 s`` / ``l4.1 od`` (single placement)."""
    return [f"{c.instance_type} {'s' if c.spot else 'od'}" for c in cs]


def prices(records: list[tuple[str, str, float]], clock: float = 0.0) -> SpotPrices:
    sp = SpotPrices(clock=lambda: clock)
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    sp.update([{"InstanceType": t, "AvailabilityZone": az, "SpotPrice": str(p), "Timestamp": ts}
               for t, az, p in records])
    return sp


# -- hardware list preference ------------------------------------------------------------

@pytest.mark.parametrize(("hw", "expected"), [
    (["h100", "a100"], ["h100.1", "h100.8", "a100.1", "a100.8"]),
    (["a100", "h100"], ["a100.1", "a100.8", "h100.1", "h100.8"]),
    (["a100:8", "h100"], ["a100.8", "h100.1", "h100.8"]),
    (["l4:4", "l4"], ["l4.4", "l4.1"]),  # a type appears once, in its first tier
    (["h100:8", "h100"], ["h100.8", "h100.1"]),
    ("cpu:4", ["c.xlarge"]),
])
def test_hardware_list_preference_order(hw: list[str], expected: list[str]) -> None:
    cs = candidates(req(hw, spot=S.NEVER), CAT, FLEET)
    assert [c.instance_type for c in cs] == expected


def test_hardware_list_beats_price_and_market() -> None:
    # even a cheap a100 spot comes after every h100 candidate, spot and on-demand
    cs = candidates(req(["h100", "a100"]), CAT, FLEET)
    tiers = [c.instance_type.split(".")[0] for c in cs]
    assert tiers == sorted(tiers, key=["h100", "a100"].index)
    # ``hardware`` is what the machine provides
    assert [c.hardware for c in cs] == ["h100:1"] * 2 + ["h100:8"] * 2 + ["a100:1"] * 2 + [
        "a100:8"] * 2


# -- resources -> cheapest fit -------------------------------------------------------------

@pytest.mark.parametrize(("resources", "expected"), [
    (Resources(gpu=GpuRequest()), ["a100.1", "l4.1", "a10g.1", "l4.4", "h100.1", "a100.8",
                                   "h100.8"]),
    (Resources(gpu=GpuRequest(memory_gb=40)), ["a100.1", "h100.1", "a100.8", "h100.8"]),
    (Resources(gpu=GpuRequest(type="l4", count=2)), ["l4.4"]),
    (Resources(cpu=2, memory_gb=8), ["m.large", "r.large", "c.xlarge"]),
    (Resources(memory_gb=12), ["r.large"]),
])
def test_resources_cheapest_fit(resources: Resources, expected: list[str]) -> None:
    cs = candidates(req(resources=resources, spot=S.NEVER), CAT, FLEET)
    assert [c.instance_type for c in cs] == expected
    assert cs[0].hardware == f"{CAT.get(expected[0]).cls}:{CAT.get(expected[0]).count}"


# -- workload classes -------------------------------------------------------------------------

GPU1 = Resources(gpu=GpuRequest())


@pytest.mark.parametrize(("case", "r", "expected"), [
    # inference: latency-class GPUs (l4, a10g) before training-class, each cheapest first
    ("inference", req(resources=GPU1, workload=W.INFERENCE, spot=S.NEVER),
     ["l4.1 od", "a10g.1 od", "l4.4 od", "a100.1 od", "h100.1 od", "a100.8 od", "h100.8 od"]),
    # train: on-demand only with spot: auto, exact count first (machine kept whole)
    ("train", req(resources=GPU1, workload=W.TRAIN),
     ["a100.1 od", "l4.1 od", "a10g.1 od", "h100.1 od", "l4.4 od", "a100.8 od", "h100.8 od"]),
    ("train h100:8", req("h100:8", workload=W.TRAIN), ["h100.8 od"]),
    ("train l4 list", req(["l4"], workload=W.TRAIN), ["l4.1 od", "l4.4 od"]),
    # train with spot: always -> spot only, still exact count first
    ("train always", req("l4", workload=W.TRAIN, spot=S.ALWAYS), ["l4.1 s", "l4.4 s"]),
    # batch: every spot candidate before on-demand
    ("batch", req("l4", workload=W.BATCH), ["l4.1 s", "l4.4 s", "l4.1 od", "l4.4 od"]),
    # test: cheapest first, spot and on-demand interleaved by (estimated) price
    ("test", req("l4"), ["l4.1 s", "l4.1 od", "l4.4 s", "l4.4 od"]),
    # preprocess: most memory per vCPU first (r, m, c), then cheapest
    ("preprocess", req("cpu", workload=W.PREPROCESS, spot=S.NEVER),
     ["r.large od", "m.large od", "c.large od", "c.xlarge od"]),
    ("test cpu", req("cpu", spot=S.NEVER),
     ["c.large od", "m.large od", "r.large od", "c.xlarge od"]),
])
def test_workload_ordering(case: str, r: Requirements, expected: list[str]) -> None:
    assert short(candidates(r, CAT, FLEET)) == expected, case


def test_train_spot_fallback_puts_spot_after_every_on_demand() -> None:
    fleet = Fleet((A,), train_spot_fallback=True)
    assert short(candidates(req("l4", workload=W.TRAIN), CAT, fleet)) == [
        "l4.1 od", "l4.4 od", "l4.1 s", "l4.4 s"]


def test_test_workload_prefers_cheaper_on_demand_over_dearer_spot() -> None:
    # l4.1 on-demand 0.80 < l4.4 spot estimate 1.40
    cs = candidates(req("l4"), CAT, FLEET)
    assert cs[1].market == "on-demand" and cs[1].price_usd_hour == 0.80
    assert cs[2].price_usd_hour == pytest.approx(4.00 * SPOT_ESTIMATE)


# -- spot policy ----------------------------------------------------------------------------

@pytest.mark.parametrize(("workload", "spot", "after", "markets"), [
    (W.TEST, S.AUTO, False, {"spot", "on-demand"}),
    (W.TEST, S.AUTO, True, {"on-demand"}),  # the retry after an interruption
    (W.TEST, S.NEVER, False, {"on-demand"}),
    (W.TEST, S.ALWAYS, False, {"spot"}),
    (W.TEST, S.ALWAYS, True, {"spot"}),
    (W.BATCH, S.AUTO, False, {"spot", "on-demand"}),
    (W.BATCH, S.AUTO, True, {"on-demand"}),
    (W.INFERENCE, S.AUTO, False, {"spot", "on-demand"}),
    (W.PREPROCESS, S.AUTO, False, {"spot", "on-demand"}),
    (W.TRAIN, S.AUTO, False, {"on-demand"}),
    (W.TRAIN, S.NEVER, False, {"on-demand"}),
    (W.TRAIN, S.ALWAYS, False, {"spot"}),
])
def test_spot_policy(workload: Workload, spot: SpotPolicy, after: bool, markets: set[str]) -> None:
    cs = candidates(req("l4", workload, spot, after), CAT, FLEET)
    assert {c.market for c in cs} == markets
    assert len(cs) == 2 * len(markets)


# -- spot prices and the max spot fraction ---------------------------------------------------

def test_known_spot_price_is_used_and_reorders() -> None:
    # known prices replace the estimate: l4.4 spot (0.50) is now the cheapest
    sp = prices([("l4.1", "us-east-1a", 0.70), ("l4.4", "us-east-1a", 0.50)])
    cs = candidates(req("l4"), CAT, FLEET, sp)
    assert short(cs) == ["l4.4 s", "l4.1 s", "l4.1 od", "l4.4 od"]
    assert (cs[0].price_usd_hour, cs[0].on_demand_usd_hour, cs[0].estimated) == (0.5, 4.0, False)
    assert cs[1].price_usd_hour == 0.70


@pytest.mark.parametrize(("fraction", "overrides", "spot_kept"), [
    (1.0, (), ["l4.1", "l4.4"]),  # l4.1 at 0.75 of on-demand, l4.4 estimated at 0.35
    (0.7, (), ["l4.4"]),  # l4.1's 0.75 is above 0.7
    (0.75, (), ["l4.1", "l4.4"]),  # equal to the cap is allowed
    (0.3, (), []),  # even the estimate (0.35) is above the cap
    (0.3, (("l4", 0.8),), ["l4.1", "l4.4"]),  # per-class override
    (1.0, (("l4", 0.5),), ["l4.4"]),
])
def test_max_spot_fraction(fraction: float, overrides: tuple[tuple[str, float], ...],
                           spot_kept: list[str]) -> None:
    sp = prices([("l4.1", "us-east-1a", 0.60)])
    fleet = Fleet((A,), max_spot_fraction=fraction, class_max_spot_fraction=overrides)
    cs = candidates(req("l4"), CAT, fleet, sp)
    assert sorted(c.instance_type for c in cs if c.spot) == spot_kept
    assert sorted(c.instance_type for c in cs if not c.spot) == ["l4.1", "l4.4"]


def test_spot_above_on_demand_is_skipped_by_default() -> None:
    sp = prices([("l4.1", "us-east-1a", 0.81)])
    assert "l4.1 s" not in short(candidates(req("l4"), CAT, FLEET, sp))


def test_fleet_rejects_non_positive_fraction() -> None:
    with pytest.raises(ValueError, match="above 0"):
        Fleet((A,), max_spot_fraction=0)


def test_cached_result_follows_price_updates() -> None:
    clock = [0.0]
    sp = SpotPrices(clock=lambda: clock[0])
    r = req("l4")
    first = candidates(r, CAT, FLEET, sp)
    assert first[0].estimated
    first.clear()  # the caller's copy: the cache is not affected
    assert candidates(r, CAT, FLEET, sp)[0].instance_type == "l4.1"
    sp.update([{"InstanceType": "l4.4", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.1",
                "Timestamp": datetime(2024, 1, 1, tzinfo=UTC)}])
    cs = candidates(r, CAT, FLEET, sp)
    assert (cs[0].instance_type, cs[0].price_usd_hour, cs[0].estimated) == ("l4.4", 0.1, False)


def test_scheduler_object_gives_the_same_answers() -> None:
    s = Scheduler(CAT, FLEET2)
    for r in (req("l4"), req(["h100", "a100"], W.TRAIN), req(resources=GPU1, workload=W.BATCH)):
        assert s.candidates(r) == candidates(r, CAT, FLEET2)
        assert s.candidates(r) == s.candidates(r)


# -- placements ---------------------------------------------------------------------------------

def test_placements_in_configured_order_on_ties() -> None:
    cs = candidates(req("l4", spot=S.NEVER), CAT, FLEET2)
    assert keys(cs) == ["l4.1 on-demand us-east-1b", "l4.1 on-demand us-east-1a",
                        "l4.4 on-demand us-east-1b", "l4.4 on-demand us-east-1a"]
    assert cs[0].placement == B and cs[0].placement.subnet_id == "subnet-b"


def test_cheaper_spot_in_a_later_az_comes_first() -> None:
    sp = prices([("l4.1", "us-east-1a", 0.20), ("l4.1", "us-east-1b", 0.30)])
    cs = candidates(req("l4", spot=S.ALWAYS), CAT, FLEET2, sp)
    assert keys(cs)[:2] == ["l4.1 spot us-east-1a", "l4.1 spot us-east-1b"]


def test_offerings_restrict_types_per_az() -> None:
    fleet = Fleet((B, A), offerings=frozenset({("l4.1", "us-east-1a"), ("l4.4", "us-east-1b")}))
    cs = candidates(req("l4", spot=S.NEVER), CAT, fleet)
    assert keys(cs) == ["l4.1 on-demand us-east-1a", "l4.4 on-demand us-east-1b"]


def test_candidate_key() -> None:
    c = Candidate("g6.xlarge", "l4:1", A, "spot", 0.3, 0.8)
    assert c.key == "g6.xlarge spot us-east-1a"
    assert c.spot


# -- allowed classes and why_none --------------------------------------------------------------

ONLY_CPU_L4 = Fleet((A,), allowed_classes=frozenset({"cpu", "l4"}))


@pytest.mark.parametrize(("r", "fleet", "message"), [
    (req("h100"), ONLY_CPU_L4, "h100 is not allowed on this PloyD (allowed: cpu, l4)"),
    (req(["h100", "a100"]), ONLY_CPU_L4,
     "h100 and a100 are not allowed on this PloyD (allowed: cpu, l4)"),
    (req("h100"), Fleet((A,), allowed_classes=frozenset()),
     "h100 is not allowed on this PloyD (allowed: none)"),
    (req("h100:16"), FLEET, "no h100 machine has 16 GPUs (at most 8)"),
    (req("cpu:64"), FLEET, "no cpu machine has 64 vCPUs (at most 4)"),
    (req("tpu"), FLEET,
     "tpu is not a hardware class here (known: cpu, l4, a10g, a100, h100)"),
    (req(["h100", "l4:16"]), ONLY_CPU_L4,
     "h100 is not allowed on this PloyD (allowed: cpu, l4); no l4 machine has 16 GPUs (at most 4)"),
    (req(resources=Resources(gpu=GpuRequest(memory_gb=40))), ONLY_CPU_L4,
     "1 GPU with at least 40 GB each: only a100 and h100 have that, which are not allowed on "
     "this PloyD (allowed: cpu, l4)"),
    (req(resources=Resources(gpu=GpuRequest(memory_gb=100))), FLEET,
     "no instance type has 1 GPU with at least 100 GB each"),
    (req(resources=Resources(cpu=4, memory_gb=64)), FLEET,
     "no instance type has at least 4 vCPUs, at least 64 GB memory"),
    (req("l4"), Fleet(()), "this PloyD has no placements (subnets) configured"),
    (req("h100:8"), Fleet((A, B), offerings=frozenset({("h100.1", "us-east-1a")})),
     "h100:8: h100.8 is not offered in us-east-1a and us-east-1b"),
    (req("h100", spot=S.ALWAYS), Fleet((A,), max_spot_fraction=0.3),
     "h100:1: spot: always, but every spot price is above this PloyD's limit "
     "(30% of the on-demand price)"),
])
def test_why_none(r: Requirements, fleet: Fleet, message: str) -> None:
    assert candidates(r, CAT, fleet) == []
    assert why_none(r, CAT, fleet) == message


def test_allowed_classes_drop_only_what_is_not_allowed() -> None:
    r = req(["h100", "l4"], spot=S.NEVER)
    assert [c.instance_type for c in candidates(r, CAT, ONLY_CPU_L4)] == ["l4.1", "l4.4"]
    assert why_none(r, CAT, ONLY_CPU_L4) == ""
    r2 = req(resources=GPU1, workload=W.INFERENCE, spot=S.NEVER)
    assert {c.instance_type for c in candidates(r2, CAT, ONLY_CPU_L4)} == {"l4.1", "l4.4"}


def test_why_none_sees_spot_prices() -> None:
    sp = prices([("l4.1", "us-east-1a", 0.79), ("l4.4", "us-east-1a", 3.9)])
    r = req("l4", spot=S.ALWAYS)
    fleet = Fleet((A,), max_spot_fraction=0.9)
    assert candidates(r, CAT, fleet, sp) == []
    assert why_none(r, CAT, fleet, sp).startswith("l4:1: spot: always, but every spot price")
    assert why_none(r, CAT, fleet) == ""  # without prices the estimate fits


# -- Requirements from a planned job and from a job row ------------------------------------------

def test_requirements_from_planned_and_row() -> None:
    text = """\
    version: 1
    jobs:
      bench:
        hardware: [h100, a100]
        workload: train
        spot: always
        steps: [{run: x}]
      eval:
        resources: {gpu: {count: 1, memory: 40GB}}
        workload: inference
        steps: [{run: x}]
    """
    jobs = {j.name: j for j in expand(load_config(textwrap.dedent(text)), Catalog.default())}
    bench = Requirements.from_planned(jobs["bench"])
    assert bench == Requirements((parse_spec("h100"), parse_spec("a100")), None, W.TRAIN,
                                 S.ALWAYS, timeout_s=1800)  # the default job timeout
    ev = Requirements.from_planned(jobs["eval"], after_interruption=True)
    assert ev.resources == Resources(gpu=GpuRequest(count=1, memory_gb=40))
    assert (ev.workload, ev.spot, ev.after_interruption) == (W.INFERENCE, S.AUTO, True)

    row = Requirements.from_row(StoredJobSpec.from_stored({"workload": "train", "spot": "always"}),
                                ["h100:1", "a100:1"],
                                list(jobs["bench"].candidates))
    assert row == bench
    # a job planned from resources: the row keeps only the candidate names
    row2 = Requirements.from_row(StoredJobSpec.from_stored({"workload": "inference"}), [],
                                 list(jobs["eval"].candidates))
    assert row2.instance_types == jobs["eval"].candidates
    cat = Catalog.default()
    from_row = candidates(row2, cat, FLEET)
    from_plan = candidates(Requirements.from_planned(jobs["eval"]), cat, FLEET)
    assert from_row == from_plan


def test_requirements_from_row_defaults_and_errors() -> None:
    r = Requirements.from_row(StoredJobSpec.from_stored({}), ["l4"])
    assert (r.workload, r.spot, r.hardware) == (W.TEST, S.AUTO, (parse_spec("l4:1"),))
    with pytest.raises(ValueError):
        Requirements.from_row(StoredJobSpec.from_stored({"workload": "nope"}), ["l4"])
    with pytest.raises(ValueError):
        Requirements.from_row(StoredJobSpec.from_stored({}), ["l4:x"])


def test_row_candidates_missing_from_catalog() -> None:
    r = Requirements.from_row(StoredJobSpec.from_stored({}), [], ["gone.1", "l4.1"])
    assert [c.instance_type for c in candidates(r, CAT, FLEET, None) if not c.spot] == ["l4.1"]
    gone = Requirements.from_row(StoredJobSpec.from_stored({}), [], ["gone.1"])
    assert why_none(gone, CAT, FLEET) == (
        "none of the job's instance types (gone.1) is in the catalog")


# -- the spot price cache ----------------------------------------------------------------------

def _rec(t: str, az: str, price: str, ts: Any, **extra: str) -> dict[str, Any]:
    return {"InstanceType": t, "AvailabilityZone": az, "SpotPrice": price, "Timestamp": ts,
            **extra}


def test_spot_prices_newest_record_wins_in_any_order() -> None:
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    sp = SpotPrices(clock=lambda: 0.0)
    sp.update([_rec("g6.xlarge", "a", "0.30", t0 + timedelta(hours=1)),
               _rec("g6.xlarge", "a", "0.10", t0),
               _rec("g6.xlarge", "b", "0.20", "2024-05-01T12:00:00Z")])
    assert sp.get("g6.xlarge", "a") == 0.30
    assert sp.get("g6.xlarge", "b") == 0.20
    v = sp.version
    assert sp.update([_rec("g6.xlarge", "a", "0.05", t0)]) == 0  # older: ignored
    assert sp.get("g6.xlarge", "a") == 0.30 and sp.version == v
    assert sp.update([_rec("g6.xlarge", "a", "0.25", t0 + timedelta(hours=2))]) == 1
    assert sp.get("g6.xlarge", "a") == 0.25 and sp.version > v
    assert sp.get("g6.xlarge", "c") is None


def test_spot_prices_skip_bad_and_other_products() -> None:
    sp = SpotPrices(clock=lambda: 0.0)
    n = sp.update([
        {"InstanceType": "x", "AvailabilityZone": "a"},
        _rec("x", "a", "abc", None),
        _rec("x", "a", "-1", None),
        _rec("x", "a", "0.5", None, ProductDescription="Windows"),
        _rec("x", "b", "0.4", None, ProductDescription="Linux/UNIX (Amazon VPC)"),
    ])
    assert n == 1
    assert sp.get("x", "a") is None and sp.get("x", "b") == 0.4


def test_spot_prices_ttl_with_injected_clock() -> None:
    now = [1000.0]
    sp = SpotPrices(ttl_s=300, clock=lambda: now[0])
    assert sp.stale("g6.xlarge", "a")
    assert sp.needs(["g6.xlarge", "g5.xlarge"], ["a", "b"]) == (("g6.xlarge", "g5.xlarge"),
                                                                ("a", "b"))
    sp.update([_rec("g6.xlarge", "a", "0.3", None)], checked=[("g5.xlarge", "a")])
    assert not sp.stale("g6.xlarge", "a") and not sp.stale("g5.xlarge", "a")
    assert sp.age("g6.xlarge", "a") == 0 and sp.age("g6.xlarge", "b") is None
    assert sp.needs(["g6.xlarge", "g5.xlarge"], ["a"]) == ((), ())
    assert sp.needs(["g6.xlarge", "g5.xlarge"], ["a", "b"]) == (("g6.xlarge", "g5.xlarge"),
                                                                ("b",))
    now[0] += 299
    assert not sp.stale("g6.xlarge", "a")
    now[0] += 1
    assert sp.stale("g6.xlarge", "a")
    assert sp.needs(["g6.xlarge"], ["a"]) == (("g6.xlarge",), ("a",))
    # a stale price is still the best guess until it is replaced
    assert sp.get("g6.xlarge", "a") == 0.3


# -- waiting message and backoff ----------------------------------------------------------------

def _cands(n: int) -> list[Candidate]:
    return [Candidate(f"p5.{i}xlarge", "h100:1", A, m, 1.0, 2.0)  # type: ignore[arg-type]
            for i in range(n) for m in ("spot", "on-demand")]


@pytest.mark.parametrize(("since", "now", "n", "expected"), [
    ("14:02", "14:05", 1, "waiting for capacity since 14:02 UTC (3 min): tried "
     "p5.0xlarge spot us-east-1a, p5.0xlarge on-demand us-east-1a"),
    ("14:02", "14:02:30", 0, "waiting for capacity since 14:02 UTC (<1 min): no machine tried yet"),
    ("12:00", "14:05", 0, "waiting for capacity since 12:00 UTC (2 h 5 min): no machine tried yet"),
    ("12:00", "13:00", 0, "waiting for capacity since 12:00 UTC (1 h): no machine tried yet"),
])
def test_waiting_message(since: str, now: str, n: int, expected: str) -> None:
    day = "2024-05-01T"
    msg = waiting_message(_cands(n), datetime.fromisoformat(day + since + "+00:00"),
                          datetime.fromisoformat(day + now + "+00:00"))
    assert msg == expected


def test_waiting_message_is_bounded_dedupes_and_dates() -> None:
    since = datetime(2024, 5, 1, 23, 50)  # naive: UTC
    now = datetime(2024, 5, 2, 0, 10, tzinfo=UTC)
    tried = _cands(100)
    msg = waiting_message(tried + tried, since, now, limit=200)
    assert msg.startswith("waiting for capacity since 2024-05-01 23:50 UTC (20 min): tried "
                          "p5.0xlarge spot us-east-1a, p5.0xlarge on-demand us-east-1a, ")
    assert len(msg) <= 200
    assert msg.endswith(" more")
    shown = msg.split(": tried ")[1].rsplit(" and ", 1)
    assert len(shown[0].split(", ")) + int(shown[1].split()[0]) == 200  # each once
    # not in UTC: converted
    cet = datetime(2024, 5, 1, 16, 2, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert "since 16:02 UTC" in waiting_message([], cet, datetime(2024, 5, 1, 16, 5, tzinfo=UTC))
    assert len(waiting_message(tried, since, now)) <= 400


def test_backoff_monotone_capped_and_deterministic() -> None:
    waits = [backoff(n) for n in range(0, 50)]
    assert waits[:8] == [0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0]
    assert waits == sorted(waits) and max(waits) == 120.0
    assert backoff(10**6) == 120.0 and backoff(-1) == 0.0
    assert backoff(3, jitter=1.0) == pytest.approx(16.0)
    assert backoff(3, jitter=0.5) == backoff(3, jitter=0.5)
    assert 4.0 <= backoff(1, jitter=7) <= 5.0  # out-of-range jitter is clamped


# -- the built-in catalog --------------------------------------------------------------------------

@pytest.mark.parametrize(("hw", "workload", "spot", "first"), [
    ("l4", W.TEST, S.AUTO, "g6.xlarge spot us-east-1a"),
    ("h100:8", W.TRAIN, S.NEVER, "p5.48xlarge on-demand us-east-1a"),
    ("h100", W.TRAIN, S.AUTO, "p5.4xlarge on-demand us-east-1a"),
    ("cpu:8", W.PREPROCESS, S.NEVER, "r7i.2xlarge on-demand us-east-1a"),
    ("cpu", W.BATCH, S.AUTO, "c7i.large spot us-east-1a"),
])
def test_default_catalog(hw: str, workload: Workload, spot: SpotPolicy, first: str) -> None:
    cs = candidates(req(hw, workload, spot), Catalog.default(), FLEET)
    assert cs[0].key == first


# -- the optimized path against a plain reference ----------------------------------------------

def _reference(r: Requirements, cat: Catalog, fleet: Fleet, sp: SpotPrices) -> list[str]:
    """The documented order, computed the slow, obvious way."""
    from app.core.scheduler.select import fitting

    use_od = r.spot is not S.ALWAYS
    use_spot = r.spot is S.ALWAYS or (
        r.spot is S.AUTO and not r.after_interruption and r.workload is not W.TRAIN)
    found = [(t, tier) for t, tier in fitting(r, cat) if fleet.allows(t.cls)]
    if r.hardware:
        asked: list[int | None] = [s.count for s in r.hardware]
    elif r.resources is not None:
        asked = [r.resources.gpu.count if r.resources.gpu else r.resources.cpu]
    else:
        asked = [min((t.count for t, _ in found), default=None)]
    rows = []
    for t, tier in found:
        if r.workload is W.INFERENCE:
            wl: tuple[float, ...] = (float(cat.hardware_class(t.cls).tier == "training"),)
        elif r.workload is W.PREPROCESS:
            wl = (float(t.cls != "cpu"), -t.memory_gb / t.vcpus)
        elif r.workload is W.TRAIN:
            n = asked[tier]
            wl = (float(t.count - n if n is not None and t.count >= n else 0),)
        else:
            wl = ()
        for i, p in enumerate(fleet.placements):
            if not fleet.offered(t.name, p.az):
                continue
            od = t.price_usd_hour
            if use_od:
                m = {W.TRAIN: 0, W.BATCH: 1}.get(r.workload, 0)
                rows.append(((tier, m, *wl, od, i, t.name, 0), f"{t.name} on-demand {p.az}"))
            if use_spot:
                known = sp.get(t.name, p.az)
                price = od * SPOT_ESTIMATE if known is None else known
                if price <= fleet.spot_cap(t.cls) * od:
                    m = {W.TRAIN: 1, W.BATCH: 0}.get(r.workload, 0)
                    rows.append(((tier, m, *wl, price, i, t.name, 1), f"{t.name} spot {p.az}"))
    return [k for _, k in sorted(rows)]


def test_matches_reference_on_random_requirements() -> None:
    import random

    rng = random.Random(3)
    cat = Catalog.default()
    azs = ["us-east-1a", "us-east-1b", "us-east-1c"]
    fleet = Fleet(tuple(Placement("us-east-1", az, f"s-{az}") for az in azs),
                  max_spot_fraction=0.6, class_max_spot_fraction=(("cpu", 1.0),),
                  offerings=frozenset((t.name, az) for t in cat.types() for az in azs
                                      if rng.random() < 0.8))
    sp = prices([(t.name, az, t.price_usd_hour * rng.uniform(0.1, 1.2))
                 for t in cat.types() for az in azs if rng.random() < 0.5])
    classes = list(cat.classes())
    nonempty = 0
    for _ in range(300):
        kind = rng.random()
        if kind < 0.6:
            hw = [f"{rng.choice(classes)}:{rng.choice([1, 2, 4, 8])}"
                  for _ in range(rng.randint(1, 3))]
            r = req(hw, rng.choice(list(W)), rng.choice(list(S)), rng.random() < 0.2)
        elif kind < 0.9:
            res = Resources(gpu=GpuRequest(count=rng.choice([1, 2, 8]),
                                           memory_gb=rng.choice([None, 24, 80])),
                            memory_gb=rng.choice([None, 64])) if rng.random() < 0.7 else (
                Resources(cpu=rng.choice([2, 8, 64])))
            r = req(resources=res, workload=rng.choice(list(W)), spot=rng.choice(list(S)))
        else:
            names = [t.name for t in rng.sample(list(cat.types()), 8)]
            r = Requirements((), None, rng.choice(list(W)), rng.choice(list(S)),
                             instance_types=tuple(names))
        got = keys(candidates(r, cat, fleet, sp))
        assert got == _reference(r, cat, fleet, sp), r
        nonempty += bool(got)
    assert nonempty > 150
