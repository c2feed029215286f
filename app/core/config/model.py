"""The typed, immutable model of a `.ployd.yml` file.

Two levels:

* ``Config`` / ``JobSpec``: the file as written (defaults applied, values parsed,
  matrix not yet expanded). Produced by ``app.core.config.loader.load_config``.
* ``PlannedJob``: one concrete job after matrix expansion, with its hardware resolved
  to catalog candidates. Produced by ``app.core.expand.expand``.

Every node keeps the ``Mark`` (file, line, column) it came from, so later checks and
reports can point at the user's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


def frozen_map(d: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """An immutable string map."""
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a node stands in the user's file; line and column are 1-based."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NO_MARK = Mark("<none>", 0, 0)


class Workload(StrEnum):
    PREPROCESS = "preprocess"
    TRAIN = "train"
    INFERENCE = "inference"
    BATCH = "batch"
    TEST = "test"


class SpotPolicy(StrEnum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class When(StrEnum):
    ON_SUCCESS = "on_success"
    MANUAL = "manual"
    ALWAYS = "always"


class RetryReason(StrEnum):
    """Why an attempt ended in a way that a retry policy may cover."""

    SPOT_INTERRUPTION = "spot_interruption"
    NO_CAPACITY = "no_capacity"
    INFRASTRUCTURE = "infrastructure"
    TIMEOUT = "timeout"
    SCRIPT_FAILURE = "script_failure"
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """``CLASS[:COUNT]``; for ``cpu`` the count is vCPUs, otherwise accelerators."""

    cls: str
    count: int

    def __str__(self) -> str:
        return f"{self.cls}:{self.count}"


@dataclass(frozen=True, slots=True)
class GpuRequest:
    type: str | None = None  # a hardware class name, e.g. "a100"; None = any GPU
    count: int = 1
    memory_gb: float | None = None  # per GPU


@dataclass(frozen=True, slots=True)
class Resources:
    gpu: GpuRequest | None = None
    cpu: int | None = None  # vCPUs
    memory_gb: float | None = None
    disk_gb: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max: int = 2
    when: frozenset[RetryReason] = frozenset(
        {RetryReason.SPOT_INTERRUPTION, RetryReason.INFRASTRUCTURE}
    )
    exit_codes: tuple[int, ...] = ()
    # How long an attempt may wait for a machine before it ends for no capacity (and is
    # retried when ``when`` has no_capacity); None: the job's timeout.
    capacity_wait_s: int | None = None

    def allows(
        self, reason: RetryReason, attempt_number: int, exit_code: int | None = None
    ) -> bool:
        """May attempt number ``attempt_number`` (1-based), which ended for ``reason``,
        be followed by another?"""
        if attempt_number > self.max:
            return False
        if RetryReason.ALWAYS in self.when:
            return True
        if (
            reason is RetryReason.SCRIPT_FAILURE
            and exit_code is not None
            and exit_code in self.exit_codes
        ):
            return True
        return reason in self.when


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Step:
    run: str
    name: str | None = None
    env: Mapping[str, str] = field(default_factory=frozen_map)
    timeout_s: int | None = None
    continue_on_error: bool = False
    mark: Mark = NO_MARK

    @property
    def title(self) -> str:
        """What a person sees for this step: its name, or the first line of its script."""
        if self.name:
            return self.name
        lines = self.run.strip().splitlines()
        return lines[0] if lines else ""


@dataclass(frozen=True, slots=True)
class Cache:
    key: str
    paths: tuple[str, ...]
    restore_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Artifacts:
    paths: tuple[str, ...]
    expire_in_s: int | None = None


@dataclass(frozen=True, slots=True)
class Matrix:
    axes: Mapping[str, tuple[str, ...]]  # values are strings, in the user's order
    include: tuple[Mapping[str, str], ...] = ()
    exclude: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PushTrigger:
    branches: tuple[str, ...] | None = None  # None = not filtered on that key
    branches_ignore: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    paths_ignore: tuple[str, ...] | None = None


DEFAULT_PR_TYPES: tuple[str, ...] = ("opened", "synchronize", "reopened")


@dataclass(frozen=True, slots=True)
class PullRequestTrigger:
    branches: tuple[str, ...] | None = None  # target branches
    paths: tuple[str, ...] | None = None
    paths_ignore: tuple[str, ...] | None = None
    types: tuple[str, ...] = DEFAULT_PR_TYPES
    drafts: bool = True  # False: a draft runs nothing until ready for review


@dataclass(frozen=True, slots=True)
class Triggers:
    """``on:``. ``implicit`` is True when ``on`` is missing: push to the default branch
    and every pull request."""

    push: PushTrigger | None = None
    pull_request: PullRequestTrigger | None = None
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """How the job's container is started (``image.options``): the user it runs as
    (``1000``, ``1000:1000``, ``ci``), its entrypoint (``""``: none), and the size of its
    ``/dev/shm`` (``2g``, as docker's ``--shm-size``). None: the image's / runtime's own."""

    user: str | None = None
    entrypoint: str | None = None
    shm_size: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """``image:``: the container image the steps run in; ``credentials`` names the
    secret holding ``username:password`` (or a token) for its registry."""

    name: str
    credentials: str | None = None
    options: ImageOptions = ImageOptions()


@dataclass(frozen=True, slots=True)
class MetricsSpec:
    """``metrics:``: the job's metrics file and what to do with its values: ``keys``
    (names or globs; None: all), ``higher_is_better`` (per metric; a metric not named
    has no direction) and ``fail_if`` (gates, per metric, as written: ``"< -0.5%"``)."""

    file: str
    keys: tuple[str, ...] | None = None
    higher_is_better: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    fail_if: Mapping[str, str] = field(default_factory=frozen_map)


NOTIFY_EVENTS = ("failure", "fixed", "success", "started", "budget")
DEFAULT_NOTIFY_ON: frozenset[str] = frozenset({"failure", "fixed"})


@dataclass(frozen=True, slots=True)
class NotifyChannel:
    """One ``notify:`` entry. ``kind``: slack (``target`` names the secret holding the
    incoming-webhook URL), webhook (``target`` is the URL, ``secret`` names the secret
    holding the HMAC key) or email (``target``: the addresses, comma-separated).
    ``branches`` None: every branch."""

    kind: str
    target: str
    secret: str | None = None
    on: frozenset[str] = DEFAULT_NOTIFY_ON
    branches: tuple[str, ...] | None = None


DEFAULT_TIMEOUT_S = 30 * 60
MAX_TIMEOUT_S = 72 * 3600


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as written (defaults applied, matrix not expanded)."""

    name: str
    steps: tuple[Step, ...]
    hardware: tuple[HardwareSpec, ...] = ()  # preference order; empty when `resources` is used
    resources: Resources | None = None
    workload: Workload = Workload.TEST
    spot: SpotPolicy = SpotPolicy.AUTO
    needs: tuple[str, ...] = ()
    paths: tuple[str, ...] | None = None
    paths_ignore: tuple[str, ...] | None = None
    when: When = When.ON_SUCCESS
    matrix: Matrix | None = None
    env: Mapping[str, str] = field(default_factory=frozen_map)
    secrets: tuple[str, ...] = ()
    timeout_s: int = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = DEFAULT_RETRY
    cache: Cache | None = None
    artifacts: Artifacts | None = None
    allow_failure: bool = False
    image: Image | None = None
    clean_machine: bool = False  # a fresh machine, never a warm one; retired after
    metrics: MetricsSpec | None = None
    report: tuple[str, ...] = ()  # globs of files shown with the results (kept as artifacts)
    # The file's ``notify:`` (the same for every job; stored with each, so a pipeline's
    # channels are read from its jobs).
    notify: tuple[NotifyChannel, ...] = ()
    mark: Mark = NO_MARK


@dataclass(frozen=True, slots=True)
class Config:
    version: int
    triggers: Triggers
    jobs: Mapping[str, JobSpec]  # in file order
    file: str = ".ployd.yml"
    notify: tuple[NotifyChannel, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One concrete job after matrix expansion.

    ``name`` is the child name (``unit`` or ``gpu-tests (python=3.11, hardware=l4)``);
    ``base`` is the job key in the file; ``needs`` holds concrete child names (needing a
    matrix job means needing every child of it). ``env`` and the steps' ``env`` have
    ``${{ matrix.K }}`` expanded. ``hardware`` is the preference-ordered list of specs
    (from ``hardware`` or the matrix ``hardware`` axis); ``candidates`` are the catalog
    instance type names that fit, best first for the job's workload class.
    """

    name: str
    base: str
    matrix: Mapping[str, str]
    needs: tuple[str, ...]
    steps: tuple[Step, ...]
    env: Mapping[str, str]
    hardware: tuple[HardwareSpec, ...]
    candidates: tuple[str, ...]
    spec: JobSpec
    # Added with the loader: the job's cache and image with ``${{ matrix.K }}`` expanded, and
    # the resources the candidates were chosen for (None when ``hardware`` is used).
    cache: Cache | None = None
    image: Image | None = None
    resources: Resources | None = None

    @property
    def is_matrix_child(self) -> bool:
        return self.name != self.base
