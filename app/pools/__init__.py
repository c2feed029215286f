"""Pools of self-hosted agents: registration tokens, registered agents, and who may
claim what (``service.Pools``; the rows are ``app.store.agents``'s)."""

from app.core.pools import PoolError
from app.pools.service import AgentNotFound, NewToken, Pools, as_json, token_json

__all__ = ["AgentNotFound", "NewToken", "PoolError", "Pools", "as_json", "token_json"]
