"""The hardware catalog: lookups, ordering for workloads, operator overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.config.model import GpuRequest, HardwareSpec, Resources, Workload
from app.core.hardware import (
    Catalog,
    CatalogError,
    InstanceType,
    keeps_machine_whole,
    order_for_workload,
    parse_spec,
)

CAT = Catalog.default()


def names(types: list[InstanceType]) -> list[str]:
    return [t.name for t in types]


def test_default_is_cached_and_lists_classes() -> None:
    assert Catalog.default() is CAT
    assert CAT.classes() == ("cpu", "t4", "l4", "a10g", "l40s", "a100", "a100-80gb", "h100",
                             "h200", "b200", "trainium", "inferentia")


@pytest.mark.parametrize(("spec", "first", "families"), [
    ("h100:1", "p5.4xlarge", {"p5"}),
    ("h100:8", "p5.48xlarge", {"p5"}),
    ("l4:1", "g6.xlarge", {"g6"}),
    ("l4:4", "g6.12xlarge", {"g6"}),
    ("l4:8", "g6.48xlarge", {"g6"}),
    ("a10g", "g5.xlarge", {"g5"}),
    ("l40s", "g6e.xlarge", {"g6e"}),
    ("a100", "p4d.24xlarge", {"p4d"}),
    ("a100-80gb:8", "p4de.24xlarge", {"p4de"}),
    ("h200:8", "p5en.48xlarge", {"p5en"}),
    ("b200:8", "p6-b200.48xlarge", {"p6-b200"}),
    ("t4", "g4dn.xlarge", {"g4dn"}),
    ("trainium:16", "trn1.32xlarge", {"trn1"}),
    ("inferentia", "inf2.xlarge", {"inf2"}),
    ("cpu", "c7i.large", {"c7i", "m7i", "r7i"}),
    ("cpu:8", "c7i.2xlarge", {"c7i", "m7i", "r7i"}),
])
def test_for_spec(spec: str, first: str, families: set[str]) -> None:
    s = parse_spec(spec)
    found = CAT.for_spec(s)
    assert found[0].name == first
    assert {t.family for t in found} == families
    assert all(t.count >= s.count for t in found)
    prices = [t.price_usd_hour for t in found]
    assert prices == sorted(prices)


def test_l4_family_counts() -> None:
    l4 = CAT.types_of("l4")
    assert {t.name for t in l4} >= {"g6.xlarge", "g6.12xlarge", "g6.48xlarge"}
    assert {t.accelerators for t in l4} == {1, 4, 8}
    assert all(t.accelerator_memory_gb == 24 for t in l4)


def test_instance_type_fields() -> None:
    t = CAT.get("p5.48xlarge")
    assert (t.cls, t.accelerators, t.accelerator_memory_gb, t.vcpus, t.memory_gb, t.family) == (
        "h100", 8, 80, 192, 2048, "p5")
    assert 30 < t.price_usd_hour < 120
    assert CAT.get("p4d.24xlarge").accelerator_memory_gb == 40
    with pytest.raises(KeyError):
        CAT.get("nope.large")


def test_parse_spec() -> None:
    assert parse_spec("cpu") == HardwareSpec("cpu", 2)
    assert parse_spec("l4") == HardwareSpec("l4", 1)
    assert parse_spec("h100:8") == HardwareSpec("h100", 8)
    for bad in ("H100", "h100:0", "h100:x", "", "cpu:-1"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_for_spec_unknown_or_too_many() -> None:
    assert CAT.for_spec(HardwareSpec("h100", 16)) == []
    assert CAT.for_spec(HardwareSpec("mi300x", 1)) == []
    assert CAT.max_count("h100") == 8 and CAT.max_count("cpu") == 192


def test_for_resources() -> None:
    big = CAT.for_resources(Resources(gpu=GpuRequest(count=1, memory_gb=40), memory_gb=64))
    assert big[0].name == "g6e.2xlarge"  # cheapest GPU with >= 40 GB and 64 GB RAM
    assert all(t.accelerator_memory_gb >= 40 and t.memory_gb >= 64 for t in big)
    cpu = CAT.for_resources(Resources(cpu=4, memory_gb=32))
    assert cpu[0].name == "m7i.2xlarge" or cpu[0].name == "r7i.xlarge"
    assert all(t.cls == "cpu" for t in cpu)
    typed = CAT.for_resources(Resources(gpu=GpuRequest(type="a100", count=2)))
    assert names(typed) == ["p4d.24xlarge"]
    assert CAT.for_resources(Resources(gpu=GpuRequest(count=1, memory_gb=500))) == []
    assert CAT.for_resources(Resources(disk_gb=100 * 1024)) == []
    anygpu = CAT.for_resources(Resources(gpu=GpuRequest()))
    assert anygpu[0].name == "g4dn.xlarge"
    assert not any(t.cls in ("trainium", "inferentia") for t in anygpu)


def test_order_for_workload() -> None:
    types = CAT.for_resources(Resources(gpu=GpuRequest(count=1, memory_gb=24)))
    inf = order_for_workload(types, Workload.INFERENCE)
    tiers = [CAT.hardware_class(t.cls).tier for t in inf]
    assert tiers == sorted(tiers, key=lambda x: x == "training")  # inference-class first
    assert inf[0].cls in ("l4", "a10g", "l40s", "t4")
    test = order_for_workload(types, Workload.TEST)
    assert [t.price_usd_hour for t in test] == sorted(t.price_usd_hour for t in test)

    cpus = CAT.for_spec(HardwareSpec("cpu", 8))
    pre = order_for_workload(cpus, Workload.PREPROCESS)
    assert pre[0].family == "r7i" and pre[0].vcpus == 8
    assert order_for_workload(cpus, "batch")[0].family == "c7i"

    h100 = CAT.for_spec(HardwareSpec("h100", 1))
    assert names(order_for_workload(h100, Workload.TRAIN, 1)) == ["p5.4xlarge", "p5.48xlarge"]
    l4 = CAT.for_spec(HardwareSpec("l4", 4))
    assert order_for_workload(l4, Workload.TRAIN, 4)[0].accelerators == 4
    assert keeps_machine_whole("train") and not keeps_machine_whole(Workload.TEST)


def test_operator_catalog_overrides_and_extends(tmp_path: Path) -> None:
    extra = tmp_path / "catalog.json"
    extra.write_text(json.dumps({
        "classes": {"mi300x": {"kind": "gpu", "tier": "training", "accelerator": "AMD MI300X"}},
        "instance_types": [
            {"name": "p5.48xlarge", "class": "h100", "accelerators": 8,
             "accelerator_memory_gb": 80, "vcpus": 192, "memory_gb": 2048,
             "price_usd_hour": 40.0, "family": "p5"},
            {"name": "mi300x.8x", "class": "mi300x", "accelerators": 8,
             "accelerator_memory_gb": 192, "vcpus": 128, "memory_gb": 2048,
             "price_usd_hour": 30.0},
        ],
        "remove": ["p5.4xlarge"],
    }))
    cat = Catalog.load(str(extra))
    assert cat.get("p5.48xlarge").price_usd_hour == 40.0
    assert "mi300x" in cat.classes() and cat.get("mi300x.8x").family == "mi300x"
    assert names(cat.for_spec(HardwareSpec("h100", 1))) == ["p5.48xlarge"]
    assert Catalog.default().get("p5.48xlarge").price_usd_hour != 40.0  # default untouched
    assert Catalog.load(None) is Catalog.default()


@pytest.mark.parametrize("content", [
    "not json",
    json.dumps({"instance_types": [{"name": "x", "class": "nope", "vcpus": 1, "memory_gb": 1,
                                    "price_usd_hour": 1}]}),
    json.dumps({"instance_types": [{"name": "x", "class": "cpu"}]}),
    json.dumps([]),
])
def test_bad_operator_catalog(tmp_path: Path, content: str) -> None:
    p = tmp_path / "c.json"
    p.write_text(content)
    with pytest.raises(CatalogError):
        Catalog.load(str(p))


def test_missing_operator_catalog(tmp_path: Path) -> None:
    with pytest.raises(CatalogError):
        Catalog.load(str(tmp_path / "missing.json"))
