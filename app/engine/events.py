"""What the engine tells the rest of PloyD, as typed events on a small bus.

The engine publishes an event after the transaction that caused it commits; reporters,
executors, metrics and the log finisher subscribe to the types they care about
(Buildbot's reporters declare the event keys they want in the same way). Hooks that
change a decision (gates, admission, secrets, agent authentication, claim credentials)
are not events: they are typed interfaces given to the engine's constructor
(``app.engine.hooks``).

Subscribers run synchronously, in subscription order, on the publisher's thread (the
event loop in ``ployd serve``): they must be quick and hand slow work to a task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar


@dataclass(frozen=True)
class PipelinesChanged:
    """Something about these pipelines changed (a job queued, started, ended, waited)."""

    pipeline_ids: frozenset[int]


@dataclass(frozen=True)
class AttemptClaimed:
    """An agent took an attempt (its machine is now busy with it)."""

    agent_id: str
    attempt_id: int


@dataclass(frozen=True)
class AttemptEnded:
    """An attempt that an agent held ended, in ``state`` (an ``AttemptState`` value)."""

    agent_id: str
    attempt_id: int
    state: str
    fork: bool  # the attempt ran a fork's pull request (its machine is not reused)


@dataclass(frozen=True)
class MachineFailed:
    """A machine started for work reported that it could not start its agent: it is
    going away (``error`` says why); ``attempt_id`` is the attempt it was started for."""

    agent_id: str
    attempt_id: int | None
    error: str


@dataclass(frozen=True)
class AgentRegistered:
    """An agent exchanged its registration token for its credential (``target``: what
    it registered with, as audited: ``pool:lab``, ``instance:i-...``, ``local``)."""

    agent_id: str
    target: str


Event = PipelinesChanged | AttemptClaimed | AttemptEnded | MachineFailed | AgentRegistered
E = TypeVar("E", PipelinesChanged, AttemptClaimed, AttemptEnded, MachineFailed, AgentRegistered)


class EventBus:
    """Subscribe by type, publish to that type's subscribers."""

    def __init__(self) -> None:
        self._subscribers: dict[type[object], list[Callable[[object], None]]] = {}

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler`` with every published ``kind``; returns the unsubscribe."""
        handlers = self._subscribers.setdefault(kind, [])
        entry: Callable[[object], None] = handler  # type: ignore[assignment]
        handlers.append(entry)

        def unsubscribe() -> None:
            if entry in handlers:
                handlers.remove(entry)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for handler in list(self._subscribers.get(type(event), ())):
            handler(event)
