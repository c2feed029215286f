"""Which agent may run which job, by the hardware the agent reported (pure).

An agent detects its machine at start (``app.agent.hardware``: CPUs, memory, disk, and
GPUs mapped to the catalog's classes) and sends it with each claim. ``satisfies`` says
whether that machine can run a job: the job's ``hardware`` specs (any one of them, in
the user's preference order) or its ``resources``.

* ``h100:8``: at least eight GPUs of class ``h100``. Classes are exact, as for EC2
  instance types: an A100 40 GB is not an ``a100-80gb``, nor an 80 GB one an ``a100``;
  a GPU of no catalog class (``model`` empty) serves no class.
* ``cpu:N``: at least N CPUs; ``cpu`` and ``cpu:2`` (the default every job without
  hardware has) run on any machine, a one-CPU one too.
* ``resources``: ``gpu`` (count, class or any GPU, memory per GPU), ``cpu``, ``memory``
  and ``disk``, each at least what is asked. Sizes are counted as vendors print them
  (1 GB = 10^9 bytes) against the MiB a machine reports, so that the few percent a
  kernel or driver keeps back does not make a "24GB" L4 or a "64GB" machine fall short.
* A job without GPU needs runs on any machine, GPU or not.
* A job with an ``image`` runs only where the agent reported a container runtime
  (``containers``: podman or docker); an agent that reported nothing cannot.
* Otherwise an agent that reported nothing (``None``: an older agent) runs anything.

``describe_machine`` and ``waiting_message`` say what is connected when no agent fits:
"waiting: no agent with h100:8 is connected (connected: lab-1 a100:8, local-1 cpu:2)",
or, for an image job that only lacks a container runtime, "waiting: no agent can run
containers (connected: local-1 cpu:2)". ``gpus_for`` says how many GPUs a job gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.core.config.model import GpuRequest, HardwareSpec, Resources
from app.core.config.semantic import describe_resources
from app.core.hardware import DEFAULT_CPU_COUNT, parse_spec

# Every "no connected agent can run it" reason starts so (the engine replaces only these).
WAITING_PREFIX = "waiting: no agent "
NO_CONTAINERS = "waiting: no agent can run containers"
MAX_LISTED = 10  # connected agents named in a waiting message


class GpuLike(Protocol):
    """One GPU as an agent reports it (``app.protocol.Gpu``)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def memory_mb(self) -> int: ...


