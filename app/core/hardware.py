"""The hardware catalog: hardware classes (``cpu``, ``l4``, ``h100``, ...) and the cloud
instance types that provide them, with prices.

The data lives in one file, ``app/data/catalog.json``; an operator extends or overrides it
with a file of the same shape (``Catalog.load(path)``; the caller reads
``PLOYD_CATALOG_FILE``, this module never reads the environment). Rows whose ``name``
already exists replace the built-in row; new rows and classes are added; an optional
``"remove": [names]`` list drops rows.

Count semantics: for ``cpu`` the count is vCPUs (default 2); for every other class it is
accelerators (GPUs or chips, default 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.config.model import HardwareSpec, Resources, Workload

CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "catalog.json"
DEFAULT_CPU_COUNT = 2
# EBS volumes go up to 64 TiB: disk is attached, it does not pick the instance type.
MAX_DISK_GB = 64 * 1024

_SPEC_RE = re.compile(r"^([a-z0-9][a-z0-9-]*)(?::([0-9]+))?$")
_KINDS = ("cpu", "gpu", "accelerator")
_TIERS = ("general", "inference", "training")


class CatalogError(ValueError):
    """A catalog file is unreadable or has a bad row."""


@dataclass(frozen=True, slots=True)
class HardwareClass:
    name: str
    kind: str  # "cpu" | "gpu" | "accelerator"
    tier: str  # "general" | "inference" | "training"
    accelerator: str | None = None  # e.g. "NVIDIA H100"
    description: str = ""


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One cloud instance type and what it provides."""

    name: str
    cls: str  # hardware class
    accelerators: int  # GPUs or chips; 0 for cpu
    accelerator_memory_gb: float  # per accelerator
    vcpus: int
    memory_gb: float
    price_usd_hour: float  # on-demand list price
    family: str

    @property
    def count(self) -> int:
        """The count this type provides in its class's unit (vCPUs for cpu)."""
        return self.vcpus if self.cls == "cpu" else self.accelerators

    def provides(self, spec: HardwareSpec) -> bool:
        return self.cls == spec.cls and self.count >= spec.count


def parse_spec(text: str) -> HardwareSpec:
    """``CLASS[:COUNT]`` -> ``HardwareSpec`` (syntax only; the class is not looked up).
    Raises ``ValueError`` with a human message."""
    m = _SPEC_RE.match(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} is not a hardware spec; write CLASS or CLASS:COUNT, e.g. 'l4' or 'h100:8'"
        )
    cls = m.group(1)
    if m.group(2) is None:
        count = DEFAULT_CPU_COUNT if cls == "cpu" else 1
    else:
        count = int(m.group(2))
        if count < 1:
            raise ValueError(f"{text!r}: the count must be at least 1")
    return HardwareSpec(cls, count)


def _row(data: Any, where: str) -> InstanceType:
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: an instance type must be an object")
    try:
        t = InstanceType(
            name=str(data["name"]),
            cls=str(data["class"]),
            accelerators=int(data.get("accelerators", 0)),
            accelerator_memory_gb=float(data.get("accelerator_memory_gb", 0)),
            vcpus=int(data["vcpus"]),
            memory_gb=float(data["memory_gb"]),
            price_usd_hour=float(data["price_usd_hour"]),
            family=str(data.get("family") or str(data["name"]).split(".")[0]),
        )
    except KeyError as exc:
        raise CatalogError(f"{where}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: {exc}") from None
    if t.vcpus < 1 or t.memory_gb <= 0 or t.price_usd_hour < 0 or t.accelerators < 0:
        raise CatalogError(
            f"{where}: {t.name}: vcpus, memory_gb and price_usd_hour must be positive"
        )
    if t.cls != "cpu" and t.accelerators < 1:
        raise CatalogError(f"{where}: {t.name}: a {t.cls} instance type needs accelerators >= 1")
    return t


