"""The secret store as the settings configure it (local key, KMS, AWS references)."""

from __future__ import annotations

from app.secrets.crypto import Cipher, KmsKey, LocalKey
from app.secrets.references import Resolver, boto_clients
from app.secrets.store import SecretStore
from app.settings import Settings
from app.store.db import Database


def cipher_from(settings: Settings) -> Cipher:
    local = LocalKey(settings.secret_key_bytes())
    if not settings.kms_key_id:
        return Cipher(local)
    clients = boto_clients(settings.aws_region or "us-east-1", settings.aws_endpoint_url or None)
    return Cipher(local, KmsKey(clients("kms"), settings.kms_key_id))


def store_from(settings: Settings, db: Database) -> SecretStore:
    resolver = Resolver(
        boto_clients(settings.aws_region or "us-east-1", settings.aws_endpoint_url or None)
    )
    return SecretStore(db, cipher_from(settings), resolver)
