"""What this machine has: CPUs, memory, disk and GPUs, as ``app.protocol.Hardware``.

The agent detects it once at start and sends it with every claim, so the server gives
it only the jobs it can run (an ``h100:8`` job only to a machine with eight H100s).
``ployd run`` uses the same detection to warn that a job asks for hardware this machine
lacks.

* CPUs: the ones this process may run on (``os.sched_getaffinity``, else
  ``os.cpu_count``), fewer when a cgroup v2 CPU quota (``cpu.max``, a container's
  ``--cpus``) allows less.
* Memory: ``MemTotal`` in ``/proc/meminfo``; elsewhere the physical pages
  (``os.sysconf``); 0 when neither is known. In MiB.
* Disk: the size of the file system holding the work directory
  (``shutil.disk_usage``), in GB of 10^9 bytes, rounded down.
* Containers: the runtime jobs' images can run in (podman or docker, answering; see
  ``app.agent.container.detect_runtime``), or none.
* GPUs: ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``, one
  line per GPU (``NVIDIA H100 80GB HBM3, 81559``: memory in MiB), each name mapped to
  the catalog's hardware class by ``gpu_class`` (``GPU_TOKENS``, the one table of it).
  No ``nvidia-smi``, one that fails, hangs past its timeout or prints nothing usable:
  no GPUs, said in the log.

Standard library only, Python 3.9 syntax: this module ships with the agent.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from app.protocol import MAX_GPUS, Gpu, Hardware

log = logging.getLogger("ployd.agent")

NVIDIA_SMI = "nvidia-smi"
NVIDIA_SMI_ARGS = ("--query-gpu=name,memory.total", "--format=csv,noheader,nounits")
NVIDIA_SMI_TIMEOUT_S = 10.0

# The catalog's GPU classes (app/data/catalog.json), by the word of the name nvidia-smi
# prints that says which GPU it is: "NVIDIA H100 80GB HBM3" -> H100 -> h100. A whole
# word must match, so an L40 is not an L40S, an A10 not an A10G, an H20 not an H200.
# The A100 comes in two classes, told apart by memory (``A100_80GB_MIN_MB``).
GPU_TOKENS: Mapping[str, str] = {
    "T4": "t4",
    "L4": "l4",
    "A10G": "a10g",
    "L40S": "l40s",
    "A100": "a100",
    "H100": "h100",
    "H200": "h200",
    "B200": "b200",
}
A100_80GB = "a100-80gb"
# An A100 with more than this much memory (MiB) is the 80 GB one (40960 vs 81920).
A100_80GB_MIN_MB = 60 * 1024
# Every class ``gpu_class`` can answer: tests check it covers the catalog's GPU classes.
GPU_CLASSES = frozenset((*GPU_TOKENS.values(), A100_80GB))

# Words that mean the device is a slice of a GPU, not a whole one (``MIG 1g.10gb``).
_SLICE_WORDS = frozenset({"MIG"})
_WORD_SPLIT = re.compile(r"[\s_\-/,()]+")
_LEADING = ("NVIDIA", "TESLA")


def gpu_class(name: str, memory_mb: int = 0) -> str:
    """The catalog class of a GPU named ``name`` by nvidia-smi with ``memory_mb`` MiB of
    memory (0: unknown); "" when it is none of the catalog's (or a MIG slice)."""
    words = [w for w in _WORD_SPLIT.split(name.strip().upper()) if w]
    if any(w in _SLICE_WORDS for w in words):
        return ""
    while words and words[0] in _LEADING:
        words.pop(0)
    for word in words:
        cls = GPU_TOKENS.get(word)
        if cls is None:
            continue
        if cls == "a100":
            big = memory_mb > A100_80GB_MIN_MB if memory_mb else "80GB" in words
            return A100_80GB if big else cls
        return cls
    return ""


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """The GPUs in nvidia-smi's ``name, memory.total`` CSV lines; a line that is not
    one (a warning, garbage) is skipped and logged. Memory ``[N/A]`` reads as 0."""
    gpus: list[Gpu] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        name, sep, memory = line.rpartition(",")
        name, memory = name.strip(), memory.strip()
        if not sep or not name:
            log.warning("nvidia-smi printed a line that is not a GPU: %r", line[:200])
            continue
        if memory.isdigit():
            memory_mb = int(memory)
        elif memory.startswith("[") or memory.upper() in ("N/A", ""):
            memory_mb = 0  # [N/A], [Not Supported]: some devices do not say
        else:
            log.warning("nvidia-smi printed a line that is not a GPU: %r", line[:200])
            continue
        if len(gpus) == MAX_GPUS:
            log.warning("more than %d GPUs: the rest are not reported", MAX_GPUS)
            break
        memory_mb = min(memory_mb, 2**31 - 1)
        gpus.append(Gpu(name=name[:200], model=gpu_class(name, memory_mb), memory_mb=memory_mb))
    return tuple(gpus)


