"""From checked YAML data to the typed model, with the checks a schema cannot make.

Runs even when the schema found problems (so every error is reported at once): each
reader tolerates values of the wrong shape (the schema has already said so) and only
reports what is its own to say: unknown ``needs`` and cycles, unknown hardware, counts no
machine has, durations over the limit, resources nothing satisfies, matrix problems,
unknown ``${{ matrix.K }}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from app.core.config.errors import ConfigError
from app.core.config.model import (
    DEFAULT_RETRY,
    MAX_TIMEOUT_S,
    Artifacts,
    Cache,
    Config,
    GpuRequest,
    HardwareSpec,
    Image,
    ImageOptions,
    JobSpec,
    Matrix,
    MetricsSpec,
    NotifyChannel,
    PullRequestTrigger,
    PushTrigger,
    Resources,
    RetryPolicy,
    RetryReason,
    SpotPolicy,
    Step,
    Triggers,
    When,
    Workload,
    frozen_map,
)
from app.core.config.schema import did_you_mean, subject
from app.core.config.yamlload import Document
from app.core.config.yamlload import Path as NodePath
from app.core.durations import parse_duration, parse_size_gb
from app.core.expand import (
    MATRIX_EXPR_RE,
    MAX_MATRIX_CHILDREN,
    child_name,
    matrix_combinations,
    matrix_keys,
    matrix_size,
)
from app.core.hardware import Catalog, parse_spec
from app.core.results.compare import parse_gate

DEFAULT_HARDWARE = (HardwareSpec("cpu", 2),)
_duration = lru_cache(maxsize=512)(parse_duration)
_spec = lru_cache(maxsize=512)(parse_spec)
_RETRY_REASONS = {r.value for r in RetryReason}


class Builder:
    def __init__(self, doc: Document, catalog: Catalog, max_jobs: int | None = None) -> None:
        self.doc = doc
        self.catalog = catalog
        self.max_jobs = max_jobs  # PLOYD_MAX_JOBS_PER_PIPELINE (None: no limit)
        self.errors: list[ConfigError] = []
        self._children: dict[str, int] = {}  # a matrix job's number of children
        self._expressions: dict[str, list[tuple[NodePath, str]]] = {}
        for p, value in doc.expressions:
            if len(p) > 2 and p[0] == "jobs" and p[2] in ("env", "steps", "cache", "image"):
                self._expressions.setdefault(str(p[1]), []).append((p, value))

    # -- helpers ------------------------------------------------------------------------

    def error(self, path: NodePath, message: str, key: bool = False) -> None:
        m = self.doc.key_mark(path) if key else self.doc.mark(path)
        self.errors.append(ConfigError(self.doc.file, m.line, m.column, message))

    def strings(self, value: Any, path: NodePath) -> tuple[str, ...] | None:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            return None
        return tuple(
            self.doc.text((*path, i), v)
            for i, v in enumerate(value)
            if isinstance(v, (str, int, float))
        )

    def env(self, value: Any, path: NodePath) -> dict[str, str]:
        if not isinstance(value, dict):
            return {}
        return {
            str(k): self.doc.text((*path, k), v)
            for k, v in value.items()
            if not isinstance(v, (dict, list))
        }

    def duration(self, value: Any, path: NodePath, what: str) -> int | None:
        if not isinstance(value, str):
            return None
        try:
            seconds = _duration(value)
        except ValueError:
            return None  # the schema reported the syntax
        if seconds <= 0:
            self.error(path, f"{subject(path)} must be longer than 0s")
            return None
        if seconds > MAX_TIMEOUT_S and what != "artifacts expire_in":
            self.error(
                path,
                f"{subject(path)} is {value}, longer than the maximum of {MAX_TIMEOUT_S // 3600}h",
            )
            return MAX_TIMEOUT_S
        return seconds

    def size(self, value: Any) -> float | None:
        if not isinstance(value, str):
            return None
        try:
            return parse_size_gb(value)
        except ValueError:
            return None

    def spec(self, value: Any, path: NodePath) -> HardwareSpec | None:
        """A hardware spec checked against the catalog (syntax errors are the schema's)."""
        if not isinstance(value, str):
            return None
        try:
            spec = _spec(value)
        except ValueError:
            return None
        classes = self.catalog.classes()
        if spec.cls not in classes:
            hint = did_you_mean(spec.cls, classes)
            self.error(
                path,
                f"unknown hardware class '{spec.cls}'{hint}; known classes: {', '.join(classes)}",
            )
            return None
        most = self.catalog.max_count(spec.cls)
        if spec.count > most:
            unit = "vCPUs" if spec.cls == "cpu" else f"{spec.cls} accelerators"
            self.error(
                path,
                f"no instance type in the catalog has {spec.count} {unit}; "
                f"the most in one machine is {spec.cls}:{most}",
            )
            return None
        return spec

    def hardware(self, value: Any, path: NodePath) -> tuple[HardwareSpec, ...]:
        items: list[tuple[Any, NodePath]]
        if isinstance(value, list):
            items = [(v, (*path, i)) for i, v in enumerate(value)]
        else:
            items = [(value, path)]
        out = []
        for v, p in items:
            s = self.spec(v, p)
            if s is not None:
                out.append(s)
        return tuple(out)

    # -- sections -----------------------------------------------------------------------

    def triggers(self, data: dict[str, Any]) -> Triggers:
        if "on" not in data:
            return Triggers(push=PushTrigger(), pull_request=PullRequestTrigger(), implicit=True)
        on = data["on"]
        if isinstance(on, str):
            on = {on: None}
        elif isinstance(on, list):
            on = {e: None for e in on if isinstance(e, str)}
        if not isinstance(on, dict):
            return Triggers()
        push: PushTrigger | None = None
        pr: PullRequestTrigger | None = None
        if "push" in on:
            p = on["push"] if isinstance(on["push"], dict) else {}
            base: NodePath = ("on", "push")
            push = PushTrigger(
                branches=self.strings(p.get("branches"), (*base, "branches")),
                branches_ignore=self.strings(p.get("branches-ignore"), (*base, "branches-ignore")),
                tags=self.strings(p.get("tags"), (*base, "tags")),
                paths=self.strings(p.get("paths"), (*base, "paths")),
                paths_ignore=self.strings(p.get("paths-ignore"), (*base, "paths-ignore")),
            )
        if "pull_request" in on:
            p = on["pull_request"] if isinstance(on["pull_request"], dict) else {}
            base = ("on", "pull_request")
            types = self.strings(p.get("types"), (*base, "types"))
            pr = PullRequestTrigger(
                branches=self.strings(p.get("branches"), (*base, "branches")),
                paths=self.strings(p.get("paths"), (*base, "paths")),
                paths_ignore=self.strings(p.get("paths-ignore"), (*base, "paths-ignore")),
                **({"types": types} if types is not None else {}),
                drafts=p.get("drafts") is not False,
            )
        return Triggers(push=push, pull_request=pr)

    def resources(self, value: Any, path: NodePath) -> Resources | None:
        if not isinstance(value, dict):
            return None
        gpu: GpuRequest | None = None
        g = value.get("gpu")
        gpath = (*path, "gpu")
        if isinstance(g, int) and not isinstance(g, bool):
            gpu = GpuRequest(count=max(g, 1))
        elif isinstance(g, dict):
            gtype = g.get("type") if isinstance(g.get("type"), str) else None
            if gtype is not None and not self.catalog.has_class(gtype):
                classes = [c for c in self.catalog.classes() if c != "cpu"]
                self.error(
                    (*gpath, "type"),
                    f"unknown hardware class '{gtype}'"
                    f"{did_you_mean(gtype, classes)}; known classes: {', '.join(classes)}",
                )
                return None
            count = g.get("count", 1)
            gpu = GpuRequest(
                type=gtype,
                count=count if isinstance(count, int) and count >= 1 else 1,
                memory_gb=self.size(g.get("memory")),
            )
        cpu = value.get("cpu")
        r = Resources(
            gpu=gpu,
            cpu=cpu if isinstance(cpu, int) and not isinstance(cpu, bool) else None,
            memory_gb=self.size(value.get("memory")),
            disk_gb=self.size(value.get("disk")),
        )
        if not self.catalog.for_resources(r):
            self.error(
                path,
                f"no instance type in the catalog satisfies these resources "
                f"({describe_resources(r)})",
            )
        return r

    def retry(self, value: Any, path: NodePath = ()) -> RetryPolicy:
        if isinstance(value, int) and not isinstance(value, bool):
            return RetryPolicy(max=value)
        if not isinstance(value, dict):
            return DEFAULT_RETRY
        wait = value.get("capacity_wait")
        wait_s = self.duration(wait, (*path, "capacity_wait"), "capacity_wait")
        mx = value.get("max", DEFAULT_RETRY.max)
        when = value.get("when")
        codes = value.get("exit_codes")
        return RetryPolicy(
            max=mx if isinstance(mx, int) else DEFAULT_RETRY.max,
            when=frozenset(RetryReason(w) for w in when if w in _RETRY_REASONS)
            if isinstance(when, list)
            else DEFAULT_RETRY.when,
            exit_codes=tuple(c for c in codes if isinstance(c, int))
            if isinstance(codes, list)
            else (),
            capacity_wait_s=wait_s,
        )

    def matrix(self, value: Any, path: NodePath, job: str) -> Matrix | None:
        if not isinstance(value, dict):
            return None
        axes: dict[str, tuple[str, ...]] = {}
        duplicate_values = False
        for k, vals in value.items():
            if k in ("include", "exclude") or not isinstance(vals, list):
                continue
            axes[k] = tuple(
                self.doc.text((*path, k, i), v)
                for i, v in enumerate(vals)
                if not isinstance(v, (dict, list))
            )
            if k == "hardware":
                for i, v in enumerate(vals):
                    self.spec(v, (*path, k, i))
            seen: set[str] = set()
            for i, v in enumerate(axes[k]):
                if v in seen:
                    self.error(
                        (*path, k, i),
                        f"matrix of job '{job}': axis '{k}' lists '{v}' twice, "
                        "which would give two children of the same name",
                    )
                    duplicate_values = True
                seen.add(v)

        def entries(which: str) -> tuple[Mapping[str, str], ...]:
            raw = value.get(which)
            if not isinstance(raw, list):
                return ()
            out = []
            for i, e in enumerate(raw):
                if not isinstance(e, dict):
                    continue
                ep = (*path, which, i)
                out.append(
                    frozen_map(
                        {
                            str(k): self.doc.text((*ep, k), v)
                            for k, v in e.items()
                            if not isinstance(v, (dict, list))
                        }
                    )
                )
                if which == "exclude":
                    for k in e:
                        if k not in axes:
                            hint = did_you_mean(str(k), axes)
                            self.error(
                                (*ep, k),
                                f"matrix of job '{job}': exclude uses '{k}', "
                                f"which is not an axis{hint}",
                                key=True,
                            )
                elif "hardware" in e:
                    self.spec(e["hardware"], (*ep, "hardware"))
            return tuple(out)

        m = Matrix(axes=frozen_map_t(axes), include=entries("include"), exclude=entries("exclude"))
        if not axes and not m.include:
            self.error(
                path,
                f"matrix of job '{job}' has no axes; give at least one axis "
                "(a list of values) or an include list",
            )
            return m
        if matrix_size(m) > MAX_MATRIX_CHILDREN:
            self.error(
                path,
                f"matrix of job '{job}' gives {matrix_size(m)} children; "
                f"the most is {MAX_MATRIX_CHILDREN}",
            )
            return m
        names: set[str] = set()
        combos = matrix_combinations(m)
        self._children[job] = len(combos)
        if not combos:
            self.error(path, f"matrix of job '{job}' gives no children (exclude removes them all)")
        if duplicate_values:
            return m
        for combo in combos:
            name = child_name(job, combo)
            if name in names:
                self.error(
                    path,
                    f"matrix of job '{job}' gives two children named '{name}'; "
                    "make the include entries or axis values distinct",
                )
                break
            names.add(name)
        return m

    def steps(self, value: Any, path: NodePath) -> tuple[Step, ...]:
        if not isinstance(value, list):
            return ()
        out = []
        for i, s in enumerate(value):
            sp = (*path, i)
            if not isinstance(s, dict):
                continue
            run = s.get("run")
            name = s.get("name")
            out.append(
                Step(
                    run=run if isinstance(run, str) else "",
                    name=self.doc.text((*sp, "name"), name)
                    if name is not None and not isinstance(name, (dict, list))
                    else None,
                    env=frozen_map(self.env(s.get("env"), (*sp, "env"))),
                    timeout_s=self.duration(s.get("timeout"), (*sp, "timeout"), "step timeout"),
                    continue_on_error=s.get("continue-on-error") is True,
                    mark=self.doc.mark(sp),
                )
            )
        return tuple(out)

    def check_matrix_refs(self, job: str, matrix: Matrix | None) -> None:
        """``${{ matrix.K }}`` in env, steps, cache and image must name a key of the matrix."""
        keys = matrix_keys(matrix) if matrix is not None else ()
        for p, value in self._expressions.get(job, ()):
            for m in MATRIX_EXPR_RE.finditer(value):
                k = m.group(1)
                if k in keys:
                    continue
                expr = "${{ matrix." + k + " }}"
                if matrix is None:
                    self.error(p, f"job '{job}' uses {expr}, but it has no matrix")
                else:
                    self.error(
                        p,
                        f"job '{job}' uses {expr}, but its matrix has no "
                        f"'{k}'{did_you_mean(k, keys)}; keys: {', '.join(keys)}",
                    )

    # -- jobs ---------------------------------------------------------------------------

    def job(self, name: str, data: dict[str, Any], defaults: dict[str, Any]) -> JobSpec:
        jp: NodePath = ("jobs", name)

        def pick(key: str) -> tuple[Any, NodePath] | None:
            if key in data:
                return data[key], (*jp, key)
            if key in defaults:
                return defaults[key], ("defaults", key)
            return None

        matrix = self.matrix(data["matrix"], (*jp, "matrix"), name) if "matrix" in data else None
        hw_axis = matrix is not None and "hardware" in matrix.axes
        if "hardware" in data and "resources" in data:
            self.error(
                (*jp, "resources"),
                f"job '{name}' sets both 'hardware' and 'resources'; use one of them",
                key=True,
            )
        if hw_axis and ("hardware" in data or "resources" in data):
            key = "hardware" if "hardware" in data else "resources"
            self.error(
                (*jp, key),
                f"job '{name}' sets '{key}' and a matrix 'hardware' axis; "
                "the axis sets the hardware, remove one",
                key=True,
            )
        hardware: tuple[HardwareSpec, ...] = ()
        resources: Resources | None = None
        if hw_axis:
            pass
        elif "hardware" in data:
            hardware = self.hardware(data["hardware"], (*jp, "hardware"))
        elif "resources" in data:
            resources = self.resources(data["resources"], (*jp, "resources"))
        elif "hardware" in defaults:
            hardware = self._default_hw
        elif "resources" in defaults:
            resources = self._default_res
        else:
            hardware = DEFAULT_HARDWARE

        env = self.env(defaults.get("env"), ("defaults", "env"))
        env.update(self.env(data.get("env"), (*jp, "env")))

        def enum(key: str, cls: Any, default: Any) -> Any:
            got = pick(key)
            if got is None or not isinstance(got[0], str):
                return default
            try:
                return cls(got[0])
            except ValueError:
                return default

        timeout = pick("timeout")
        timeout_s = self.duration(timeout[0], timeout[1], "timeout") if timeout else None
        retry = pick("retry")
        secrets = pick("secrets")
        image = pick("image")
        allow_failure = pick("allow_failure")
        clean_machine = pick("clean_machine")
        cache = data.get("cache")
        artifacts = data.get("artifacts")
        needs = data.get("needs")
        return JobSpec(
            name=name,
            steps=self.steps(data.get("steps"), (*jp, "steps")),
            hardware=hardware,
            resources=resources,
            workload=enum("workload", Workload, Workload.TEST),
            spot=enum("spot", SpotPolicy, SpotPolicy.AUTO),
            needs=self.strings(needs, (*jp, "needs")) or (),
            paths=self.strings(data.get("paths"), (*jp, "paths")),
            paths_ignore=self.strings(data.get("paths-ignore"), (*jp, "paths-ignore")),
            when=enum("when", When, When.ON_SUCCESS),
            matrix=matrix,
            env=frozen_map(env),
            secrets=(self.strings(secrets[0], secrets[1]) or ()) if secrets else (),
            timeout_s=timeout_s if timeout_s is not None else 30 * 60,
            retry=self.retry(retry[0], retry[1]) if retry else DEFAULT_RETRY,
            cache=Cache(
                key=str(cache.get("key") or ""),
                paths=self.strings(cache.get("paths"), (*jp, "cache", "paths")) or (),
                restore_keys=self.strings(cache.get("restore-keys"), (*jp, "cache", "restore-keys"))
                or (),
            )
            if isinstance(cache, dict)
            else None,
            artifacts=Artifacts(
                paths=self.strings(artifacts.get("paths"), (*jp, "artifacts", "paths")) or (),
                expire_in_s=self.duration(
                    artifacts.get("expire_in"),
                    (*jp, "artifacts", "expire_in"),
                    "artifacts expire_in",
                ),
            )
            if isinstance(artifacts, dict)
            else None,
            allow_failure=allow_failure is not None and allow_failure[0] is True,
            clean_machine=clean_machine is not None and clean_machine[0] is True,
            image=self.image(image[0], image[1]) if image else None,
            metrics=self.metrics(data.get("metrics"), (*jp, "metrics")),
            report=self.strings(data.get("report"), (*jp, "report")) or (),
            mark=self.doc.key_mark(jp),
        )

    def metrics(self, value: Any, path: NodePath) -> MetricsSpec | None:
        """``metrics:`` as a file name, or ``{file, keys, higher_is_better, fail_if}``;
        each ``fail_if`` gate is parsed here (the schema checked its shape)."""
        if isinstance(value, str):
            return MetricsSpec(file=self.doc.text(path, value)) if value else None
        if not isinstance(value, dict) or not isinstance(value.get("file"), str):
            return None
        hib = value.get("higher_is_better")
        higher: dict[str, bool] = {}
        if isinstance(hib, dict):
            higher = {str(k): v for k, v in hib.items() if isinstance(v, bool)}
        elif isinstance(hib, list):
            higher = {str(k): True for k in hib if isinstance(k, str)}
        gates: dict[str, str] = {}
        raw = value.get("fail_if")
        if isinstance(raw, dict):
            for k, g in raw.items():
                if not isinstance(g, str):
                    continue
                try:
                    parse_gate(g)
                except ValueError as e:
                    self.error((*path, "fail_if", k), f"{subject((*path, 'fail_if', k))}: {e}")
                    continue
                gates[str(k)] = g
        keys = value.get("keys")
        return MetricsSpec(
            file=value["file"],
            keys=self.strings(keys, (*path, "keys")) if isinstance(keys, list) else None,
            higher_is_better=frozen_map_t(higher),
            fail_if=frozen_map(gates),
        )

    def notify(self, value: Any) -> tuple[NotifyChannel, ...]:
        """``notify:``, a list of channels (the schema checked each one's keys)."""
        if not isinstance(value, list):
            return ()
        out: list[NotifyChannel] = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                continue
            path: NodePath = ("notify", i)
            kinds = [k for k in ("slack", "webhook", "email") if k in entry]
            if len(kinds) != 1:
                self.error(
                    path,
                    f"'notify[{i}]' must have exactly one of slack, webhook or email"
                    + (f", not {' and '.join(kinds)}" if kinds else ""),
                )
                continue
            if "secret" in entry and kinds != ["webhook"]:
                self.error(
                    (*path, "secret"),
                    f"'notify[{i}]': secret (the HMAC key) is for a webhook; "
                    "a Slack channel's secret is its slack: value",
                    key=True,
                )
            on = entry.get("on")
            events = (
                frozenset(e for e in on if isinstance(e, str)) if isinstance(on, list) else None
            )
            branches = self.strings(entry.get("branches"), (*path, "branches"))
            common: dict[str, Any] = {"branches": branches}
            if events:
                common["on"] = events
            if isinstance(entry.get("slack"), str):
                out.append(NotifyChannel("slack", entry["slack"], **common))
            elif isinstance(entry.get("webhook"), str):
                secret = entry.get("secret")
                out.append(
                    NotifyChannel(
                        "webhook",
                        entry["webhook"],
                        secret=secret if isinstance(secret, str) else None,
                        **common,
                    )
                )
            elif "email" in entry:
                to = self.strings(entry["email"], (*path, "email")) or ()
                if to:
                    out.append(NotifyChannel("email", ",".join(to), **common))
        return tuple(out)

    def image(self, value: Any, path: NodePath) -> Image | None:
        """``image:`` as a name, or ``{name, credentials, options}`` (the schema checked
        the keys and their syntax)."""
        if isinstance(value, str):
            return Image(name=self.doc.text(path, value)) if value else None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return None
        creds = value.get("credentials")
        raw = value.get("options")
        opts = raw if isinstance(raw, dict) else {}

        def opt(key: str) -> str | None:
            v = opts.get(key)
            return self.doc.text((*path, "options", key), v) if isinstance(v, str) else None

        return Image(
            name=self.doc.text((*path, "name"), value["name"]),
            credentials=creds if isinstance(creds, str) else None,
            options=ImageOptions(
                user=opt("user"), entrypoint=opt("entrypoint"), shm_size=opt("shm_size")
            ),
        )

    def check_total(self, jobs: Mapping[str, JobSpec]) -> None:
        """At most ``max_jobs`` jobs after matrix expansion: the error points at the
        matrix (or job) that takes the running total, in file order, past the limit."""
        if self.max_jobs is None:
            return
        counts = {
            name: self._children.get(name, 0) if spec.matrix is not None else 1
            for name, spec in jobs.items()
        }
        total = sum(counts.values())
        if total <= self.max_jobs:
            return
        running, name, n = 0, "", 0
        for name, n in counts.items():  # noqa: B007 (the one that passes the limit)
            running += n
            if running > self.max_jobs:
                break
        matrix = jobs[name].matrix is not None
        what = f"matrix of job '{name}' ({n:,} children)" if matrix else f"job '{name}'"
        self.error(
            ("jobs", name, "matrix") if matrix else ("jobs", name),
            f"{what} takes the pipeline to {running:,} jobs, over the limit of "
            f"{self.max_jobs:,} jobs per pipeline (PLOYD_MAX_JOBS_PER_PIPELINE); "
            f"the file gives {total:,} jobs in all: make the matrices smaller, or split "
            "the work across pipelines",
            key=not matrix,
        )

    def check_needs(self, jobs: dict[str, JobSpec], raw: dict[str, Any]) -> None:
        names = list(jobs)
        graph: dict[str, list[str]] = {}
        for name, job in jobs.items():
            needs_raw = raw[name].get("needs") if isinstance(raw.get(name), dict) else None
            edges: list[str] = []
            for i, n in enumerate(job.needs):
                p: NodePath = (
                    ("jobs", name, "needs")
                    if isinstance(needs_raw, str)
                    else ("jobs", name, "needs", i)
                )
                if n == name:
                    self.error(p, f"job '{name}' needs itself")
                elif n not in jobs:
                    self.error(
                        p, f"job '{name}' needs '{n}', which is not a job{did_you_mean(n, names)}"
                    )
                elif n in edges:
                    self.error(p, f"job '{name}' needs '{n}' twice")
                else:
                    edges.append(n)
            graph[name] = edges
        # cycles: iterative DFS in file order, each cycle reported once
        order = {n: i for i, n in enumerate(names)}
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        reported: set[frozenset[str]] = set()
        for root in names:
            if root in state:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            on_path: list[str] = [root]
            state[root] = 1
            while stack:
                node, i = stack[-1]
                if i < len(graph[node]):
                    stack[-1] = (node, i + 1)
                    nxt = graph[node][i]
                    if state.get(nxt) == 1:
                        cycle = on_path[on_path.index(nxt) :]
                        key = frozenset(cycle)
                        if key not in reported:
                            reported.add(key)
                            start = min(range(len(cycle)), key=lambda j: order[cycle[j]])
                            cyc = cycle[start:] + cycle[:start]
                            first, second = cyc[0], cyc[1 % len(cyc)]
                            idx = jobs[first].needs.index(second)
                            nr = raw[first].get("needs")
                            p = (
                                ("jobs", first, "needs")
                                if isinstance(nr, str)
                                else ("jobs", first, "needs", idx)
                            )
                            self.error(
                                p, "jobs need each other in a cycle: " + " -> ".join([*cyc, cyc[0]])
                            )
                    elif nxt not in state:
                        state[nxt] = 1
                        on_path.append(nxt)
                        stack.append((nxt, 0))
                else:
                    stack.pop()
                    on_path.pop()
                    state[node] = 2

    def build(self) -> Config | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.error(
                (),
                f"the file must be a mapping of keys (version, on, defaults, jobs), "
                f"not a {type(data).__name__}",
            )
            return None
        version = data.get("version")
        triggers = self.triggers(data)
        defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
        assert isinstance(defaults, dict)
        if "hardware" in defaults and "resources" in defaults:
            self.error(
                ("defaults", "resources"),
                "defaults set both 'hardware' and 'resources'; use one of them",
                key=True,
            )
        jobs_raw = data.get("jobs") if isinstance(data.get("jobs"), dict) else {}
        assert isinstance(jobs_raw, dict)
        needs_default_hw = any(
            isinstance(j, dict) and "hardware" not in j and "resources" not in j
            for j in jobs_raw.values()
        )
        self._default_hw: tuple[HardwareSpec, ...] = DEFAULT_HARDWARE
        self._default_res: Resources | None = None
        if "hardware" in defaults:
            hw = self.hardware(defaults["hardware"], ("defaults", "hardware"))
            self._default_hw = hw or DEFAULT_HARDWARE
        elif "resources" in defaults and needs_default_hw:
            self._default_res = self.resources(defaults["resources"], ("defaults", "resources"))
        jobs: dict[str, JobSpec] = {}
        for name, jd in jobs_raw.items():
            if not isinstance(jd, dict):
                continue
            spec = self.job(str(name), jd, defaults)
            self.check_matrix_refs(str(name), spec.matrix)
            jobs[str(name)] = spec
        self.check_needs(jobs, jobs_raw)
        self.check_total(jobs)
        notify = self.notify(data.get("notify"))
        if notify:
            jobs = {k: replace(j, notify=notify) for k, j in jobs.items()}
        return Config(
            version=version if isinstance(version, int) else 1,
            triggers=triggers,
            jobs=frozen_map_t(jobs),
            file=self.doc.file,
            notify=notify,
        )


def frozen_map_t(d: dict[str, Any]) -> Mapping[str, Any]:
    from types import MappingProxyType

    return MappingProxyType(d)


def describe_resources(r: Resources) -> str:
    parts = []
    if r.gpu is not None:
        g = f"{r.gpu.count} x {r.gpu.type or 'GPU'}"
        if r.gpu.memory_gb is not None:
            g += f" with >= {r.gpu.memory_gb:g}GB each"
        parts.append(g)
    if r.cpu is not None:
        parts.append(f">= {r.cpu} vCPUs")
    if r.memory_gb is not None:
        parts.append(f">= {r.memory_gb:g}GB memory")
    if r.disk_gb is not None:
        parts.append(f">= {r.disk_gb:g}GB disk")
    return ", ".join(parts) or "nothing"
