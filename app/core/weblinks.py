"""The web UI's URL scheme, and links to the forge's pages of a pipeline's commit and
pull/merge request. Pure: strings in, strings out.

    /pipelines                 the pipelines list (operators)
    /pipelines/{id}            a pipeline: its jobs as a graph (operators)
    /runs/{job_id}[?t=TOKEN]   a job: its log (operators, or anyone with the signed link)

Other parts (the JSON API's ``web_url``, the CLI, ``ployd serve``'s log lines) build
their links here so that they stay the same everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from app.core.links import sign_job

PIPELINES = "/pipelines"


def pipeline_path(pipeline_id: int) -> str:
    return f"{PIPELINES}/{pipeline_id}"


def job_path(job_id: int, token: str = "") -> str:
    return f"/runs/{job_id}" + (f"?t={quote(token, safe='')}" if token else "")


def absolute(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def signed_job_url(
    base_url: str, key: bytes, job_id: int, tenant_id: int, *, now: float | None = None
) -> str:
    """The job's signed link, ``BASE/runs/{id}?t=TOKEN``: its log page for anyone who
    holds it (the API's ``signed_url``, `ployd open`, forge reports, notifications).
    ``now``: when the token's lifetime starts (a report's link stays the same on every
    update when it starts at the job's creation); default the present."""
    return absolute(base_url, job_path(job_id, sign_job(key, job_id, tenant_id, now=now)))


@dataclass(frozen=True, slots=True)
class ForgeLinks:
    repo: str | None = None
    commit: str | None = None
    change: str | None = None  # the pull request or merge request
    change_label: str = ""  # "PR #12" or "MR !12"


_CRED = re.compile(r"^[^@/]+@")


def forge_links(forge: str, clone_url: str, sha: str, pr_number: int | None) -> ForgeLinks:
    """The repository's, the commit's and the PR's/MR's pages, from an http(s) clone URL
    (credentials and ``.git`` removed); nothing for a local repository."""
    parts = urlsplit(clone_url)
    if forge not in ("github", "gitlab") or parts.scheme not in ("http", "https"):
        return ForgeLinks()
    host = _CRED.sub("", parts.netloc)
    path = parts.path.rstrip("/")
    path = path[: -len(".git")] if path.endswith(".git") else path
    if not host or not path:
        return ForgeLinks()
    repo = f"{parts.scheme}://{host}{path}"
    dash = "/-" if forge == "gitlab" else ""
    commit = f"{repo}{dash}/commit/{sha}" if sha else None
    change, label = None, ""
    if pr_number is not None:
        if forge == "gitlab":
            change, label = f"{repo}/-/merge_requests/{pr_number}", f"MR !{pr_number}"
        else:
            change, label = f"{repo}/pull/{pr_number}", f"PR #{pr_number}"
    return ForgeLinks(repo, commit, change, label)
