"""The agents connected to this server: the ones that called lately, with the hardware
each reported in its claim, for the messages of jobs no connected agent can run
("waiting: no agent with h100:8 is connected (connected: lab-1 a100:8, ...)").

In memory, per process: replicas sharing one database each know only the agents that
reach them, so such a message names the agents of the replica whose claim scan wrote it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.protocol import Hardware

# At most this many agents are remembered: the oldest goes first (a token holder
# claiming under ever new agent ids cannot grow this without bound).
MAX_AGENTS = 4096


class ConnectedAgents:
    """Agent id -> (reported hardware, when it last called). An agent is connected while
    it called within ``timeout_s``: a claim (a long poll comes back at least every 30
    s), or a call about the job it runs (logs, steps, heartbeats)."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._seen: dict[str, tuple[Hardware | None, float]] = {}

    def claimed(self, agent_id: str, hardware: Hardware | None) -> None:
        """``agent_id`` claims, reporting ``hardware`` (None: an agent that does not say)."""
        if agent_id not in self._seen and len(self._seen) >= MAX_AGENTS:
            self.now()  # forget the quiet ones
            while len(self._seen) >= MAX_AGENTS:
                oldest = min(self._seen, key=lambda a: self._seen[a][1])
                del self._seen[oldest]
        self._seen[agent_id] = (hardware, self.clock())

    def called(self, agent_id: str | None) -> None:
        """``agent_id`` called about its job: still there, with what it reported."""
        if agent_id is not None and agent_id in self._seen:
            self._seen[agent_id] = (self._seen[agent_id][0], self.clock())

    def now(self) -> list[tuple[str, Hardware | None]]:
        """(agent id, reported hardware) of the connected agents, by id; the others are
        forgotten."""
        horizon = self.clock() - self.timeout_s
        for agent_id in [a for a, (_, at) in self._seen.items() if at < horizon]:
            del self._seen[agent_id]
        return sorted(((a, hw) for a, (hw, _) in self._seen.items()), key=lambda x: x[0])