def _class(name: str, data: Any, where: str) -> HardwareClass:
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: class {name!r} must be an object")
    kind = str(data.get("kind", "gpu"))
    tier = str(data.get("tier", "training"))
    if kind not in _KINDS:
        raise CatalogError(f"{where}: class {name!r}: kind must be one of {', '.join(_KINDS)}")
    if tier not in _TIERS:
        raise CatalogError(f"{where}: class {name!r}: tier must be one of {', '.join(_TIERS)}")
    if not _SPEC_RE.match(name) or ":" in name:
        raise CatalogError(f"{where}: bad class name {name!r} (lowercase letters, digits, '-')")
    acc = data.get("accelerator")
    desc = str(data.get("description", ""))
    return HardwareClass(name, kind, tier, str(acc) if acc else None, desc)


class Catalog:
    """Hardware classes and instance types; immutable once built."""

    def __init__(self, classes: Mapping[str, HardwareClass], types: Iterable[InstanceType]) -> None:
        self._classes: dict[str, HardwareClass] = dict(classes)
        by_name: dict[str, InstanceType] = {}
        for t in types:
            by_name[t.name] = t
        for t in by_name.values():
            if t.cls not in self._classes:
                raise CatalogError(f"instance type {t.name!r} has unknown class {t.cls!r}")
        self._types = by_name
        self._by_class: dict[str, list[InstanceType]] = {c: [] for c in self._classes}
        for t in sorted(by_name.values(), key=lambda t: (t.price_usd_hour, t.name)):
            self._by_class[t.cls].append(t)
        self._max_count = {
            c: max((t.count for t in ts), default=0) for c, ts in self._by_class.items()
        }

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_data(cls, data: Any, where: str = "catalog", base: Catalog | None = None) -> Catalog:
        """Build from parsed JSON, on top of ``base`` (its rows and classes) when given."""
        if not isinstance(data, dict):
            raise CatalogError(f"{where}: the catalog must be a JSON object")
        classes: dict[str, HardwareClass] = dict(base._classes) if base else {}
        raw_classes = data.get("classes", {})
        if not isinstance(raw_classes, dict):
            raise CatalogError(f"{where}: 'classes' must be an object")
        for name, c in raw_classes.items():
            classes[name] = _class(name, c, where)
        types: dict[str, InstanceType] = dict(base._types) if base else {}
        rows = data.get("instance_types", [])
        if not isinstance(rows, list):
            raise CatalogError(f"{where}: 'instance_types' must be a list")
        for i, r in enumerate(rows):
            t = _row(r, f"{where}: instance_types[{i}]")
            types[t.name] = t
        removed = data.get("remove", [])
        if not isinstance(removed, list):
            raise CatalogError(f"{where}: 'remove' must be a list of instance type names")
        for name in removed:
            types.pop(str(name), None)
        return cls(classes, types.values())

    @classmethod
    def default(cls) -> Catalog:
        """The built-in catalog (read once per process)."""
        return _default_catalog()

    @classmethod
    def load(cls, extra_path: str | None = None) -> Catalog:
        """The built-in catalog, extended/overridden by the JSON file at ``extra_path``."""
        base = cls.default()
        if not extra_path:
            return base
        try:
            data = json.loads(Path(extra_path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogError(f"{extra_path}: cannot read catalog file: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            where = f"{extra_path}:{exc.lineno}:{exc.colno}"
            raise CatalogError(f"{where}: not JSON: {exc.msg}") from None
        return cls.from_data(data, where=extra_path, base=base)

    # -- queries ------------------------------------------------------------------------

    def classes(self) -> tuple[str, ...]:
        """Known hardware class names, in catalog order."""
        return tuple(self._classes)

    def hardware_class(self, name: str) -> HardwareClass:
        return self._classes[name]

    def has_class(self, name: str) -> bool:
        return name in self._classes

    def get(self, name: str) -> InstanceType:
        """The instance type called ``name``; ``KeyError`` when unknown."""
        return self._types[name]

    def types(self) -> tuple[InstanceType, ...]:
        """Every instance type, cheapest first."""
        return tuple(sorted(self._types.values(), key=lambda t: (t.price_usd_hour, t.name)))

    def types_of(self, cls: str) -> tuple[InstanceType, ...]:
        """The instance types of class ``cls``, cheapest first."""
        return tuple(self._by_class.get(cls, ()))

    def max_count(self, cls: str) -> int:
        """The largest count one instance type of ``cls`` provides (0 when none)."""
        return self._max_count.get(cls, 0)

    def for_spec(self, spec: HardwareSpec) -> list[InstanceType]:
        """Every type that provides at least ``spec.count`` of ``spec.cls``, cheapest first."""
        return [t for t in self._by_class.get(spec.cls, ()) if t.count >= spec.count]

    def for_resources(self, r: Resources) -> list[InstanceType]:
        """Every type that satisfies ``r``, cheapest first (empty when none does)."""
        if r.disk_gb is not None and r.disk_gb > MAX_DISK_GB:
            return []
        out: list[InstanceType] = []
        for t in self.types():
            hc = self._classes[t.cls]
            if r.gpu is not None:
                if r.gpu.type is not None:
                    if t.cls != r.gpu.type:
                        continue
                elif hc.kind != "gpu":
                    continue
                if t.accelerators < r.gpu.count:
                    continue
                if r.gpu.memory_gb is not None and t.accelerator_memory_gb < r.gpu.memory_gb:
                    continue
            elif hc.kind != "cpu":
                continue
            if r.cpu is not None and t.vcpus < r.cpu:
                continue
            if r.memory_gb is not None and t.memory_gb < r.memory_gb:
                continue
            out.append(t)
        return out

    def order(
        self, types: Sequence[InstanceType], workload: Workload | str, requested: int | None = None
    ) -> list[InstanceType]:
        return order_for_workload(types, workload, requested, catalog=self)


def _tier(t: InstanceType, catalog: Catalog | None) -> str:
    cat = catalog or Catalog.default()
    if cat.has_class(t.cls):
        return cat.hardware_class(t.cls).tier
    return "training"


def order_for_workload(
    types: Sequence[InstanceType],
    workload: Workload | str,
    requested: int | None = None,
    catalog: Catalog | None = None,
) -> list[InstanceType]:
    """``types`` ordered best first for ``workload``.

    * ``test`` / ``batch``: cheapest first.
    * ``inference``: latency-oriented accelerators (classes of tier ``inference``: l4, a10g,
      inferentia, t4, l40s) before training-class ones, each cheapest first.
    * ``preprocess``: CPU types with the most memory per vCPU first (r7i, then m7i, then c7i),
      each cheapest first; accelerated types after them.
    * ``train``: the machine is kept whole: types whose accelerator count matches
      ``requested`` exactly first (no idle accelerators), then the fewest extra, each
      cheapest first.
    """
    w = Workload(workload)
    price = [(t.price_usd_hour, t.name) for t in types]
    idx = {id(t): i for i, t in enumerate(types)}

    def p(t: InstanceType) -> tuple[float, str]:
        return price[idx[id(t)]]

    if w is Workload.INFERENCE:
        return sorted(types, key=lambda t: (0 if _tier(t, catalog) != "training" else 1, p(t)))
    if w is Workload.PREPROCESS:
        return sorted(
            types,
            key=lambda t: (0 if t.cls == "cpu" else 1, -(t.memory_gb / t.vcpus), p(t)),
        )
    if w is Workload.TRAIN:

        def extra(t: InstanceType) -> int:
            return t.count - requested if requested is not None and t.count >= requested else 0

        return sorted(types, key=lambda t: (extra(t), p(t)))
    return sorted(types, key=p)


def keeps_machine_whole(workload: Workload | str) -> bool:
    """Training jobs get the whole machine: it is never shared with another job."""
    return Workload(workload) is Workload.TRAIN


@lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    data = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    return Catalog.from_data(data, where=str(CATALOG_PATH))
