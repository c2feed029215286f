"""GitLab adapter: PloyD's GitLab REST calls on python-gitlab, run off the event loop."""

from app.adapters.backoff import Backoff
from app.adapters.gitlab.client import GitLabClient, ProjectId
from app.adapters.gitlab.config import GitLabConfig
from app.adapters.gitlab.errors import GitLabConfigError, GitLabError
from app.adapters.gitlab.runner import CallStats

__all__ = [
    "Backoff",
    "CallStats",
    "GitLabClient",
    "GitLabConfig",
    "GitLabConfigError",
    "GitLabError",
    "ProjectId",
]
