"""The errors the GitHub adapter raises: one type, with the HTTP status and GitHub's message."""

from __future__ import annotations

from app.adapters.errors import ForgeError


class GitHubError(ForgeError):
    """GitHub answered with an error (or could not be reached).

    ``status`` is the HTTP status (0 when GitHub could not be reached), ``message`` GitHub's
    ``message`` field, ``retry_after`` the seconds GitHub asked to wait, if it did.
    """

    forge = "GitHub"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.url = url
        where = f" ({method} {url})" if method else ""
        super().__init__(status, message, where=where, retry_after=retry_after)


class GitHubRateLimited(GitHubError):
    """GitHub's primary or secondary rate limit held beyond the retry budget."""


class GitHubUnavailable(GitHubError):
    """5xx or network failures outlasted the retry budget."""
