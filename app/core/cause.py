"""The cause finder: of a failed step's log, the one line that says why it failed, and
for the failures ML jobs know too well a name and a way out.

Pure: lines in, a ``Cause`` out. The detectors run from the most specific to the most
general and the first that recognises something wins:

1. CUDA out of memory (PyTorch, JAX, TensorFlow): "retry on a bigger GPU";
2. NCCL timeouts and errors (a rank stalled, a collective hung);
3. a killed process (the kernel's OOM killer, SIGKILL: exit 137), a segfault (139);
4. pytest: the first ``E`` line of the failures, else the short summary's ``FAILED``;
5. a Python traceback: its exception line (the last traceback's; prefixes such as
   torchrun's ``[rank0]:`` are understood), not "Traceback (most recent call last):";
6. compiler errors: rustc's ``error[E0308]: ...``, gcc/clang/javac's
   ``file:line:col: error: ...``, not the "could not compile"/``make: ***`` summaries;
7. any other error-looking line (``ERROR``, ``Error:``, ``fatal:``, ``panic:`` ...),
   metrics such as ``val_error=0.12`` excepted;
8. the line where the last command exited non-zero (the agent's ``✗ Step (exit N``).

A log whose step passed (``exit_code == 0``) has no cause, whatever words it contains.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.core.hardware import Catalog

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
MAX_SUMMARY = 300


class CauseKind(StrEnum):
    CUDA_OOM = "cuda_oom"
    NCCL_TIMEOUT = "nccl_timeout"
    NCCL_ERROR = "nccl_error"
    OOM_KILL = "oom_kill"
    SEGFAULT = "segfault"
    PYTEST = "pytest"
    PYTHON = "python_exception"
    COMPILER = "compiler_error"
    ERROR = "error_line"
    EXIT = "exit_code"


TITLES = {
    CauseKind.CUDA_OOM: "CUDA out of memory",
    CauseKind.NCCL_TIMEOUT: "NCCL timeout",
    CauseKind.NCCL_ERROR: "NCCL error",
    CauseKind.OOM_KILL: "killed (out of memory)",
    CauseKind.SEGFAULT: "segmentation fault",
    CauseKind.PYTEST: "test failure",
    CauseKind.PYTHON: "Python exception",
    CauseKind.COMPILER: "compile error",
    CauseKind.ERROR: "error",
    CauseKind.EXIT: "non-zero exit",
}

ADVICE = {
    CauseKind.CUDA_OOM: (
        "the model did not fit in GPU memory: retry on a bigger GPU, or lower the batch "
        "size (gradient accumulation, activation checkpointing)"
    ),
    CauseKind.NCCL_TIMEOUT: (
        "a collective operation waited past its timeout: one rank stalled or died first; "
        "look for the first error of the other ranks, run with NCCL_DEBUG=INFO, or raise "
        "init_process_group(timeout=...)"
    ),
    CauseKind.NCCL_ERROR: (
        "NCCL failed between GPUs or machines: run with NCCL_DEBUG=INFO to see which link, "
        "and check that every rank sees the same GPUs"
    ),
    CauseKind.OOM_KILL: (
        "the process was killed with SIGKILL (exit 137), most likely by the kernel's OOM "
        "killer: the machine ran out of RAM; use fewer data loader workers or a machine "
        "with more memory"
    ),
    CauseKind.SEGFAULT: (
        "the process crashed (SIGSEGV, exit 139): often a native extension built for "
        "another CUDA or Python version"
    ),
}


@dataclass(frozen=True, slots=True)
class Cause:
    index: int  # 0-based, in the lines given
    kind: CauseKind
    text: str  # the line, without ANSI codes, at most MAX_SUMMARY characters

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    @property
    def advice(self) -> str:
        return ADVICE.get(self.kind, "")

    @property
    def wants_bigger_gpu(self) -> bool:
        return self.kind is CauseKind.CUDA_OOM


def plain(line: str) -> str:
    return ANSI.sub("", line).rstrip("\r")


# ---- detectors: each returns the 0-based index of its line, or None ------------------

CUDA_OOM = re.compile(
    r"CUDA out of memory|CUDA error: out of memory|OutOfMemoryError"
    r"|cudaErrorMemoryAllocation|RESOURCE_EXHAUSTED: Out of memory"
    r"|OOM when allocating tensor|CUBLAS_STATUS_ALLOC_FAILED"
)
NCCL_TIMEOUT = re.compile(
    r"Watchdog caught collective operation timeout|NCCL.{0,80}\btim(?:ed?[ _-]?out|eout)"
    r"|ProcessGroupNCCL.{0,80}\bTimeout\b",
    re.IGNORECASE,
)
NCCL_ERROR = re.compile(r"\bNCCL (?:error|WARN)|ncclInternalError|ncclSystemError|DistBackendError")
KILLED = re.compile(
    r"^(?:.*: line \d+: +\d+ )?Killed\b|Out of memory: Kill(?:ed)? process|\boom[-_ ]kill"
    r"|\bOOMKilled\b|exit(?:ed)? (?:with )?(?:code|status) 137\b|\(exit 137\b"
)
SEGV = re.compile(
    r"Segmentation fault|SIGSEGV|exit(?:ed)? (?:with )?(?:code|status) 139\b|\(exit 139\b"
)
PYTEST_MARK = re.compile(
    r"^=+ (?:FAILURES|ERRORS|short test summary info) =+$|^(?:FAILED|ERROR) \S+::\S"
)
PYTEST_E = re.compile(r"^E {2,}\S|^E +\w+(?:Error|Exception)\b")
PYTEST_SUMMARY = re.compile(r"^(?:FAILED|ERROR) \S+")
TRACEBACK = re.compile(r"^(?P<prefix>.*?)Traceback \(most recent call last\):\s*$")
EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:: .*|:)?$")
COMPILER = re.compile(
    r"^error(?:\[E\d{4}\])?: (?!could not compile|aborting due to)"
    r"|^\S+?:\d+(?::\d+)?: (?:fatal )?error:|\berror TS\d+:"
    r"|^\S+\(\d+(?:,\d+)?\): (?:fatal )?error [A-Z]+\d+:"
)
GENERIC = re.compile(
    r"\berror\b|\bERROR\b|Error:|\bFATAL\b|\bFAILED\b|\bFAIL\b|\bpanic:|\bfatal:"
    r"|\w(?:Error|Exception)\b|Traceback \(most recent call last\)"
)
METRIC = re.compile(
    r"\b(?:errors?|err)\b\s*[=:]\s*[-+]?(?:\d|\.\d)|\b0 errors?\b|\berror[ _-]rate\b"
    r"|\bno errors?\b",
    re.IGNORECASE,
)
EXIT = re.compile(
    r"^✗ .*\(exit (?P<a>\d+)\b|exit(?:ed)? (?:with )?(?:code|status) (?P<b>\d+)\b"
    r"|Process completed with exit code (?P<c>\d+)"
)


def _first(lines: Sequence[str], rx: re.Pattern[str]) -> int | None:
    return next((i for i, line in enumerate(lines) if rx.search(line)), None)


def _last(lines: Sequence[str], rx: re.Pattern[str]) -> int | None:
    return next((i for i in range(len(lines) - 1, -1, -1) if rx.search(lines[i])), None)


def _pytest(lines: Sequence[str]) -> int | None:
    if _first(lines, PYTEST_MARK) is None:
        return None
    found = _first(lines, PYTEST_E)
    return found if found is not None else _first(lines, PYTEST_SUMMARY)


def _python(lines: Sequence[str]) -> int | None:
    """The exception line of the last traceback: the first line after it that is not a
    frame (indented) and reads like ``Name: message`` or a bare ``Name``."""
    start = _last(lines, TRACEBACK)
    if start is None:
        return None
    m = TRACEBACK.match(lines[start])
    prefix = m.group("prefix") if m else ""
    for i in range(start + 1, min(start + 400, len(lines))):
        line = lines[i]
        if prefix and line.startswith(prefix):
            line = line[len(prefix) :]
        if not line.strip() or line[0] in " \t":
            continue
        if EXC_LINE.match(line):
            return i
    return None


def _compiler(lines: Sequence[str]) -> int | None:
    return _first(lines, COMPILER)


def _generic(lines: Sequence[str]) -> int | None:
    for i, line in enumerate(lines):
        if GENERIC.search(line) and not (METRIC.search(line) and not _strong(line)):
            return i
    return None


def _strong(line: str) -> bool:
    """An error line that also happens to contain a metric-like ``error: 3``."""
    return bool(re.search(r"\bERROR\b|\bFATAL\b|\bpanic:|\bfatal:|\w(?:Error|Exception):", line))


def _exit(lines: Sequence[str]) -> int | None:
    for i in range(len(lines) - 1, -1, -1):
        m = EXIT.search(lines[i])
        if m and int(m.group("a") or m.group("b") or m.group("c")) != 0:
            return i
    return None


DETECTORS: tuple[tuple[CauseKind, Callable[[Sequence[str]], int | None]], ...] = (
    (CauseKind.CUDA_OOM, lambda ls: _first(ls, CUDA_OOM)),
    (CauseKind.NCCL_TIMEOUT, lambda ls: _first(ls, NCCL_TIMEOUT)),
    (CauseKind.NCCL_ERROR, lambda ls: _first(ls, NCCL_ERROR)),
    (CauseKind.OOM_KILL, lambda ls: _first(ls, KILLED)),
    (CauseKind.SEGFAULT, lambda ls: _first(ls, SEGV)),
    (CauseKind.PYTEST, _pytest),
    (CauseKind.PYTHON, _python),
    (CauseKind.COMPILER, _compiler),
    (CauseKind.ERROR, _generic),
    (CauseKind.EXIT, _exit),
)


def find_cause(lines: Sequence[str], *, exit_code: int | None = None) -> Cause | None:
    """The line of ``lines`` that says why the step failed; None when it passed
    (``exit_code == 0``) or nothing in it looks like a cause."""
    if exit_code == 0:
        return None
    clean = [plain(line) for line in lines]
    for kind, detect in DETECTORS:
        i = detect(clean)
        if i is not None:
            return Cause(i, kind, clean[i].strip()[:MAX_SUMMARY])
    return None


# ---- the way out of a CUDA OOM ---------------------------------------------------------


def _memory_gb(catalog: Catalog, cls: str) -> float:
    return max((t.accelerator_memory_gb for t in catalog.types_of(cls)), default=0.0)


def bigger_gpu(catalog: Catalog, hardware: str) -> str | None:
    """The next GPU class up from ``hardware`` (``CLASS[:COUNT]``), at the same count: of
    the classes with more memory per GPU, those with a machine of exactly that many GPUs
    first (no 8-GPU box for a 1-GPU job when another will do), then the least memory,
    then the cheapest per GPU. None for a non-GPU class or the biggest one."""
    cls, _, raw = hardware.partition(":")
    count = int(raw) if raw.isdigit() else 1
    if not catalog.has_class(cls) or catalog.hardware_class(cls).kind != "gpu":
        return None
    have = _memory_gb(catalog, cls)
    best: tuple[bool, float, float, str] | None = None
    for other in catalog.classes():
        if other == cls or catalog.hardware_class(other).kind != "gpu":
            continue
        mem = _memory_gb(catalog, other)
        types = [t for t in catalog.types_of(other) if t.accelerators >= count]
        if mem <= have or not types:
            continue
        price = min(t.price_usd_hour / t.accelerators for t in types)
        key = (all(t.accelerators != count for t in types), mem, price, other)
        if best is None or key < best:
            best = key
    return f"{best[3]}:{count}" if best else None
