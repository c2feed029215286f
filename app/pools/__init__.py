"""Pools of self-hosted agents: registration tokens, registered agents, and who may
claim what (``service.Pools``; the rows are ``app.store.agents``'s)."""

from app.core.pools import PoolError
from app.pools.service import (
    AgentNotFound,
    NewToken,
    Pools,
    TokenNotFound,
    as_json,
    token_json,
    token_state,
)

__all__ = [
    "AgentNotFound",
    "NewToken",
    "PoolError",
    "Pools",
    "TokenNotFound",
    "as_json",
    "token_json",
    "token_state",
]
