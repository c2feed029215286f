"""`ployd run`: run this working tree's `.ployd.yml` here, like CI would, without a server.

Jobs run in the order their needs allow, in parallel up to ``--jobs``; steps run in the
current directory with the same runner as the agent (bash -eo pipefail, timeouts, secret
masking). Output lines are prefixed with the job name; a summary table ends the run.
The exit code is 0 only when the pipeline succeeded. A job that asks for hardware this
machine lacks (detected as the agent does, ``app.agent.hardware``) runs all the same,
after a warning line: "ployd run: this machine has no h100; running anyway".

Module-level imports stay light: `ployd` imports every command module to build its parser.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from app.agent.runner import JobResult
    from app.core.agentfit import MachineLike
    from app.core.config.model import PlannedJob
    from app.core.dag import Node
    from app.core.states import JobState


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", "-f", default=".ployd.yml", help="config file (default: %(default)s)"
    )
    parser.add_argument(
        "--job",
        "-j",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this job and what it needs (repeatable; a matrix job's base name "
        "selects all its children; manual jobs run when named)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="run at most N jobs at once (default: the number of CPUs)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")


def main(args: argparse.Namespace) -> int:
    from app.core.config.errors import ConfigInvalid
    from app.settings import SettingsError

    try:
        jobs = load_jobs(args.file)
    except SettingsError as e:
        print(f"ployd run: {e}", file=sys.stderr)
        return 2
    except ConfigInvalid as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{args.file}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        selected = select(jobs, args.job)
    except KeyError as e:
        print(f"ployd run: {e.args[0]}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan(jobs, selected, args.file, sys.stdout)
        return 0
    parallel = args.jobs if args.jobs and args.jobs > 0 else (os.cpu_count() or 2)
    for line in hardware_warnings(jobs, selected, _this_machine):
        print(line, file=sys.stderr)
    return run(jobs, selected, cwd=os.getcwd(), parallel=parallel)


def load_jobs(path: str) -> tuple[PlannedJob, ...]:
    """Load, check and expand ``path`` under the server's PLOYD_MAX_JOBS_PER_PIPELINE;
    raises ConfigInvalid (SettingsError for a bad PLOYD_MAX_JOBS_PER_PIPELINE)."""
    from app.core.config.loader import load_config_file
    from app.core.expand import expand
    from app.core.hardware import Catalog
    from app.settings import max_jobs_per_pipeline

    catalog = Catalog.default()
    config = load_config_file(path, catalog, max_jobs=max_jobs_per_pipeline())
    return tuple(expand(config, catalog))


def _this_machine() -> MachineLike:
    from app.agent.hardware import detect

    return detect(os.getcwd())


def hardware_warnings(
    jobs: Sequence[PlannedJob],
    nodes: Mapping[str, Node],
    machine: Callable[[], MachineLike],
) -> list[str]:
    """A line for each thing the jobs about to run need and this machine lacks
    (``machine()`` detects it, only when a job asks for more than any machine has)."""
    from app.core.agentfit import Need, shortfall
    from app.core.config.model import When
    from app.protocol import Hardware

    needs: dict[str, Need] = {}
    for job in jobs:
        if job.name in nodes and nodes[job.name].when is not When.MANUAL:
            needs[job.name] = Need.of((str(h) for h in job.hardware), job.resources)
    anything = Hardware(cpus=1, memory_mb=0, disk_gb=0)
    if all(shortfall(anything, need) is None for need in needs.values()):
        return []
    have = machine()
    missing: dict[str, list[str]] = {}
    for name, need in needs.items():
        lack = shortfall(have, need)
        if lack is not None:
            missing.setdefault(lack, []).append(f"{name} asks for {need}")
    return [
        f"ployd run: this machine has {lack}; running anyway ({'; '.join(asks)})"
        for lack, asks in missing.items()
    ]


def _node(job: PlannedJob, *, promote: bool = False) -> Node:
    from app.core.config.model import When
    from app.core.dag import Node

    when = job.spec.when
    if promote and when is When.MANUAL:
        when = When.ON_SUCCESS
    return Node(name=job.name, needs=job.needs, when=when, allow_failure=job.spec.allow_failure)


def select(jobs: Sequence[PlannedJob], names: Sequence[str]) -> dict[str, Node]:
    """The nodes to run. Without ``names``: every job (manual ones stay manual and do not
    run). With ``names``: those jobs (a base name selects its matrix children) and what
    they need, transitively; all of these run, manual or not. Raises KeyError for a name
    that is no job."""
    from app.core.dag import with_needs

    if not names:
        return {j.name: _node(j) for j in jobs}
    wanted: list[str] = []
    for name in names:
        hits = [j.name for j in jobs if name in (j.name, j.base)]
        if not hits:
            known = ", ".join(dict.fromkeys(j.base for j in jobs))
            raise KeyError(f"no job {name!r} (jobs: {known})")
        wanted.extend(hits)
    all_nodes = {j.name: _node(j) for j in jobs}
    keep = set(with_needs(all_nodes, wanted))
    return {j.name: _node(j, promote=True) for j in jobs if j.name in keep}


def topo_order(nodes: Mapping[str, Node]) -> list[str]:
    """Names in an order where needs come first (file order among equals)."""
    done: list[str] = []
    placed: set[str] = set()
    pending = list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(d in placed or d not in nodes for d in nodes[n].needs):
                done.append(n)
                placed.add(n)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle: the loader should have refused it
            done.extend(rest)
            break
        pending = rest
    return done


def print_plan(
    jobs: Sequence[PlannedJob], nodes: Mapping[str, Node], file: str, out: TextIO
) -> None:
    from app.core.config.model import When

    order = topo_order(nodes)
    runs = [n for n in order if nodes[n].when is not When.MANUAL]
    by_name = {j.name: j for j in jobs}
    print(f"{file}: {len(runs)} job(s) would run, in this order:", file=out)
    width = max((len(n) for n in runs), default=0)
    for i, name in enumerate(runs, 1):
        needs = nodes[name].needs
        extra = f"  needs: {', '.join(needs)}" if needs else ""
        if nodes[name].when.value == "always":
            extra += "  (when: always)"
        steps = len(by_name[name].steps)
        print(f"  {i}. {name:<{width}}  {steps} step(s){extra}", file=out)
    manual = [n for n in order if nodes[n].when is When.MANUAL]
    for name in manual:
        print(f"  -  {name}  (manual: not run; name it with --job)", file=out)


class _Prefixer:
    """Writes a job's output line by line, each line prefixed with the job's name."""

    def __init__(self, name: str, width: int, out: TextIO) -> None:
        self.prefix = f"{name:<{width}} | "
        self.out = out
        self.partial = ""

    async def write(self, data: str) -> None:
        text = self.partial + data
        lines = text.split("\n")
        self.partial = lines.pop()
        if lines:
            self._emit("".join(f"{self.prefix}{line}\n" for line in lines))

    def close(self) -> None:
        if self.partial:
            self._emit(f"{self.prefix}{self.partial}\n")
            self.partial = ""

    def _emit(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:  # `ployd run | head`: keep running, stop printing
            pass


def run(
    jobs: Sequence[PlannedJob],
    nodes: Mapping[str, Node],
    *,
    cwd: str,
    parallel: int,
    out: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run ``nodes`` (the selection of ``jobs`` to run) and print the summary; the exit
    code: 0 when the pipeline succeeded, 130 when interrupted, else 1."""
    import asyncio

    from app.core.states import PipelineState

    out = out or sys.stdout
    result, _ = asyncio.run(
        run_pipeline(jobs, nodes, cwd=cwd, parallel=parallel, out=out, environ=environ)
    )
    if result is PipelineState.SUCCEEDED:
        return 0
    return 130 if result is PipelineState.CANCELLED else 1


