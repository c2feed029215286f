"""The planner's second half: does an event start a pipeline, and which jobs does it run?

Pure functions over an ``Event`` (what happened on the forge, or a request to the API)
and a loaded ``Config``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.core.config.model import Config, JobSpec, PullRequestTrigger, PushTrigger
from app.core.globs import all_files_ignored, any_file_matches, matches_any

# GitHub's pull_request actions that ``on.pull_request.types`` names (the schema's list);
# GitLab's merge request events are mapped onto the same words.
PR_TYPES = (
    "opened",
    "synchronize",
    "reopened",
    "closed",
    "ready_for_review",
    "labeled",
    "unlabeled",
    "edited",
    "converted_to_draft",
)


class EventKind(StrEnum):
    PUSH = "push"
    PULL_REQUEST = "pull_request"
    API = "api"  # started by a person through the API or the CLI: every non-manual job runs


@dataclass(frozen=True, slots=True)
class Event:
    """What happened. ``ref`` is a full ref (``refs/heads/main``, ``refs/tags/v1``);
    for pull requests ``base_branch`` is the target branch, ``action`` the PR action (in
    GitHub's words, ``on.pull_request.types``; ``more_actions`` when one forge event was
    several, as a GitLab update that adds a label and changes the title) and ``draft``
    whether the request is a draft. ``changed_files`` is None when unknown: path filters
    then let everything through."""

    kind: EventKind
    ref: str
    sha: str
    default_branch: str = "main"
    base_branch: str | None = None
    action: str | None = None
    changed_files: tuple[str, ...] | None = None
    deleted: bool = False
    more_actions: tuple[str, ...] = ()
    draft: bool = False

    @property
    def actions(self) -> tuple[str, ...]:
        """Every pull request action this event is (empty: none said, as an API run)."""
        return ((self.action,) if self.action is not None else ()) + self.more_actions

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def tag(self) -> str | None:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None


def _paths_pass(
    paths: Sequence[str] | None, paths_ignore: Sequence[str] | None, files: Sequence[str] | None
) -> bool:
    if files is None:
        return True
    if paths is not None and not any_file_matches(paths, files):
        return False
    return not (paths_ignore is not None and all_files_ignored(paths_ignore, files))


def _push_matches(t: PushTrigger, event: Event, implicit: bool) -> bool:
    if event.deleted:
        return False
    branch, tag = event.branch, event.tag
    if implicit:
        return branch == event.default_branch
    if tag is not None:
        if t.tags is None:
            # Only branch filters given: tags do not run (GitHub's rule).
            if t.branches is not None or t.branches_ignore is not None:
                return False
        elif not matches_any(t.tags, tag):
            return False
    elif branch is not None:
        if t.branches is not None and not matches_any(t.branches, branch):
            return False
        if t.branches_ignore is not None and matches_any(t.branches_ignore, branch):
            return False
        if t.branches is None and t.branches_ignore is None and t.tags is not None:
            return False  # only tag filters given: branches do not run
    else:
        return False
    return _paths_pass(t.paths, t.paths_ignore, event.changed_files)


def _pr_matches(t: PullRequestTrigger, event: Event) -> bool:
    if event.actions:
        wanted = set(t.types)
        if not t.drafts:  # a draft skipped until ready runs when it is
            wanted.add("ready_for_review")
        if not wanted & set(event.actions):
            return False
    if not t.drafts and event.draft:
        return False
    base = event.base_branch or ""
    if t.branches is not None and not matches_any(t.branches, base):
        return False
    return _paths_pass(t.paths, t.paths_ignore, event.changed_files)


def pipeline_matches(config: Config, event: Event) -> bool:
    """Does ``event`` start a pipeline of ``config``?"""
    if event.kind is EventKind.API:
        return True
    trig = config.triggers
    if event.kind is EventKind.PUSH:
        return trig.push is not None and _push_matches(trig.push, event, trig.implicit)
    return trig.pull_request is not None and _pr_matches(trig.pull_request, event)


def job_paths_skip_reason(job: JobSpec, event: Event) -> str | None:
    """Why the job's own ``paths`` / ``paths-ignore`` filter skips it, or None to run it."""
    if event.kind is EventKind.API or event.changed_files is None:
        return None
    if _paths_pass(job.paths, job.paths_ignore, event.changed_files):
        return None
    if job.paths is not None and not any_file_matches(job.paths, event.changed_files):
        return "no changed file matches paths: " + ", ".join(job.paths)
    return "every changed file matches paths-ignore"
