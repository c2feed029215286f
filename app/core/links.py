"""Signed, expiring links to a job's log: HMAC-SHA256 over (job, tenant, expiry).

A link PloyD posts on a pull request carries ``?t=TOKEN``; the log page answers 403
without a valid token. A token names one job and the tenant that owns it, so a token of
one installation never opens another's logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

DEFAULT_TTL_S = 30 * 24 * 3600


class BadToken(ValueError):
    """The token is malformed, forged, expired, or for another job."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, job_id: int, tenant_id: int, expires: int) -> bytes:
    msg = f"ployd-log:v1:{job_id}:{tenant_id}:{expires}".encode()
    return hmac.new(key, msg, hashlib.sha256).digest()[:20]


def sign_job(
    key: bytes, job_id: int, tenant_id: int, ttl_s: int = DEFAULT_TTL_S, now: float | None = None
) -> str:
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{expires:x}.{_b64(_mac(key, job_id, tenant_id, expires))}"


def verify_job(
    key: bytes, token: str, job_id: int, tenant_id: int, now: float | None = None
) -> None:
    """Raise ``BadToken`` unless ``token`` opens job ``job_id`` of tenant ``tenant_id``."""
    head, _, sig = token.partition(".")
    try:
        expires = int(head, 16)
        given = _unb64(sig)
    except ValueError:
        raise BadToken("malformed token") from None
    if not hmac.compare_digest(given, _mac(key, job_id, tenant_id, expires)):
        raise BadToken("this link is not valid for this job")
    if (time.time() if now is None else now) > expires:
        raise BadToken("this link has expired")
