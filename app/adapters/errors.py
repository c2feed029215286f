"""The error every forge adapter raises, so forge-neutral code can handle any of them."""

from __future__ import annotations


class ForgeError(Exception):
    """A forge refused a call, or could not be reached.

    ``status`` is the HTTP status (0: no answer), ``message`` the forge's own words,
    ``retry_after`` the seconds it asked to wait, if it did.
    """

    forge = "forge"

    def __init__(
        self, status: int, message: str, *, where: str = "", retry_after: float | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{self.forge} {status or 'unreachable'}: {message}{where}")

    @property
    def transient(self) -> bool:
        """Worth another try: no answer, a 5xx, or a rate limit."""
        return self.status == 0 or self.status == 429 or self.status >= 500
