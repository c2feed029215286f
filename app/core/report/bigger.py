"""The next bigger machine to offer for a retry (``Retry on a10g:1``), from catalog data."""

from __future__ import annotations

from app.core.config.model import HardwareSpec
from app.core.hardware import Catalog, parse_spec

_TIER_RANK = {"general": 0, "inference": 1, "training": 2}


def gpu_ladder(catalog: Catalog) -> tuple[str, ...]:
    """GPU classes from small to big, derived from the catalog: inference-tier GPUs before
    training-tier ones, then by memory per GPU, then by the cheapest hourly price per GPU
    (a proxy for the generation: an H100 costs more than an A100 of the same memory).

    With the built-in catalog: t4, l4, a10g, l40s, a100, a100-80gb, h100, h200, b200.
    Classes without instance types are left out.
    """
    keyed: list[tuple[tuple[int, float, float, str], str]] = []
    for name in catalog.classes():
        hc = catalog.hardware_class(name)
        types = catalog.types_of(name)
        if hc.kind != "gpu" or not types:
            continue
        memory = max(t.accelerator_memory_gb for t in types)
        per_gpu = min(t.price_usd_hour / t.accelerators for t in types)
        keyed.append(((_TIER_RANK.get(hc.tier, 2), memory, per_gpu, name), name))
    return tuple(name for _, name in sorted(keyed))


def _counts(catalog: Catalog, cls: str) -> list[int]:
    return sorted({t.count for t in catalog.types_of(cls)})


def _fit(catalog: Catalog, cls: str, count: int) -> int | None:
    """``count`` when ``cls`` offers it exactly, else the smallest offered count above it."""
    for c in _counts(catalog, cls):
        if c >= count:
            return c
    return None


def bigger_hardware(spec: str, catalog: Catalog) -> str | None:
    """The next bigger hardware than ``spec`` (``CLASS[:COUNT]``), or None.

    * GPUs climb ``gpu_ladder``: the next class with the same count when it is offered,
      else its smallest offered count above; classes that cannot hold the count are skipped.
    * ``cpu:N`` -> ``cpu:2N``, capped at the largest machine.
    * other accelerators (trainium, inferentia): the next bigger count of the same class.
    * None for an unreadable spec, an unknown class, or when nothing is bigger.
    """
    try:
        asked = parse_spec(spec)
    except ValueError:
        return None
    if not catalog.has_class(asked.cls) or not catalog.types_of(asked.cls):
        return None
    kind = catalog.hardware_class(asked.cls).kind
    if kind == "cpu":
        most = catalog.max_count(asked.cls)
        target = min(asked.count * 2, most)
        return str(HardwareSpec(asked.cls, target)) if target > asked.count else None
    if kind == "gpu":
        ladder = gpu_ladder(catalog)
        if asked.cls not in ladder:
            return None
        for cls in ladder[ladder.index(asked.cls) + 1 :]:
            count = _fit(catalog, cls, asked.count)
            if count is not None:
                return str(HardwareSpec(cls, count))
        return None
    for c in _counts(catalog, asked.cls):
        if c > asked.count:
            return str(HardwareSpec(asked.cls, c))
    return None
