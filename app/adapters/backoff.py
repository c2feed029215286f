"""How long adapters wait between tries of a failed call: exponential backoff, bounded in
tries and in total waiting. Shared by the GitHub and GitLab adapters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """At most ``attempts`` tries per call and ``budget`` seconds of waiting in total."""

    attempts: int = 5
    first: float = 0.5
    ceiling: float = 30.0
    budget: float = 120.0

    def pause(self, failures: int) -> float:
        """The wait after the ``failures``-th consecutive failure: first, 2x, 4x ... s."""
        return float(min(self.ceiling, self.first * (2.0 ** (failures - 1))))

    def exhausted(self, failures: int, waited: float, pause: float) -> bool:
        """Give up: out of tries, or the next wait would pass the budget."""
        return failures >= self.attempts or waited + pause > self.budget
