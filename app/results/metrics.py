"""The agent's metrics call: the file's bytes in, parsed (``app.core.results.metrics``),
compared with the base run, gated by ``fail_if``, stored per attempt; the answer is the
lines for the job's log. A file that cannot be used is one line there, never an error
of the call."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from app.artifacts.access import BadRequest, live_attempt
from app.core.jobspec import stored_metrics
from app.core.results.compare import check_gates
from app.core.results.metrics import (
    MAX_BYTES,
    Metrics,
    MetricsError,
    human_bytes,
    parse_metrics,
    select,
)
from app.store import metrics as rows
from app.store.db import Database

MAX_PROBLEM = 200


@dataclass(frozen=True)
class Received:
    lines: list[str]
    failed: str | None  # the tripped gates' message: the attempt fails at its finish

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "failed": self.failed}


def _unusable(file: str, body: dict[str, Any]) -> str | None:
    problem = body.get("problem")
    if problem is None:
        return None
    if problem == "missing":
        return f"{file} was not found in the workspace; no metrics recorded"
    if problem == "outside":
        return f"{file} is outside the workspace; not read"
    if problem == "too_big":
        size = body.get("size")
        shown = human_bytes(size) if isinstance(size, int) and size > 0 else "too large"
        return f"{file} is {shown}, over the limit of {human_bytes(MAX_BYTES)}; not read"
    return f"{file}: {str(problem)[:MAX_PROBLEM]}"


def _decode(body: dict[str, Any]) -> bytes:
    data = body.get("data")
    if not isinstance(data, str):
        raise BadRequest("data must be the file's bytes in base64 (or give problem)")
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadRequest("data is not valid base64") from None


class MetricsIntake:
    def __init__(self, db: Database) -> None:
        self.db = db

    def check(self, attempt_id: int, token: str) -> None:
        """The job token, before the body is read (AgentAuthError when not valid)."""
        with self.db.session() as s:
            live_attempt(s, attempt_id, token)

    def receive(self, attempt_id: int, token: str, body: Any) -> Received:
        """Record the attempt's metrics file (blocking: run it off the event loop)."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be an object {file, data | problem, size}")
        with self.db.session() as s:
            attempt = live_attempt(s, attempt_id, token)  # the token first, then the body
            spec = stored_metrics(attempt.job.spec)
            if spec is None:
                raise BadRequest("this job has no metrics: in its configuration")
            file = spec.file
            error = _unusable(file, body)
            metrics: Metrics | None = None
            problems: list[str] = []
            if error is None:
                try:
                    metrics = parse_metrics(file, _decode(body))
                except MetricsError as e:
                    error = f"{file}: {e}; no metrics recorded"
            if metrics is not None:
                metrics, missing = select(metrics, spec.keys)
                problems = list(metrics.problems)
                problems += [f"{k}: no such metric in {file}" for k in missing]
            base = rows.find_base(s, attempt.job) if metrics is not None else None
            base_values = rows.scalars_of(s, base.attempt_id) if base is not None else None
            results = (
                check_gates(spec.fail_if, metrics.scalars, base_values, base.label if base else "")
                if metrics is not None
                else []
            )
            failed = "; ".join(r.message for r in results if r.failed) or None
            rows.save(
                s,
                attempt,
                file,
                metrics,
                error=error,
                problems=problems,
                base=base,
                gate_failure=failed,
            )
            branch = rows.base_branch(s, attempt.job.pipeline)
        if error is not None or metrics is None:
            return Received([error or f"{file}: no metrics"], None)
        n = len(metrics.scalars)
        curves = f" and {len(metrics.series)} curve(s)" if metrics.series else ""
        where = (
            f"compared with {base.label}"
            if base is not None
            else f"no earlier successful run on {branch} to compare with"
        )
        lines = [f"recorded {n} value(s){curves} from {file}, {where}"]
        lines += problems
        lines += [r.message for r in results if r.message and not r.failed]
        lines += [f"FAILED: {r.message}" for r in results if r.failed]
        return Received(lines, failed)
