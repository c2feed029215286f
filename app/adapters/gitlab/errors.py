"""The errors the GitLab adapter raises."""

from __future__ import annotations


class GitLabConfigError(ValueError):
    """A PLOYD_GITLAB_* variable is missing or unusable."""


class GitLabError(Exception):
    """GitLab refused a call, or could not be reached.

    ``status`` is the HTTP status (0: no answer: connection refused, reset, timed out),
    ``message`` GitLab's ``message``/``error`` text, ``retry_after`` the seconds GitLab
    asked to wait (429), if it said.
    """

    def __init__(
        self, status: int, message: str, *, operation: str = "", retry_after: float | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.operation = operation
        self.retry_after = retry_after
        origin = f" [{operation}]" if operation else ""
        super().__init__(f"GitLab {status or 'unreachable'}: {message}{origin}")

    @property
    def transient(self) -> bool:
        """Worth another try: no answer, a 5xx, or a rate limit."""
        return self.status == 0 or self.status == 429 or self.status >= 500
