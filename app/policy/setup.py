"""Secrets and policy as the engine's decision hooks (the composition root builds them)."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.hardware import Catalog
from app.engine.hooks import (
    Authenticator,
    BootReports,
    CloneCredentials,
    EngineHooks,
    Registrar,
    SecretsProvider,
)
from app.policy.enforce import PolicyBook
from app.policy.model import PolicyError
from app.secrets.setup import store_from
from app.secrets.store import SecretStore
from app.settings import Settings, SettingsError
from app.store.db import Database


@dataclass(frozen=True)
class Security:
    """The secret store and the policy book in force."""

    secrets: SecretStore
    policy: PolicyBook

    def hooks(
        self,
        *,
        secrets: SecretsProvider | None = None,
        registrars: tuple[Registrar, ...] = (),
        authenticators: tuple[Authenticator, ...] = (),
        boot_reports: tuple[BootReports, ...] = (),
        payload_hooks: dict[str, CloneCredentials] | None = None,
    ) -> EngineHooks:
        """The engine's hooks that deliver these secrets and enforce this policy: the
        queue-time gates (policy refusals, then missing secrets), the admission hook and
        the secrets provider. With another ``secrets`` provider (an embedder's), the
        store's missing-secrets gate is left out: that provider answers for itself."""
        gates = (self.policy.gate,) if secrets is not None else (
            self.policy.gate,
            self.secrets.gate,
        )
        return EngineHooks(
            gates=gates,
            admission=self.policy.admission,
            secrets=secrets or self.secrets.provide,
            registrars=registrars,
            authenticators=authenticators,
            boot_reports=boot_reports,
            payload_hooks=payload_hooks or {},
        )


def security_from(settings: Settings, db: Database, catalog: Catalog) -> Security:
    """The secret store and the policy book as ``settings`` configure them."""
    try:
        policy = PolicyBook(catalog, settings.policy_file)
    except PolicyError as e:
        raise SettingsError(f"PLOYD_POLICY_FILE: {e}") from None
    return Security(store_from(settings, db), policy)
