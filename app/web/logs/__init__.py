"""The log page, one click from the pull request: ``/runs/{job_id}?t=TOKEN``."""

from app.web.logs.routes import routes

__all__ = ["routes"]
