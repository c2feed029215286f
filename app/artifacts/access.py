"""The job token check shared by the artifact and cache calls (as the engine's: 401 for an
unknown token, 403 for another attempt's, 409 once the attempt has ended)."""

from __future__ import annotations

import hashlib

from app.core.states import AttemptState
from app.engine.engine import AgentAuthError
from app.store.artifacts import attempt_by_token_hash
from app.store.db import Tx
from app.store.models import Attempt


def live_attempt(s: Tx, attempt_id: int, token: str) -> Attempt:
    digest = hashlib.sha256(token.encode()).hexdigest()
    attempt = attempt_by_token_hash(s, digest) if token else None
    if attempt is None:
        raise AgentAuthError(401, "unknown job token")
    if attempt.id != attempt_id:
        raise AgentAuthError(403, "this job token is for another attempt")
    if AttemptState(attempt.state).final:
        raise AgentAuthError(409, f"attempt {attempt_id} has already ended ({attempt.state})")
    return attempt


class BadRequest(ValueError):
    """A request the protocol does not allow (answered 400)."""


class NotFound(LookupError):
    """No such artifact or cache entry for this attempt (answered 404)."""


def human_size(n: int) -> str:
    """1536 -> '1.5 KB' (1 KB = 1024 bytes, as in the configuration's sizes)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
