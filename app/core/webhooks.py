"""Webhook authenticity checks, pure: GitHub's HMAC signature, GitLab's shared token."""

from __future__ import annotations

import hmac


def github_signature(body: bytes, secret: str) -> str:
    """``sha256=HEX``: the HMAC-SHA256 of the raw body, as GitHub signs a delivery."""
    return "sha256=" + hmac.digest(secret.encode(), body, "sha256").hex()  # one-shot: OpenSSL's


def verify_github(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``X-Hub-Signature-256`` matches; constant-time; False when missing."""
    if not header or not secret or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(header.encode(), github_signature(body, secret).encode())


def verify_token(given: str | None, secret: str) -> bool:
    """Whether a shared-secret header (GitLab's ``X-Gitlab-Token``) matches; constant-time."""
    if not given or not secret:
        return False
    return hmac.compare_digest(given.encode(), secret.encode())
