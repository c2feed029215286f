"""The life of a cloud machine, as an explicit state machine (Buildbot's latent workers).

States::

    requested    RunInstances accepted; the machine is starting
    booting      EC2 says running (the reaper saw it), or its agent has registered; it
                 has taken no job yet
    idle         its agent is registered and waits for a job (in its warm pool)
    busy         its agent runs a job
    draining     finishing its job, then it goes (a fork's job, a clean machine asked for,
                 the pool is full, or PloyD is shutting it down)
    terminating  TerminateInstances sent; waiting for EC2 to confirm
    terminated   gone (final)

Legal transitions::

    requested   -> booting | idle (agent registered first) | terminating (boot timeout,
                   launch rolled back) | terminated (EC2 never started it)
    booting     -> idle | terminating (boot timeout) | terminated (lost)
    idle        -> busy | terminating (idle TTL, pool above max idle, reaped) | terminated
    busy        -> idle (job done, back to the pool) | draining | terminating (lost agent,
                   spot reclaimed) | terminated
    draining    -> terminating | terminated
    terminating -> terminating (termination retried) | terminated
    terminated  -> (nothing)

Failure cases: a failed TerminateInstances leaves the machine ``terminating``: it is a
leaked, costing resource, and the reaper retries until EC2 confirms. A machine PloyD
does not know (tagged ``ployd:managed`` but in no row) is an orphan: the reaper
terminates it.
"""

from __future__ import annotations

from enum import StrEnum

from app.core.states import IllegalTransition


class InstanceState(StrEnum):
    REQUESTED = "requested"
    BOOTING = "booting"
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    TERMINATING = "terminating"
    TERMINATED = "terminated"

    @property
    def live(self) -> bool:
        """Costing money, or about to."""
        return self is not InstanceState.TERMINATED


S = InstanceState
INSTANCE_TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    S.REQUESTED: frozenset({S.BOOTING, S.IDLE, S.TERMINATING, S.TERMINATED}),
    S.BOOTING: frozenset({S.IDLE, S.TERMINATING, S.TERMINATED}),
    S.IDLE: frozenset({S.BUSY, S.TERMINATING, S.TERMINATED}),
    S.BUSY: frozenset({S.IDLE, S.DRAINING, S.TERMINATING, S.TERMINATED}),
    S.DRAINING: frozenset({S.TERMINATING, S.TERMINATED}),
    S.TERMINATING: frozenset({S.TERMINATING, S.TERMINATED}),
    S.TERMINATED: frozenset(),
}


def instance_transition(current: InstanceState | str, target: InstanceState | str) -> InstanceState:
    """Return ``target`` if ``current -> target`` is legal, else raise ``IllegalTransition``."""
    cur, tgt = InstanceState(current), InstanceState(target)
    if tgt not in INSTANCE_TRANSITIONS[cur]:
        raise IllegalTransition("instance", cur.value, tgt.value)
    return tgt


def cost_usd(price_usd_hour: float, seconds: float) -> float:
    """What a machine costs for ``seconds`` at ``price_usd_hour`` (EC2 bills per second)."""
    return round(max(seconds, 0.0) * price_usd_hour / 3600.0, 6)
