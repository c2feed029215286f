"""Prometheus metrics, names prefixed ``ployd_``, served at ``GET /metrics``.

Counters and histograms are fed by the web layer (webhooks) and by engine listeners
(claims and attempt ends); gauges that describe the present (machines by state, forge
API rate limits) are read when Prometheus scrapes. One registry per server, so tests and
several servers in one process do not share numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.store.attempts import attempt_context
from app.store.db import Database
from app.store.instances import count_by_state

WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200)


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    a = a if a.tzinfo else a.replace(tzinfo=UTC)
    b = b if b.tzinfo else b.replace(tzinfo=UTC)
    return max((b - a).total_seconds(), 0.0)


def hardware_class(hardware: Sequence[Any] | None) -> str:
    first = str((hardware or ["cpu"])[0])
    return first.split(":", 1)[0]


class Metrics:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "ployd_webhooks_received", "Webhook deliveries accepted", ["forge"], registry=r
        )
        self.rejected = Counter(
            "ployd_webhooks_rejected",
            "Webhook deliveries refused",
            ["forge", "reason"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "ployd_queue_wait_seconds",
            "From queued to claimed by a machine",
            ["hardware_class"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.job_duration = Histogram(
            "ployd_job_duration_seconds",
            "From claimed to ended, per attempt",
            ["hardware_class"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.trigger_to_start = Histogram(
            "ployd_trigger_to_start_seconds",
            "From the pipeline's trigger to a job's start",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "ployd_attempts_ended", "Attempts ended, by result", ["result"], registry=r
        )
        self.spot_interruptions = Counter(
            "ployd_spot_interruptions", "Attempts ended by a spot interruption", registry=r
        )
        self.cost = Counter(
            "ployd_cost_dollars", "Machine cost of ended attempts", ["repository"], registry=r
        )
        # name -> a function giving {"calls", "errors", "rate_limit_remaining"}
        self.forge_clients: dict[str, Callable[[], dict[str, float | None]]] = {}
        # a function giving {kind: count} of capacity fallbacks (the EC2 client's)
        self.fallbacks: Callable[[], dict[str, int]] | None = None
        r.register(_Present(self))

    # -- engine listeners -------------------------------------------------------------

    def on_claim(self, _agent_id: str, attempt_id: int) -> None:
        a = attempt_context(self.db, attempt_id)
        if a is None:
            return
        cls = hardware_class(a.hardware or a.job_hardware)
        wait = _seconds(a.created_at, a.claimed_at)
        if wait is not None:
            self.queue_wait.labels(cls).observe(wait)
        if a.number == 1:
            start = _seconds(a.pipeline_created_at, a.claimed_at)
            if start is not None:
                self.trigger_to_start.observe(start)

    def on_end(self, _agent_id: str, attempt_id: int, state: str, _fork: bool) -> None:
        a = attempt_context(self.db, attempt_id)
        if a is None:
            return
        self.attempts.labels(state).inc()
        took = _seconds(a.claimed_at, a.finished_at)
        if took is not None:
            self.job_duration.labels(hardware_class(a.hardware or a.job_hardware)).observe(took)
        if a.end_reason == "spot_interruption":
            self.spot_interruptions.inc()
        if a.cost:
            self.cost.labels(a.repo).inc(a.cost)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Present(Collector):
    """What is true now: machines by state, forge API use, capacity fallbacks."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        machines = GaugeMetricFamily("ployd_instances", "Machines by state", labels=["state"])
        for state, n in count_by_state(self.m.db):
            machines.add_metric([state], n)
        yield machines
        calls = CounterMetricFamily("ployd_forge_api_calls", "Forge API calls", labels=["forge"])
        errors = CounterMetricFamily(
            "ployd_forge_api_errors", "Forge API calls that failed", labels=["forge"]
        )
        left = GaugeMetricFamily(
            "ployd_forge_rate_limit_remaining",
            "Requests left in the rate limit",
            labels=["forge"],
        )
        for forge, read in self.m.forge_clients.items():
            now = read()
            calls.add_metric([forge], float(now.get("calls") or 0))
            errors.add_metric([forge], float(now.get("errors") or 0))
            remaining = now.get("rate_limit_remaining")
            if remaining is not None:
                left.add_metric([forge], float(remaining))
        yield calls
        yield errors
        yield left
        fallbacks = CounterMetricFamily(
            "ployd_capacity_fallbacks",
            "Launches that moved to the next candidate",
            labels=["kind"],
        )
        if self.m.fallbacks is not None:
            for kind, n in self.m.fallbacks().items():
                fallbacks.add_metric([kind], float(n))
        yield fallbacks
