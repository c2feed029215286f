"""The planner's first half: a ``Config`` -> concrete ``PlannedJob``s.

* matrix expansion with GitHub Actions semantics: the cartesian product of the axes (in
  the user's order), minus every ``exclude`` entry that matches, then each ``include``
  entry extends every combination whose original axis values it matches (values it adds
  may be overwritten by later entries, original values never are), or is added as a new
  combination when it matches none;
* a ``hardware`` axis sets the child's hardware;
* ``${{ matrix.KEY }}`` is expanded in job env, step env, step names, step scripts, the
  cache key and the image;
* ``needs`` on a matrix job means all of its children;
* each job's hardware is resolved to catalog instance types, best first for its workload.

Output order: file order, children in matrix order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache

from app.core.config.model import (
    Config,
    HardwareSpec,
    JobSpec,
    Matrix,
    PlannedJob,
    Resources,
    Step,
    Workload,
    frozen_map,
)
from app.core.hardware import Catalog, InstanceType, order_for_workload, parse_spec

MATRIX_EXPR_RE = re.compile(r"\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}")
MAX_MATRIX_CHILDREN = 256


def matrix_keys(matrix: Matrix) -> tuple[str, ...]:
    """Every key a child of ``matrix`` may have: the axes, then keys only ``include`` adds."""
    keys = list(matrix.axes)
    for entry in matrix.include:
        for k in entry:
            if k not in keys:
                keys.append(k)
    return tuple(keys)


def matrix_size(matrix: Matrix) -> int:
    """An upper bound on the number of children (before ``exclude``)."""
    n = 1
    for values in matrix.axes.values():
        n *= len(values)
    return (n if matrix.axes else 0) + len(matrix.include)


def matrix_combinations(matrix: Matrix) -> list[dict[str, str]]:
    """The combinations of ``matrix``, in order (GitHub Actions semantics)."""
    axes = list(matrix.axes)
    combos: list[dict[str, str]] = []
    if axes:
        for values in itertools.product(*(matrix.axes[a] for a in axes)):
            combo = dict(zip(axes, values, strict=True))
            if any(all(combo.get(k) == v for k, v in ex.items()) for ex in matrix.exclude):
                continue
            combos.append(combo)
    original = set(axes)
    base_count = len(combos)
    for entry in matrix.include:
        matched = False
        for combo in combos[:base_count]:
            if all(combo.get(k) == v for k, v in entry.items() if k in original):
                combo.update({k: v for k, v in entry.items() if k not in original})
                matched = True
        if not matched:
            combos.append(dict(entry))
    return combos


def child_name(base: str, combo: Mapping[str, str]) -> str:
    """``job (k=v, k2=v2)``."""
    return f"{base} ({', '.join(f'{k}={v}' for k, v in combo.items())})"


def expand_matrix_refs(text: str, values: Mapping[str, str]) -> str:
    """``${{ matrix.K }}`` -> the value of K (unknown keys are left as written)."""
    if "${{" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        return m.group(0) if v is None else v

    return MATRIX_EXPR_RE.sub(sub, text)


def _expand_env(env: Mapping[str, str], values: Mapping[str, str]) -> Mapping[str, str]:
    return frozen_map({k: expand_matrix_refs(v, values) for k, v in env.items()})


def _expand_step(step: Step, values: Mapping[str, str]) -> Step:
    if not values:
        return step
    return replace(
        step,
        run=expand_matrix_refs(step.run, values),
        name=expand_matrix_refs(step.name, values) if step.name is not None else None,
        env=_expand_env(step.env, values),
    )


def candidates_for(
    catalog: Catalog,
    workload: Workload,
    hardware: Sequence[HardwareSpec],
    resources: Resources | None,
) -> list[InstanceType]:
    """Instance types for a job: per spec in the user's preference order (each ordered for
    the workload), or from ``resources`` (ordered for the workload); no duplicates."""
    out: list[InstanceType] = []
    seen: set[str] = set()
    if hardware:
        for spec in hardware:
            for t in order_for_workload(catalog.for_spec(spec), workload, spec.count, catalog):
                if t.name not in seen:
                    seen.add(t.name)
                    out.append(t)
    elif resources is not None:
        requested = resources.gpu.count if resources.gpu is not None else None
        out = order_for_workload(catalog.for_resources(resources), workload, requested, catalog)
    return out


@lru_cache(maxsize=1024)
def _spec(text: str) -> HardwareSpec:
    return parse_spec(text)


def _children(job: JobSpec) -> list[dict[str, str]]:
    if job.matrix is None:
        return [{}]
    return matrix_combinations(job.matrix)


def expand(config: Config, catalog: Catalog) -> tuple[PlannedJob, ...]:
    """Every concrete job of ``config``: file order, children in matrix order."""
    children: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for name, job in config.jobs.items():
        combos = _children(job)
        if job.matrix is None:
            children[name] = [(name, {})]
        else:
            children[name] = [(child_name(name, c), c) for c in combos]

    planned: list[PlannedJob] = []
    memo: dict[tuple[object, ...], tuple[str, ...]] = {}
    for name, job in config.jobs.items():
        needs: list[str] = []
        for n in job.needs:
            needs.extend(child for child, _ in children.get(n, [(n, {})]))
        needs_t = tuple(needs)
        keys = matrix_keys(job.matrix) if job.matrix is not None else ()
        for child, combo in children[name]:
            values = {k: combo.get(k, "") for k in keys}
            if "hardware" in combo:
                hardware: tuple[HardwareSpec, ...] = (_spec(combo["hardware"]),)
                resources = None
            else:
                hardware, resources = job.hardware, job.resources
            key = (job.workload, hardware, resources)
            cands = memo.get(key)
            if cands is None:
                cands = tuple(
                    t.name for t in candidates_for(catalog, job.workload, hardware, resources)
                )
                memo[key] = cands
            cache = job.cache
            if cache is not None and values:
                cache = replace(cache, key=expand_matrix_refs(cache.key, values))
            planned.append(
                PlannedJob(
                    name=child,
                    base=name,
                    matrix=frozen_map(combo),
                    needs=needs_t,
                    steps=tuple(_expand_step(s, values) for s in job.steps),
                    env=_expand_env(job.env, values) if values else job.env,
                    hardware=hardware,
                    candidates=cands,
                    spec=job,
                    cache=cache,
                    image=(
                        replace(job.image, name=expand_matrix_refs(job.image.name, values))
                        if job.image is not None and values
                        else job.image
                    ),
                    resources=resources,
                )
            )
    return tuple(planned)
