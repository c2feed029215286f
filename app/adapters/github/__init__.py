"""PloyD's GitHub adapter: App authentication and the REST calls PloyD makes.

* ``config``: ``GitHubAppConfig.from_env`` (PLOYD_GITHUB_*).
* ``auth``: the app JWT, installation tokens cached until 5 minutes before expiry.
* ``limits``: GitHub's size limits on check runs and statuses, and fitting bodies in.
* ``retry``: when to retry (5xx, network, rate limits) and how long to wait: pure.
* ``transport``: gidgethub's aiohttp adapter with those retries at its one I/O point.
* ``client``: ``GitHubClient``, the calls themselves, raising ``GitHubError``.
"""

from app.adapters.github.auth import AppAuth, make_app_jwt
from app.adapters.github.client import GitHubClient, Repo
from app.adapters.github.config import DEFAULT_API_URL, GitHubAppConfig, GitHubConfigError
from app.adapters.github.errors import GitHubError, GitHubRateLimited, GitHubUnavailable
from app.adapters.github.limits import split_check_run
from app.adapters.github.retry import RetryPolicy
from app.adapters.github.transport import ClientMetrics

__all__ = [
    "DEFAULT_API_URL",
    "AppAuth",
    "ClientMetrics",
    "GitHubAppConfig",
    "GitHubClient",
    "GitHubConfigError",
    "GitHubError",
    "GitHubRateLimited",
    "GitHubUnavailable",
    "Repo",
    "RetryPolicy",
    "make_app_jwt",
    "split_check_run",
]
