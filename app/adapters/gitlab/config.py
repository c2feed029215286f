"""The GitLab bot's settings, read once from ``PLOYD_GITLAB_*`` (never at import time)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.adapters.gitlab.errors import GitLabConfigError

DEFAULT_URL = "https://gitlab.com"


@dataclass(frozen=True)
class GitLabConfig:
    """``url`` is the instance's base URL (no ``/api/v4``); ``token`` a project, group or bot
    user access token with the ``api`` scope; ``webhook_secret`` the hooks' secret token.
    Neither secret appears in ``repr``."""

    url: str = DEFAULT_URL
    token: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GitLabConfig:
        """From PLOYD_GITLAB_URL (default https://gitlab.com), PLOYD_GITLAB_TOKEN and
        PLOYD_GITLAB_WEBHOOK_SECRET."""
        url = (env.get("PLOYD_GITLAB_URL") or DEFAULT_URL).strip().rstrip("/")
        if not url.startswith(("https://", "http://")) or not urlsplit(url).netloc:
            raise GitLabConfigError(
                f"PLOYD_GITLAB_URL={url!r}: expected the instance URL, e.g. https://gitlab.com"
            )
        if url.endswith("/api/v4"):
            raise GitLabConfigError(
                f"PLOYD_GITLAB_URL={url!r}: give the instance URL without /api/v4"
            )
        token = env.get("PLOYD_GITLAB_TOKEN", "").strip()
        if not token:
            raise GitLabConfigError(
                "PLOYD_GITLAB_TOKEN is not set: give a project, group or bot user access "
                "token with the api scope"
            )
        secret = env.get("PLOYD_GITLAB_WEBHOOK_SECRET", "")
        if not secret:
            raise GitLabConfigError(
                "PLOYD_GITLAB_WEBHOOK_SECRET is not set: give the secret token configured "
                "on the GitLab webhook"
            )
        return cls(url=url, token=token, webhook_secret=secret)
