"""The GitHub App manifest: what `ployd github-manifest` prints to register PloyD.

Least privilege: PloyD reads code and pull requests, writes check runs and PR comments
(and reactions on them), and reads who may write to the repository. Nothing else.
"""

from __future__ import annotations

from typing import Any

# Each permission, and why PloyD needs it.
PERMISSIONS: dict[str, tuple[str, str]] = {
    "checks": ("write", "one check run per job"),
    "contents": ("read", "read .ployd.yml, compare commits, let agents fetch the code"),
    "pull_requests": ("write", "read pull requests and their files; comment and react"),
    "metadata": ("read", "mandatory; also collaborators' permissions for commands"),
    "merge_queues": ("read", "run the checks a merge queue asks for"),
}

EVENTS = ("check_run", "check_suite", "issue_comment", "merge_group", "pull_request", "push")


def manifest(public_url: str, name: str = "PloyD", public: bool = False) -> dict[str, Any]:
    base = public_url.rstrip("/")
    return {
        "name": name,
        "url": base,
        "description": "CI for ML teams: the right machine for each job, results on the PR.",
        "hook_attributes": {"url": f"{base}/webhooks/github", "active": True},
        "redirect_url": base,
        "public": public,
        "default_permissions": {k: v[0] for k, v in PERMISSIONS.items()},
        "default_events": list(EVENTS),
    }
