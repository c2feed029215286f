import pytest

from app.core.instances import (
    INSTANCE_TRANSITIONS,
    InstanceState,
    cost_usd,
    instance_transition,
)
from app.core.states import IllegalTransition

S = InstanceState


@pytest.mark.parametrize(
    ("cur", "tgt"),
    [
        (S.REQUESTED, S.BOOTING),
        (S.BOOTING, S.IDLE),
        (S.IDLE, S.BUSY),
        (S.BUSY, S.IDLE),
        (S.BUSY, S.DRAINING),
        (S.DRAINING, S.TERMINATING),
        (S.TERMINATING, S.TERMINATING),
        (S.TERMINATING, S.TERMINATED),
        (S.REQUESTED, S.TERMINATING),
        (S.IDLE, S.TERMINATING),
    ],
)
def test_legal(cur: InstanceState, tgt: InstanceState) -> None:
    assert instance_transition(cur, tgt) is tgt


@pytest.mark.parametrize(
    ("cur", "tgt"),
    [
        (S.TERMINATED, S.IDLE),
        (S.IDLE, S.BOOTING),
        (S.DRAINING, S.IDLE),
        (S.TERMINATING, S.IDLE),
        (S.BOOTING, S.BUSY),
        (S.REQUESTED, S.BUSY),
    ],
)
def test_illegal(cur: InstanceState, tgt: InstanceState) -> None:
    with pytest.raises(IllegalTransition, match="instance"):
        instance_transition(cur, tgt)


def test_every_state_listed_and_terminated_final() -> None:
    assert set(INSTANCE_TRANSITIONS) == set(InstanceState)
    assert INSTANCE_TRANSITIONS[S.TERMINATED] == frozenset()
    assert not S.TERMINATED.live and S.TERMINATING.live


def test_cost_per_second() -> None:
    assert cost_usd(3.6, 10) == 0.01
    assert cost_usd(55.04, 3600) == 55.04
    assert cost_usd(1.0, -5) == 0.0
