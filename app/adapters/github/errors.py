"""The errors the GitHub adapter raises: one type, with the HTTP status and GitHub's message."""

from __future__ import annotations


class GitHubError(Exception):
    """GitHub answered with an error (or could not be reached).

    ``status`` is the HTTP status (0 when GitHub could not be reached), ``message`` GitHub's
    ``message`` field, ``retry_after`` the seconds GitHub asked to wait, if it did.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.method = method
        self.url = url
        self.retry_after = retry_after
        where = f" ({method} {url})" if method else ""
        super().__init__(f"GitHub {status or 'unreachable'}: {message}{where}")


class GitHubRateLimited(GitHubError):
    """GitHub's primary or secondary rate limit held beyond the retry budget."""


class GitHubUnavailable(GitHubError):
    """5xx or network failures outlasted the retry budget."""
