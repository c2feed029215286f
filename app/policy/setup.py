"""Wiring secrets and policy into an engine (``ployd serve`` does it at start)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core.hardware import Catalog
from app.engine.engine import Engine, Gate
from app.policy.enforce import PolicyBook
from app.policy.model import PolicyError
from app.secrets.setup import store_from
from app.secrets.store import SecretStore
from app.settings import Settings, SettingsError
from app.store.db import Database
from app.store.models import Attempt


@dataclass
class Security:
    secrets: SecretStore
    policy: PolicyBook
    gates: tuple[Gate, ...] = ()


_WIRED: weakref.WeakKeyDictionary[Engine, Security] = weakref.WeakKeyDictionary()


def attach(engine: Engine, secrets: SecretStore, policy: PolicyBook) -> Security:
    """Make ``engine`` deliver ``secrets`` and enforce ``policy``: the secrets provider,
    the queue-time gates (policy refusals, then missing secrets) and the admission hook."""
    old = _WIRED.get(engine)
    if old is not None:  # wired again: the previous gates go
        engine.gates[:] = [g for g in engine.gates if g not in old.gates]

    def missing_secrets(s: Session, attempt: Attempt) -> str | None:
        # Only while this store provides the secrets (an embedder may install another).
        if engine.secrets != secrets.provide:
            return None
        return secrets.gate(s, attempt)

    engine.secrets = secrets.provide
    security = Security(secrets, policy, (policy.gate, missing_secrets))
    engine.gates.extend(security.gates)
    engine.admission = policy.admission
    _WIRED[engine] = security
    return security


def wire(settings: Settings, db: Database, engine: Engine, catalog: Catalog) -> Security:
    """Build the secret store and the policy book from ``settings`` and attach them."""
    try:
        policy = PolicyBook(catalog, settings.policy_file)
    except PolicyError as e:
        raise SettingsError(f"PLOYD_POLICY_FILE: {e}") from None
    return attach(engine, store_from(settings, db), policy)


def security_of(engine: Engine) -> Security | None:
    return _WIRED.get(engine)