async def run_pipeline(
    jobs: Sequence[PlannedJob],
    nodes: Mapping[str, Node],
    *,
    cwd: str,
    parallel: int,
    out: TextIO,
    environ: Mapping[str, str] | None = None,
) -> tuple[Any, dict[str, JobState]]:
    """Run the jobs in DAG order; (PipelineState, final job states)."""
    import asyncio
    import signal

    from app.agent.runner import StepSpec, run_steps
    from app.core.dag import initial_state, pipeline_result, settle
    from app.core.states import JobState

    environ = dict(os.environ if environ is None else environ)
    by_name = {j.name: j for j in jobs}
    secret_names = sorted({s for n in nodes for s in by_name[n].spec.secrets})
    # An image's registry credentials come from the environment too (never to a step).
    secret_names += sorted(
        {c for n in nodes if (c := _credentials_name(by_name[n])) and c not in secret_names}
    )
    secrets = {s: environ[s] for s in secret_names if s in environ}
    for s in secret_names:
        if s not in secrets:
            print(f"ployd run: secret {s} is not set in the environment", file=sys.stderr)
    width = min(max((len(n) for n in nodes), default=0), 40)
    cancel = asyncio.Event()
    states: dict[str, JobState] = {n: initial_state(node) for n, node in nodes.items()}
    states.update(settle(nodes, states))
    results: dict[str, JobResult] = {}
    order = topo_order(nodes)
    t0 = time.monotonic()

    async def run_job(name: str) -> JobResult:
        job = by_name[name]
        steps = [
            StepSpec(
                index=i,
                title=s.title,
                run=s.run,
                env=dict(s.env),
                timeout_s=s.timeout_s,
                continue_on_error=s.continue_on_error,
            )
            for i, s in enumerate(job.steps)
        ]
        env = {"CI": "true", "PLOYD": "true", "PLOYD_JOB": name, **job.env}
        pre = _Prefixer(name, width, out)
        job_secrets = {k: v for k, v in secrets.items() if k in job.spec.secrets}
        launcher, mask = _launcher(job, cwd, [*env, *job_secrets], secrets, cancel)
        if launcher is None and (gpus := _gpus(job)):
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        try:
            return await run_steps(
                steps,
                cwd=cwd,
                on_log=pre.write,
                env=env,
                base_env=environ,
                secrets=job_secrets,
                mask=mask,
                timeout_s=job.spec.timeout_s,
                cancel=cancel,
                launcher=launcher,
            )
        finally:
            if launcher is not None:
                await launcher.close()
            pre.close()

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, cancel.set)
        loop.add_signal_handler(signal.SIGTERM, cancel.set)
    except (NotImplementedError, RuntimeError):  # not the main thread
        pass
    running: dict[asyncio.Task[JobResult], str] = {}
    try:
        while True:
            if not cancel.is_set():
                for name in order:
                    if len(running) >= parallel:
                        break
                    if states[name] is JobState.QUEUED:
                        states[name] = JobState.RUNNING
                        running[asyncio.create_task(run_job(name))] = name
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = running.pop(task)
                results[name] = task.result()
                states[name] = JobState(results[name].result)
            states.update(settle(nodes, states))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for name, st in states.items():
        if st is JobState.WAITING:  # needs a manual job nobody ran
            states[name] = JobState.SKIPPED
        elif st is JobState.QUEUED:  # interrupted before it started
            states[name] = JobState.CANCELLED
    result = pipeline_result(nodes, states)
    print_summary(order, states, results, result.value, time.monotonic() - t0, by_name, out)
    return result, states


