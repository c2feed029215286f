"""Authenticated encryption at rest: round trips, wrong keys, moved ciphertexts."""

from __future__ import annotations

import pytest

from app.secrets.crypto import Cipher, DecryptError, LocalKey, identity


def test_round_trip_and_nonce_is_fresh() -> None:
    c = Cipher(LocalKey(b"k" * 32))
    aad = identity(1, 2, "TOKEN", "")
    a, b = c.seal("hunter2-value", aad), c.seal("hunter2-value", aad)
    assert a.ciphertext != b.ciphertext  # a random nonce each time
    assert b"hunter2" not in a.ciphertext
    assert c.open(a, aad) == "hunter2-value"
    assert a.key_id.startswith("local:")


def test_a_wrong_key_does_not_decrypt() -> None:
    aad = identity(1, 2, "TOKEN", "")
    sealed = Cipher(LocalKey(b"k" * 32)).seal("value-1", aad)
    with pytest.raises(DecryptError, match="PLOYD_SECRET_KEY changed"):
        Cipher(LocalKey(b"j" * 32)).open(sealed, aad)
    # even when the key id is forged to match, the tag does not verify
    other = LocalKey(b"j" * 32)
    forged = type(sealed)(sealed.ciphertext, other.key_id)
    with pytest.raises(DecryptError):
        Cipher(other).open(forged, aad)


@pytest.mark.parametrize(
    "moved",
    [
        identity(1, 2, "OTHER", ""),  # another name
        identity(1, 3, "TOKEN", ""),  # another repository
        identity(9, 2, "TOKEN", ""),  # another tenant
        identity(1, 2, "TOKEN", "main"),  # another branch scope
    ],
)
def test_a_ciphertext_moved_to_another_identity_does_not_decrypt(moved: bytes) -> None:
    c = Cipher(LocalKey(b"k" * 32))
    sealed = c.seal("value-1", identity(1, 2, "TOKEN", ""))
    with pytest.raises(DecryptError, match="moved"):
        c.open(sealed, moved)


def test_a_tampered_ciphertext_does_not_decrypt() -> None:
    c = Cipher(LocalKey(b"k" * 32))
    aad = identity(1, 2, "TOKEN", "")
    sealed = c.seal("value-1", aad)
    flipped = bytes([sealed.ciphertext[-1] ^ 1])
    bad = type(sealed)(sealed.ciphertext[:-1] + flipped, sealed.key_id)
    with pytest.raises(DecryptError):
        c.open(bad, aad)


def test_a_short_master_key_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        LocalKey(b"short")