class MachineLike(Protocol):
    """A machine as an agent reports it (``app.protocol.Hardware``)."""

    @property
    def cpus(self) -> int: ...
    @property
    def memory_mb(self) -> int: ...
    @property
    def disk_gb(self) -> int: ...
    @property
    def gpus(self) -> Sequence[GpuLike]: ...
    @property
    def containers(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Need:
    """What a job asks of a machine: one of ``hardware`` (preference order), or
    ``resources``; neither: anything. ``containers``: it has an ``image``."""

    hardware: tuple[HardwareSpec, ...] = ()
    resources: Resources | None = None
    containers: bool = False

    @classmethod
    def of(
        cls,
        hardware: Iterable[str],
        resources: Resources | None = None,
        *,
        containers: bool = False,
    ) -> Need:
        """From a job's stored specs (``["h100:8"]``); a spec that does not parse is
        left out (the config loader refused those long before)."""
        specs: list[HardwareSpec] = []
        for text in hardware:
            try:
                specs.append(parse_spec(str(text)))
            except ValueError:
                continue
        return cls(tuple(specs), resources, containers)

    def __str__(self) -> str:
        if self.hardware:
            return " or ".join(str(s) for s in self.hardware)
        if self.resources is not None:
            return describe_resources(self.resources)
        return "anything"


def runs_containers(have: MachineLike | None) -> bool:
    """Whether the agent reported a container runtime."""
    return have is not None and bool(have.containers)


def satisfies(have: MachineLike | None, need: Need) -> bool:
    """Whether a machine that reported ``have`` can run a job needing ``need``."""
    if need.containers and not runs_containers(have):
        return False
    return fits_hardware(have, need)


def fits_hardware(have: MachineLike | None, need: Need) -> bool:
    """Whether ``have`` has the hardware ``need`` asks for (containers aside)."""
    if have is None:
        return True
    if need.hardware and not any(_provides(have, spec) for spec in need.hardware):
        return False
    return need.resources is None or _has_resources(have, need.resources)


def _provides(have: MachineLike, spec: HardwareSpec) -> bool:
    if spec.cls == "cpu":
        return spec.count <= DEFAULT_CPU_COUNT or have.cpus >= spec.count
    return sum(1 for g in have.gpus if g.model == spec.cls) >= spec.count


def _bytes_mb(mb: int) -> int:
    return mb * 2**20


def _bytes_gb(gb: float) -> float:
    return gb * 10**9


def _fitting_gpus(have: MachineLike, want: GpuRequest) -> int:
    """How many of ``have``'s GPUs are of the class asked (any GPU, a GPU of no catalog
    class too, when none is named) with the memory asked."""
    return sum(
        1
        for g in have.gpus
        if (want.type is None or g.model == want.type)
        and (want.memory_gb is None or _bytes_mb(g.memory_mb) >= _bytes_gb(want.memory_gb))
    )


def _has_resources(have: MachineLike, r: Resources) -> bool:
    if r.gpu is not None and _fitting_gpus(have, r.gpu) < r.gpu.count:
        return False
    if r.cpu is not None and have.cpus < r.cpu:
        return False
    if r.memory_gb is not None and _bytes_mb(have.memory_mb) < _bytes_gb(r.memory_gb):
        return False
    return r.disk_gb is None or have.disk_gb >= r.disk_gb


def describe_machine(have: MachineLike | None) -> str:
    """``a100:8``, ``l4:1+t4:1``, ``cpu:16`` (no GPU), ``gpu:1 (NVIDIA RTX A6000)`` (a
    GPU of no catalog class)."""
    if have is None:
        return "(hardware not reported)"
    counts: dict[tuple[str, str], int] = {}
    for g in have.gpus:
        key = (g.model, "" if g.model else g.name)
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return f"cpu:{have.cpus}"
    return "+".join(
        f"{model}:{n}" if model else f"gpu:{n} ({name})" for (model, name), n in counts.items()
    )


def waiting_message(need: Need, connected: Sequence[tuple[str, MachineLike | None]]) -> str:
    """Why a job waits when no connected agent (``(agent_id, hardware)``) can run it:
    the hardware none has, or else (an image job) that none runs containers."""
    listed = [f"{agent} {describe_machine(hw)}" for agent, hw in sorted(connected, key=_first)]
    if len(listed) > MAX_LISTED:
        listed = [*listed[:MAX_LISTED], f"and {len(listed) - MAX_LISTED} more"]
    where = f"(connected: {', '.join(listed) or 'none'})"
    hardware_fits = any(fits_hardware(hw, need) for _, hw in connected)
    if need.containers and (hardware_fits or not (need.hardware or need.resources)):
        return f"{NO_CONTAINERS} {where}"
    return f"waiting: no agent with {need} is connected {where}"


def gpus_for(have: MachineLike | None, need: Need) -> int:
    """How many GPUs a job needing ``need`` gets on ``have``: the count of the first
    hardware spec that machine provides (the preferred one when it reported nothing;
    ``cpu:N``: none), or ``resources.gpu.count``."""
    if need.hardware:
        spec = next(
            (s for s in need.hardware if have is not None and _provides(have, s)),
            need.hardware[0],
        )
        return 0 if spec.cls == "cpu" else spec.count
    if need.resources is not None and need.resources.gpu is not None:
        return need.resources.gpu.count
    return 0


def _first(item: tuple[str, object]) -> str:
    return item[0]


def shortfall(have: MachineLike, need: Need) -> str | None:
    """What ``have`` lacks for ``need``, as "this machine has ..." ends (``no h100``,
    ``only 2 h100, not 8``, ``only 4 CPUs, not 8``); None when it satisfies it. With
    several hardware specs, the first (preferred) one is named."""
    if satisfies(have, need):
        return None
    if need.hardware and not any(_provides(have, spec) for spec in need.hardware):
        spec = need.hardware[0]
        if spec.cls == "cpu":
            return f"only {have.cpus} CPUs, not {spec.count}"
        n = sum(1 for g in have.gpus if g.model == spec.cls)
        return f"no {spec.cls}" if n == 0 else f"only {n} {spec.cls}, not {spec.count}"
    r = need.resources
    assert r is not None  # satisfies() said no, and the hardware specs are met
    if r.gpu is not None:
        what = r.gpu.type or "GPU"
        if r.gpu.memory_gb is not None:
            what += f" with {r.gpu.memory_gb:g}GB"
        fit = _fitting_gpus(have, r.gpu)
        if fit < r.gpu.count:
            return f"no {what}" if fit == 0 else f"only {fit} {what}, not {r.gpu.count}"
    if r.cpu is not None and have.cpus < r.cpu:
        return f"only {have.cpus} CPUs, not {r.cpu}"
    if r.memory_gb is not None and _bytes_mb(have.memory_mb) < _bytes_gb(r.memory_gb):
        return f"only {_bytes_mb(have.memory_mb) / 10**9:.0f}GB memory, not {r.memory_gb:g}GB"
    return f"only {have.disk_gb}GB disk, not {r.disk_gb or 0:g}GB"
