"""Trigger matching and path filters: the planner's second half, table-driven."""

from __future__ import annotations

import pytest

from app.core.config.model import (
    Config,
    JobSpec,
    PullRequestTrigger,
    PushTrigger,
    Step,
    Triggers,
)
from app.core.triggers import Event, EventKind, job_paths_skip_reason, pipeline_matches

JOBS = {"t": JobSpec(name="t", steps=(Step(run="true"),))}


def cfg(triggers: Triggers) -> Config:
    return Config(version=1, triggers=triggers, jobs=JOBS)


def push(ref: str, files: tuple[str, ...] | None = None, default: str = "main") -> Event:
    return Event(EventKind.PUSH, ref=ref, sha="0" * 40, default_branch=default, changed_files=files)


def pr(base: str, action: str = "opened", files: tuple[str, ...] | None = None) -> Event:
    return Event(
        EventKind.PULL_REQUEST,
        ref="refs/pull/1/head",
        sha="1" * 40,
        base_branch=base,
        action=action,
        changed_files=files,
    )


IMPLICIT = Triggers(push=PushTrigger(), pull_request=PullRequestTrigger(), implicit=True)
BRANCHES = Triggers(push=PushTrigger(branches=("main", "release/*")))
TAGS = Triggers(push=PushTrigger(tags=("v*",)))
IGNORE = Triggers(push=PushTrigger(branches_ignore=("wip/**",)))
PATHS = Triggers(
    push=PushTrigger(branches=("main",), paths_ignore=("docs/**", "*.md")),
    pull_request=PullRequestTrigger(branches=("main",), paths=("src/**",)),
)
PR_TYPES = Triggers(pull_request=PullRequestTrigger(types=("opened", "labeled")))


@pytest.mark.parametrize(
    ("triggers", "event", "runs"),
    [
        (IMPLICIT, push("refs/heads/main"), True),
        (IMPLICIT, push("refs/heads/feature"), False),
        (IMPLICIT, push("refs/heads/trunk", default="trunk"), True),
        (IMPLICIT, push("refs/tags/v1"), False),
        (IMPLICIT, pr("anything"), True),
        (IMPLICIT, pr("main", action="closed"), False),
        (BRANCHES, push("refs/heads/release/2.0"), True),
        (BRANCHES, push("refs/heads/release/2.0/x"), False),
        (BRANCHES, push("refs/heads/dev"), False),
        (BRANCHES, push("refs/tags/v1.0"), False),
        (BRANCHES, pr("main"), False),
        (TAGS, push("refs/tags/v1.0"), True),
        (TAGS, push("refs/tags/nightly"), False),
        (TAGS, push("refs/heads/main"), False),
        (IGNORE, push("refs/heads/wip/a/b"), False),
        (IGNORE, push("refs/heads/feature"), True),
        (PATHS, push("refs/heads/main", ("docs/a.md", "README.md")), False),
        (PATHS, push("refs/heads/main", ("docs/a.md", "src/x.py")), True),
        (PATHS, push("refs/heads/main", None), True),
        (PATHS, pr("main", files=("src/x.py",)), True),
        (PATHS, pr("main", files=("tests/x.py",)), False),
        (PATHS, pr("dev", files=("src/x.py",)), False),
        (PATHS, pr("main", action="synchronize", files=("src/x.py",)), True),
        (PR_TYPES, pr("main", action="labeled"), True),
        (PR_TYPES, pr("main", action="synchronize"), False),
    ],
)
def test_pipeline_matches(triggers: Triggers, event: Event, runs: bool) -> None:
    assert pipeline_matches(cfg(triggers), event) is runs


def test_api_event_always_runs() -> None:
    api = Event(EventKind.API, ref="refs/heads/x", sha="2" * 40)
    assert pipeline_matches(cfg(Triggers(push=PushTrigger(branches=("main",)))), api)


def test_deleted_branch_push_runs_nothing() -> None:
    ev = Event(EventKind.PUSH, ref="refs/heads/main", sha="0" * 40, deleted=True)
    assert not pipeline_matches(cfg(IMPLICIT), ev)


def test_job_level_paths() -> None:
    gpu = JobSpec(name="gpu", steps=(Step(run="true"),), paths=("model/**", "kernels/**"))
    docs = JobSpec(name="docs", steps=(Step(run="true"),), paths_ignore=("src/**",))
    touched_model = push("refs/heads/main", ("model/layers.py",))
    touched_readme = push("refs/heads/main", ("README.md",))
    assert job_paths_skip_reason(gpu, touched_model) is None
    reason = job_paths_skip_reason(gpu, touched_readme)
    assert reason == "no changed file matches paths: model/**, kernels/**"
    assert job_paths_skip_reason(gpu, push("refs/heads/main", None)) is None
    assert job_paths_skip_reason(docs, push("refs/heads/main", ("src/a.py",))) is not None
    assert job_paths_skip_reason(docs, push("refs/heads/main", ("src/a.py", "doc.md"))) is None


DRAFTS_OFF = Triggers(pull_request=PullRequestTrigger(drafts=False))


def draft_pr(action: str, draft: bool, more: tuple[str, ...] = ()) -> Event:
    return Event(
        EventKind.PULL_REQUEST, ref="refs/pull/1/head", sha="1" * 40, base_branch="main",
        action=action, more_actions=more, draft=draft,
    )


@pytest.mark.parametrize(
    ("triggers", "event", "runs"),
    [
        (DRAFTS_OFF, draft_pr("opened", True), False),
        (DRAFTS_OFF, draft_pr("synchronize", True), False),
        (DRAFTS_OFF, draft_pr("ready_for_review", False), True),  # its first run
        (DRAFTS_OFF, draft_pr("opened", False), True),
        (DRAFTS_OFF, draft_pr("converted_to_draft", True), False),
        (IMPLICIT, draft_pr("opened", True), True),  # drafts run by default
        (IMPLICIT, draft_pr("ready_for_review", False), False),  # not a default type
        # One GitLab update can be several actions: any named one starts it.
        (PR_TYPES, draft_pr("edited", False, ("labeled",)), True),
        (PR_TYPES, draft_pr("edited", False, ("unlabeled",)), False),
    ],
)
def test_drafts_and_several_actions(triggers: Triggers, event: Event, runs: bool) -> None:
    assert pipeline_matches(cfg(triggers), event) is runs


def test_the_schema_lists_exactly_the_types_the_forges_deliver() -> None:
    from app.core.config.schema import load_schema
    from app.core.triggers import PR_TYPES as DELIVERED

    on = next(b for b in load_schema()["properties"]["on"]["anyOf"] if b.get("type") == "object")
    pr = on["properties"]["pull_request"]["properties"]
    assert tuple(pr["types"]["items"]["enum"]) == DELIVERED
    assert pr["drafts"]["type"] == "boolean"
