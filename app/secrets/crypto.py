"""Authenticated encryption of secret values at rest.

AES-256-GCM with a random 96-bit nonce; the secret's identity (tenant, repository, name,
branch pattern) is the associated data, so a ciphertext copied to another row does not
decrypt. The key is either derived from ``PLOYD_SECRET_KEY`` with HKDF-SHA256
(``LocalKey``), or a fresh AWS KMS data key per value, stored wrapped by KMS beside the
ciphertext (``KmsKey``: envelope encryption; the identity is also KMS's encryption
context, so the wrapped key only unwraps for that row).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
HKDF_INFO = b"ployd secrets at rest v1"
HKDF_SALT = b"ployd-secrets"


class DecryptError(Exception):
    """A value that does not decrypt: a wrong key, or a ciphertext not of this row."""


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes  # nonce + AES-GCM output (ciphertext and tag)
    key_id: str  # "local:<fingerprint>" or "kms:<key id>"
    wrapped_key: bytes | None = None


def identity(tenant_id: int, repository_id: int, name: str, branch: str) -> bytes:
    """The associated data binding a ciphertext to its row."""
    return json.dumps(
        {"tenant": tenant_id, "repository": repository_id, "name": name, "branch": branch},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise DecryptError(
            "the secret does not decrypt: the key changed, or the value was moved from "
            "another secret"
        ) from None


class Keyring(Protocol):
    def seal(self, plaintext: bytes, aad: bytes) -> Sealed: ...

    def open(self, sealed: Sealed, aad: bytes) -> bytes: ...


class LocalKey:
    """A key derived from the operator's secret (``PLOYD_SECRET_KEY``) with HKDF."""

    def __init__(self, master: bytes) -> None:
        if len(master) < 16:
            raise ValueError("the secret key is too short: use at least 16 bytes")
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO
        ).derive(master)
        self.key_id = "local:" + hashlib.sha256(b"fingerprint" + self._key).hexdigest()[:16]

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        return Sealed(_seal(self._key, plaintext, aad), self.key_id)

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        if sealed.key_id != self.key_id:
            raise DecryptError(
                f"the secret was sealed with key {sealed.key_id}, not this server's "
                f"{self.key_id}: PLOYD_SECRET_KEY changed"
            )
        return _open(self._key, sealed.ciphertext, aad)


def _context(aad: bytes) -> dict[str, str]:
    return {"ployd:secret": hashlib.sha256(aad).hexdigest()}


class KmsKey:
    """Envelope encryption: a KMS data key per value, kept wrapped beside it.

    ``kms`` is a boto3 KMS client (blocking calls: they run where a secret is set or a
    job is dispatched)."""

    def __init__(self, kms: Any, key_id: str) -> None:
        self.kms = kms
        self.kms_key_id = key_id
        self.key_id = f"kms:{key_id}"

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        got = self.kms.generate_data_key(
            KeyId=self.kms_key_id, KeySpec="AES_256", EncryptionContext=_context(aad)
        )
        key = bytes(got["Plaintext"])
        return Sealed(_seal(key, plaintext, aad), self.key_id, bytes(got["CiphertextBlob"]))

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        if sealed.wrapped_key is None:
            raise DecryptError("a KMS-sealed secret without its wrapped data key")
        try:
            got = self.kms.decrypt(
                CiphertextBlob=sealed.wrapped_key, EncryptionContext=_context(aad)
            )
        except Exception as e:  # botocore's ClientError: InvalidCiphertext, AccessDenied...
            raise DecryptError(f"KMS would not unwrap the secret's data key: {e}") from None
        return _open(bytes(got["Plaintext"]), sealed.ciphertext, aad)


class Cipher:
    """Seals with the configured key (KMS when set, else the local key) and opens what
    either sealed, by the key id stored with the value."""

    def __init__(self, local: LocalKey, kms: KmsKey | None = None) -> None:
        self.local = local
        self.kms = kms

    @property
    def sealer(self) -> Keyring:
        return self.kms if self.kms is not None else self.local

    def seal(self, plaintext: str, aad: bytes) -> Sealed:
        return self.sealer.seal(plaintext.encode(), aad)

    def open(self, sealed: Sealed, aad: bytes) -> str:
        if sealed.key_id.startswith("kms:"):
            if self.kms is None:
                raise DecryptError(
                    f"the secret was sealed with {sealed.key_id}: set PLOYD_KMS_KEY_ID"
                )
            return self.kms.open(sealed, aad).decode()
        return self.local.open(sealed, aad).decode()
