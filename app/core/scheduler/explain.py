"""Why a job has no launch candidate, in words a person can act on."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.config.model import Resources
from app.core.hardware import MAX_DISK_GB, Catalog, InstanceType
from app.core.scheduler.model import Fleet, Requirements
from app.core.scheduler.prices import SpotPrices
from app.core.scheduler.select import SPOT_ESTIMATE, candidates, fitting, markets

_UNITS = {"cpu": "vCPUs", "gpu": "GPUs", "accelerator": "chips"}
_MAX_NAMES = 5


def _names(items: Sequence[str], most: int = _MAX_NAMES) -> str:
    if len(items) > most:
        return f"{', '.join(items[:most])} and {len(items) - most} more"
    if len(items) > 1:
        return f"{', '.join(items[:-1])} and {items[-1]}"
    return items[0] if items else ""


def _allowed(catalog: Catalog, fleet: Fleet) -> str:
    allowed = [c for c in catalog.classes() if fleet.allows(c)]
    return ", ".join(allowed) or "none"


def describe_resources(r: Resources) -> str:
    """``resources`` in words: ``1 GPU with at least 40 GB, at least 64 GB memory``."""
    parts: list[str] = []
    if r.gpu is not None:
        what = r.gpu.type or "GPU"
        text = f"{r.gpu.count} {what}" + ("s" if r.gpu.count > 1 and not r.gpu.type else "")
        if r.gpu.memory_gb is not None:
            text += f" with at least {r.gpu.memory_gb:g} GB each"
        parts.append(text)
    if r.cpu is not None:
        parts.append(f"at least {r.cpu} vCPUs")
    if r.memory_gb is not None:
        parts.append(f"at least {r.memory_gb:g} GB memory")
    if r.disk_gb is not None and r.disk_gb > MAX_DISK_GB:
        parts.append(f"{r.disk_gb:g} GB disk (at most {MAX_DISK_GB} GB)")
    return ", ".join(parts) or "no particular resources"


def _market_problem(
    label: str,
    types: Sequence[InstanceType],
    req: Requirements,
    fleet: Fleet,
    prices: SpotPrices | None,
) -> str:
    """Spot only (``spot: always``) and every spot price above the cap."""
    use_od, use_spot = markets(req, fleet)
    if use_od or not use_spot:
        return ""
    for t in types:
        cap = fleet.spot_cap(t.cls)
        for p in fleet.placements:
            if not fleet.offered(t.name, p.az):
                continue
            price = prices.get(t.name, p.az) if prices is not None else None
            if (SPOT_ESTIMATE if price is None else price / t.price_usd_hour) <= cap:
                return ""
    caps = sorted({fleet.spot_cap(t.cls) for t in types})
    limit = " / ".join(f"{c:.0%}" for c in caps)
    return (
        f"{label}: spot: always, but every spot price is above this PloyD's limit "
        f"({limit} of the on-demand price)"
    )


def _group_problem(
    label: str,
    types: Sequence[InstanceType],
    req: Requirements,
    fleet: Fleet,
    prices: SpotPrices | None,
) -> str:
    """Why the allowed ``types`` of one group give no candidate (``""``: they do)."""
    offered = [t for t in types if any(fleet.offered(t.name, p.az) for p in fleet.placements)]
    if not offered:
        azs = _names([p.az for p in fleet.placements])
        verb = "is" if len(types) == 1 else "are"
        return f"{label}: {_names([t.name for t in types])} {verb} not offered in {azs}"
    return _market_problem(label, offered, req, fleet, prices)


def why_none(
    req: Requirements, catalog: Catalog, fleet: Fleet, spot_prices: SpotPrices | None = None
) -> str:
    """Why ``candidates(req, ...)`` is empty, e.g. ``h100 is not allowed on this PloyD
    (allowed: cpu, l4)``; ``""`` when it is not empty."""
    if candidates(req, catalog, fleet, spot_prices):
        return ""
    if not fleet.placements:
        return "this PloyD has no placements (subnets) configured"
    problems: list[str] = []
    disallowed: list[str] = []

    def group(label: str, types: Sequence[InstanceType]) -> None:
        allowed = [t for t in types if fleet.allows(t.cls)]
        if not allowed:
            for c in dict.fromkeys(t.cls for t in types):
                if c not in disallowed:
                    disallowed.append(c)
            return
        problem = _group_problem(label, allowed, req, fleet, spot_prices)
        if problem:
            problems.append(problem)

    if req.hardware:
        for spec in req.hardware:
            if not catalog.has_class(spec.cls):
                known = ", ".join(catalog.classes())
                problems.append(f"{spec.cls} is not a hardware class here (known: {known})")
                continue
            types = catalog.for_spec(spec)
            if not types:
                unit = _UNITS.get(catalog.hardware_class(spec.cls).kind, "units")
                problems.append(
                    f"no {spec.cls} machine has {spec.count} {unit} "
                    f"(at most {catalog.max_count(spec.cls)})"
                )
                continue
            group(str(spec), types)
    elif req.resources is not None:
        what = describe_resources(req.resources)
        types = [t for t, _ in fitting(req, catalog)]
        if not types:
            problems.append(f"no instance type has {what}")
        elif not any(fleet.allows(t.cls) for t in types):
            classes = list(dict.fromkeys(t.cls for t in types))
            which = "which is" if len(classes) == 1 else "which are"
            problems.append(
                f"{what}: only {_names(classes, 12)} {'has' if len(classes) == 1 else 'have'} "
                f"that, {which} not allowed on this PloyD (allowed: {_allowed(catalog, fleet)})"
            )
        else:
            group(what, types)
    elif req.instance_types:
        types = [t for t, _ in fitting(req, catalog)]
        if not types:
            problems.append(
                f"none of the job's instance types ({_names(list(req.instance_types))}) "
                "is in the catalog"
            )
        else:
            group(_names([t.name for t in types]), types)
    else:
        problems.append("the job asks for no hardware")
    if disallowed:
        verb = "is" if len(disallowed) == 1 else "are"
        problems.insert(
            0,
            f"{_names(disallowed, 12)} {verb} not allowed on this PloyD "
            f"(allowed: {_allowed(catalog, fleet)})",
        )
    return "; ".join(problems) or "no instance type fits"
