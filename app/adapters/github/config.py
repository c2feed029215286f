"""The GitHub App's settings, read once from ``PLOYD_GITHUB_*`` (never at import time)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "https://api.github.com"


class GitHubConfigError(ValueError):
    """A PLOYD_GITHUB_* variable is missing or unusable."""


@dataclass(frozen=True)
class GitHubAppConfig:
    """``api_url`` is ``https://HOST/api/v3`` for GitHub Enterprise Server."""

    app_id: int
    private_key_pem: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    webhook_secret: str = field(default="", repr=False)
    private_key_file: str = ""  # where the key was read from (steps must not see it)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GitHubAppConfig:
        """From PLOYD_GITHUB_APP_ID, PLOYD_GITHUB_PRIVATE_KEY (PEM text) or
        PLOYD_GITHUB_PRIVATE_KEY_FILE, PLOYD_GITHUB_API_URL, PLOYD_GITHUB_WEBHOOK_SECRET."""
        raw_id = env.get("PLOYD_GITHUB_APP_ID", "")
        if not raw_id.isdigit():
            raise GitHubConfigError(f"PLOYD_GITHUB_APP_ID={raw_id!r}: expected the app's number")
        key = env.get("PLOYD_GITHUB_PRIVATE_KEY", "")
        key_file = env.get("PLOYD_GITHUB_PRIVATE_KEY_FILE", "")
        if not key and key_file:
            try:
                key = Path(key_file).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise GitHubConfigError(
                    f"PLOYD_GITHUB_PRIVATE_KEY_FILE={key_file}: {exc}"
                ) from None
        if "PRIVATE KEY" not in key:
            raise GitHubConfigError(
                "set PLOYD_GITHUB_PRIVATE_KEY (PEM) or PLOYD_GITHUB_PRIVATE_KEY_FILE"
            )
        api_url = (env.get("PLOYD_GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        if not api_url.startswith(("https://", "http://")):
            raise GitHubConfigError(f"PLOYD_GITHUB_API_URL={api_url!r}: expected a URL")
        return cls(
            app_id=int(raw_id),
            private_key_pem=key,
            api_url=api_url,
            webhook_secret=env.get("PLOYD_GITHUB_WEBHOOK_SECRET", ""),
            private_key_file=str(Path(key_file).expanduser()) if key and key_file else "",
        )
