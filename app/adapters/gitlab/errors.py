"""The errors the GitLab adapter raises."""

from __future__ import annotations

from app.adapters.errors import ForgeError


class GitLabConfigError(ValueError):
    """A PLOYD_GITLAB_* variable is missing or unusable."""


class GitLabError(ForgeError):
    """GitLab refused a call, or could not be reached.

    ``status`` is the HTTP status (0: no answer: connection refused, reset, timed out),
    ``message`` GitLab's ``message``/``error`` text, ``retry_after`` the seconds GitLab
    asked to wait (429), if it said.
    """

    forge = "GitLab"

    def __init__(
        self, status: int, message: str, *, operation: str = "", retry_after: float | None = None
    ) -> None:
        self.operation = operation
        origin = f" [{operation}]" if operation else ""
        super().__init__(status, message, where=origin, retry_after=retry_after)