def detect_gpus(
    *,
    nvidia_smi: str | None = None,
    timeout_s: float = NVIDIA_SMI_TIMEOUT_S,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> tuple[Gpu, ...]:
    """The GPUs ``nvidia-smi`` (on PATH unless given) lists; none when it is absent,
    fails or times out (each said in the log)."""
    exe = nvidia_smi or shutil.which(NVIDIA_SMI)
    if exe is None:
        log.info("no nvidia-smi on PATH: no GPUs")
        return ()
    try:
        proc = run(
            [exe, *NVIDIA_SMI_ARGS],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        log.warning("nvidia-smi did not answer within %.0fs: no GPUs", timeout_s)
        return ()
    except (OSError, ValueError) as e:  # not executable, gone since `which`, bad bytes
        log.warning("nvidia-smi could not run (%s): no GPUs", e)
        return ()
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout or "").strip().splitlines()
        log.warning(
            "nvidia-smi exited with %s (%s): no GPUs",
            proc.returncode,
            why[0][:200] if why else "no output",
        )
        return ()
    gpus = parse_nvidia_smi(proc.stdout or "")
    unknown = sorted({g.name for g in gpus if not g.model})
    if unknown:
        log.info("GPUs of no catalog class (not matched to jobs): %s", ", ".join(unknown))
    return gpus


def detect_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its affinity mask, bounded by a cgroup v2 quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(cpus, 1)


def detect_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Total memory in MiB: ``MemTotal`` (kB), else the physical pages; 0 when unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return min(int(line.split()[1]) // 1024, 2**31 - 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return min(pages * size // 2**20, 2**31 - 1)
    except (AttributeError, OSError, ValueError):
        pass
    return 0


def detect_disk_gb(path: Path) -> int:
    """The size of the file system holding ``path`` (or its nearest existing parent),
    in GB (10^9 bytes); 0 when unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return min(shutil.disk_usage(p).total // 10**9, 2**31 - 1)
    except OSError:
        return 0


def visible_gpus(gpus: tuple[Gpu, ...], assigned: str | None) -> tuple[Gpu, ...]:
    """The GPUs of ``gpus`` (nvidia-smi's, by index) this agent may use: those its
    ``CUDA_VISIBLE_DEVICES`` names when that is a list of indices (empty: none), as the
    local executor gives each of its agents a share of the machine's; all otherwise."""
    if assigned is None:
        return gpus
    parts = [p.strip() for p in assigned.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        return gpus  # UUIDs or MIG names: not ours to interpret
    return tuple(gpus[int(p)] for p in dict.fromkeys(parts) if int(p) < len(gpus))


def detect(
    work_dir: Path | str = ".", *, nvidia_smi: str | None = None, containers: str | None = None
) -> Hardware:
    """This machine's hardware (``work_dir``: where jobs' workspaces live), and the
    container runtime it can run images with (``containers``: already known; None:
    looked for, ``app.agent.container.detect_runtime``)."""
    if containers is None:
        from app.agent.container import detect_runtime

        runtime = detect_runtime()
        containers = runtime.name if runtime is not None else ""
    hw = Hardware(
        cpus=detect_cpus(),
        memory_mb=detect_memory_mb(),
        disk_gb=detect_disk_gb(Path(work_dir)),
        gpus=visible_gpus(
            detect_gpus(nvidia_smi=nvidia_smi), os.environ.get("CUDA_VISIBLE_DEVICES")
        ),
        containers=containers,
    )
    log.info("hardware: %s", describe(hw))
    return hw


def parse_expected(text: str) -> tuple[int, str]:
    """``COUNT:CLASS`` (``8:h100``: what ``--expect-gpus`` says) as (count, class);
    ValueError when it is not that."""
    count, sep, cls = text.strip().partition(":")
    if not sep or not count.isdigit() or not 1 <= int(count) <= MAX_GPUS or not cls:
        raise ValueError(f"--expect-gpus {text!r}: expected COUNT:CLASS, e.g. 8:h100")
    return int(count), cls


def gpu_problem(gpus: Sequence[Gpu], count: int, cls: str) -> str | None:
    """Why ``gpus`` (nvidia-smi's) are not ``count`` GPUs of class ``cls``, as a machine
    of a GPU instance type must have before it takes a job; None when they are."""
    if len(gpus) == count and all(g.model == cls for g in gpus):
        return None
    seen = ", ".join(
        f"{n} x {name}" + (f" ({model})" if model else "") for (name, model), n in _groups(gpus)
    )
    return (
        f"GPU check failed: nvidia-smi sees {seen or 'no GPU'}, but this instance type has "
        f"{count} x {cls}"
        + ("" if gpus else " (no nvidia-smi, no driver loaded, or it failed: see the agent's log)")
    )


def describe(hw: Hardware) -> str:
    """``8 x NVIDIA H100 80GB HBM3 (h100), 192 CPUs, 2015 GB memory, 3500 GB disk``."""
    parts = [
        f"{n} x {name}" + (f" ({model})" if model else "") for (name, model), n in _groups(hw.gpus)
    ]
    parts += [
        f"{hw.cpus} CPUs",
        f"{hw.memory_mb * 2**20 // 10**9} GB memory",
        f"{hw.disk_gb} GB disk",
        f"containers: {hw.containers or 'none'}",
    ]
    return ", ".join(parts)


def _groups(gpus: Sequence[Gpu]) -> list[tuple[tuple[str, str], int]]:
    counts: dict[tuple[str, str], int] = {}
    for g in gpus:
        counts[(g.name, g.model)] = counts.get((g.name, g.model), 0) + 1
    return list(counts.items())
