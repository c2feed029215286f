"""What the dispatcher needs from a way of getting machines: start, stop, a nudge."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Executor(Protocol):
    async def start(self) -> None:
        """Begin providing agents (warm agents, or the means to launch machines)."""

    async def stop(self) -> None:
        """Stop every agent this executor started and wait for them."""

    def notify_queued(self, count: int) -> None:
        """``count`` jobs are queued for this executor; it may start machines for them."""