def _credentials_name(job: PlannedJob) -> str | None:
    image = job.image or job.spec.image
    return image.credentials if image is not None else None


def _need_gpus(job: PlannedJob) -> int:
    from app.core.agentfit import Need, gpus_for

    return gpus_for(None, Need.of((str(h) for h in job.hardware), job.resources))


def _gpus(job: PlannedJob) -> list[int]:
    """The GPUs of this machine a job that asks for some gets (the first N)."""
    count = _need_gpus(job)
    if count == 0:
        return []
    from app.agent.container import gpu_indices
    from app.agent.hardware import detect_gpus

    return gpu_indices(count, len(detect_gpus()), os.environ.get("CUDA_VISIBLE_DEVICES"))


_RUNTIME: list[Any] = []  # found once per `ployd run`


def _launcher(
    job: PlannedJob,
    cwd: str,
    forward: Sequence[str],
    secrets: Mapping[str, str],
    cancel: Any,
) -> tuple[Any, list[str]]:
    """A job with an image runs in a container of it (the agent's ``ContainerLauncher``);
    (launcher or None, values to mask)."""
    image = job.image or job.spec.image
    if image is None:
        return None, []
    from app.agent.container import ContainerLauncher, container_name, detect_runtime
    from app.protocol import ImagePayload, RegistryCredentials

    if not _RUNTIME:
        _RUNTIME.append(detect_runtime())
    o = image.options
    options = {
        k: v
        for k, v in (("user", o.user), ("entrypoint", o.entrypoint), ("shm_size", o.shm_size))
        if v is not None
    }
    value = secrets.get(image.credentials) if image.credentials else None
    creds = RegistryCredentials.from_secret(value) if value else None
    launcher = ContainerLauncher(
        _RUNTIME[0],
        ImagePayload(image.name, options, creds),
        name=container_name("run", os.getpid(), job.name),
        workspace=cwd,
        forward=forward,
        agent_id=f"ployd-run-{os.getpid()}",
        cache_paths=job.cache.paths if job.cache is not None else (),
        gpus=_gpus(job),
        cancel=cancel,
    )
    return launcher, [value, creds.password] if value and creds else []


def print_summary(
    order: Sequence[str],
    states: Mapping[str, JobState],
    results: Mapping[str, JobResult],
    pipeline: str,
    elapsed: float,
    jobs: Mapping[str, PlannedJob],
    out: TextIO,
) -> None:
    rows = [("JOB", "RESULT", "DURATION", "")]
    for name in order:
        r = results.get(name)
        note = ""
        if r is not None and r.failed_step is not None:
            step = r.steps[r.failed_step] if r.failed_step < len(r.steps) else None
            title = step.title if step else f"#{r.failed_step}"
            code = f", exit {r.exit_code}" if r.exit_code is not None else ""
            note = f"step {r.failed_step + 1} '{title}'{code}"
        elif states[name].value == "manual":
            note = "manual: name it with --job"
        rows.append((name, states[name].value, f"{r.duration_s:.1f}s" if r else "-", note))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    print("", file=out)
    for row in rows:
        print(f"{row[0]:<{w[0]}}  {row[1]:<{w[1]}}  {row[2]:>{w[2]}}  {row[3]}".rstrip(), file=out)
    print(f"pipeline {pipeline} in {elapsed:.1f}s", file=out)
    out.flush()
