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
    from app.cli.runlocal import Palette
    from app.core.agentfit import MachineLike
    from app.core.config.model import PlannedJob
    from app.core.dag import Node
    from app.core.states import JobState


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.cli.paths import add_path_argument

    add_path_argument(parser, "run (a directory: the jobs run in it)")
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
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (on a terminal, unless NO_COLOR is set), always, never",
    )


def main(args: argparse.Namespace) -> int:
    from app.cli.paths import PathConflict, config_path
    from app.core.config.errors import ConfigInvalid
    from app.settings import SettingsError

    given = args.path if args.path is not None else args.file
    try:
        args.file = config_path(args)
    except PathConflict as conflict:
        print(f"ployd run: {conflict}", file=sys.stderr)
        return 2
    cwd = os.path.abspath(given) if given is not None and os.path.isdir(given) else os.getcwd()
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
    from app.cli.runlocal import Palette, colour_wanted

    palette = Palette(colour_wanted(args.color, sys.stdout, os.environ))
    return run(jobs, selected, cwd=cwd, parallel=parallel, palette=palette)


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
    """Writes a job's output line by line, each line prefixed with the job's name; keeps
    the last ``KEEP_LINES`` lines for the summary."""

    KEEP_LINES = 2000

    def __init__(self, name: str, width: int, out: TextIO, prefix: str | None = None) -> None:
        from collections import deque

        self.prefix = prefix if prefix is not None else f"{name:<{width}} | "
        self.out = out
        self.partial = ""
        self.lines: deque[str] = deque(maxlen=self.KEEP_LINES)

    async def write(self, data: str) -> None:
        text = self.partial + data
        lines = text.split("\n")
        self.partial = lines.pop()
        if lines:
            self.lines.extend(lines)
            self._emit("".join(f"{self.prefix}{line}\n" for line in lines))

    def say(self, line: str) -> None:
        """A line of PloyD's own (cache, artifacts), between the steps' output."""
        self.lines.append(line)
        self._emit(f"{self.prefix}{line}\n")

    def close(self) -> None:
        if self.partial:
            self.lines.append(self.partial)
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
    palette: Palette | None = None,
) -> int:
    """Run ``nodes`` (the selection of ``jobs`` to run) and print the summary; the exit
    code: 0 when the pipeline succeeded, 130 when interrupted, else 1."""
    import asyncio

    from app.core.states import PipelineState

    out = out or sys.stdout
    result, _ = asyncio.run(
        run_pipeline(
            jobs, nodes, cwd=cwd, parallel=parallel, out=out, environ=environ, palette=palette
        )
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
    palette: Palette | None = None,
) -> tuple[Any, dict[str, JobState]]:
    """Run the jobs in DAG order; (PipelineState, final job states)."""
    import asyncio
    import signal
    from pathlib import Path

    from app.agent.runner import StepSpec, run_steps
    from app.cli.runlocal import LocalCache, Palette, Trees, cache_root
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
    palette = palette or Palette()
    colour_of = {n: i for i, n in enumerate(order)}
    trees = Trees(Path(cwd))
    caches = LocalCache(cache_root(environ), Path(cwd))
    artifacts_dir = Path(cwd) / ".ployd" / "artifacts"
    outputs: dict[str, list[str]] = {}

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
        prefix = palette.job(f"{name:<{width}} |", colour_of[name]) + " "
        pre = _Prefixer(name, width, out, prefix=prefix)
        workdir = await asyncio.to_thread(trees.for_job, job.is_matrix_child)
        if workdir != Path(cwd):
            pre.say(f"a copy of the tree of its own: {workdir}")
        job_secrets = {k: v for k, v in secrets.items() if k in job.spec.secrets}
        launcher, mask = _launcher(job, str(workdir), [*env, *job_secrets], secrets, cancel)
        if launcher is None and (gpus := _gpus(job)):
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        cache = _local_cache(job.cache, pre.say)
        cached = None
        if cache is not None:
            cached = await asyncio.to_thread(caches.restore, cache, workdir, pre.say)
        try:
            result = await run_steps(
                steps,
                cwd=workdir,
                on_log=pre.write,
                env=env,
                base_env=environ,
                secrets=job_secrets,
                mask=mask,
                timeout_s=job.spec.timeout_s,
                cancel=cancel,
                launcher=launcher,
            )
            pre.close()
            if job.spec.artifacts is not None and result.result != "cancelled":
                await asyncio.to_thread(
                    _collect, job.spec.artifacts, workdir, artifacts_dir, name, pre.say
                )
            if cache is not None and cached is not None and result.succeeded and not cached[1]:
                await asyncio.to_thread(caches.save, cache, cached[0], workdir, pre.say)
            return result
        finally:
            if launcher is not None:
                await launcher.close()
            pre.close()
            outputs[name] = list(pre.lines)

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
        await asyncio.to_thread(trees.close)
    for name, st in states.items():
        if st is JobState.WAITING:  # needs a manual job nobody ran
            states[name] = JobState.SKIPPED
        elif st is JobState.QUEUED:  # interrupted before it started
            states[name] = JobState.CANCELLED
    result = pipeline_result(nodes, states)
    print_summary(
        order,
        states,
        results,
        result.value,
        time.monotonic() - t0,
        by_name,
        out,
        nodes=nodes,
        outputs=outputs,
        palette=palette,
    )
    return result, states


def _collect(spec: Any, workdir: Any, dest: Any, name: str, say: Callable[[str], None]) -> None:
    from app.cli.runlocal import collect_artifacts

    try:
        collect_artifacts(spec, workdir, dest, name, say)
    except OSError as e:
        say(f"artifacts: could not copy them: {e}")


def _local_cache(cache: Any, say: Callable[[str], None]) -> Any:
    """The job's cache without its ``~`` paths: those are this machine's own home, kept
    between runs as they are (restoring an older copy over them would lose work)."""
    if cache is None:
        return None
    import dataclasses

    home = [p for p in cache.paths if p == "~" or p.startswith("~/")]
    if home:
        say(f"cache: {', '.join(home)}: in your home directory, kept as it is between runs")
    rest = tuple(p for p in cache.paths if p not in home)
    return dataclasses.replace(cache, paths=rest) if rest else None


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
    *,
    nodes: Mapping[str, Node] | None = None,
    outputs: Mapping[str, Sequence[str]] | None = None,
    palette: Palette | None = None,
) -> None:
    """The table (job, result, duration, why), then each failed job's failing lines,
    then the pipeline's result."""
    from app.cli.runlocal import Palette, failing_lines, job_outcome, skip_reason

    palette = palette or Palette()
    rows = [("JOB", "RESULT", "DURATION", "")]
    for name in order:
        r = results.get(name)
        state = states[name].value
        note = ""
        if r is not None and r.failed_step is not None:
            note = job_outcome(r)
        elif r is not None and r.result == "timed_out":
            note = "the job's timeout"
        elif state == "manual":
            note = "manual: name it with --job"
        elif state in ("skipped", "cancelled") and nodes is not None and r is None:
            note = skip_reason(name, nodes, states)
        rows.append((name, state, f"{r.duration_s:.1f}s" if r else "-", note))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    print("", file=out)
    for i, row in enumerate(rows):
        result = f"{row[1]:<{w[1]}}"
        if i:
            result = palette.state(result, row[1])
        print(f"{row[0]:<{w[0]}}  {result}  {row[2]:>{w[2]}}  {row[3]}".rstrip(), file=out)
    for name in order:
        r = results.get(name)
        if r is None or r.succeeded or r.result == "cancelled" or outputs is None:
            continue
        lines = failing_lines(outputs.get(name, ()))
        if not lines:
            continue
        where = f" at {job_outcome(r)}" if r.failed_step is not None else ""
        head = f"{name}: {r.result}{where}"
        print(f"\n{palette.paint(head, 'bold')}", file=out)
        for line in lines:
            print(f"  {palette.paint(line, 'red') if line != '…' else line}", file=out)
    print(palette.state(f"pipeline {pipeline}", pipeline) + f" in {elapsed:.1f}s", file=out)
    out.flush()
