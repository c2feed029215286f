"""`on.pull_request.types` and `on.pull_request.drafts` mean the same on both forges: each
value is delivered as GitHub sends it (a `pull_request` action) and as GitLab does (a
Merge Request Hook, its `action` and `changes`), and starts a pipeline exactly when the
config names it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from app.core.triggers import PR_TYPES
from app.engine.engine import Engine
from app.handlers.gitlab.events import mr_actions
from tests.handlers.world import CONFIG, GitHubWorld, GitLabWorld

DEFAULT = ("opened", "synchronize", "reopened")
LABEL = [{"id": 1, "title": "gpu"}]


def config(types: list[str] | None = None, *, drafts: bool | None = None) -> str:
    keys = [f"types: [{', '.join(types)}]"] if types is not None else []
    if drafts is not None:
        keys.append(f"drafts: {str(drafts).lower()}")
    on = "\n".join(f"    {k}" for k in keys) or "    {}"
    return CONFIG.replace("version: 1", f"version: 1\non:\n  pull_request:\n{on}")


def github_event(w: GitHubWorld, value: str, head: str, draft: bool = False) -> dict[str, Any]:
    return w.pull_request(7, head, action=value, draft=draft)


def gitlab_event(w: GitLabWorld, value: str, head: str, draft: bool = False) -> dict[str, Any]:
    """The Merge Request Hook GitLab sends for what GitHub calls ``value``."""
    changes: dict[str, Any] | None = {
        "ready_for_review": {"draft": {"previous": True, "current": False}},
        "converted_to_draft": {"draft": {"previous": False, "current": True}},
        "labeled": {"labels": {"previous": [], "current": LABEL}},
        "unlabeled": {"labels": {"previous": LABEL, "current": []}},
        "edited": {"title": {"previous": "Fix", "current": "Fix the loader"}},
    }.get(value)
    action = {"opened": "open", "reopened": "reopen", "closed": "close"}.get(value, "update")
    draft = draft or value == "converted_to_draft"
    return w.merge_request(7, head, action=action, changes=changes, draft=draft)


@dataclass
class Side:
    """One forge: its world, how it says a pull request type, and the hook's name."""

    w: GitHubWorld | GitLabWorld
    event: Callable[..., dict[str, Any]]
    hook: str

    async def deliver(self, value: str, head: str, draft: bool = False) -> None:
        await self.w.deliver(self.hook, self.event(self.w, value, head, draft))


@pytest.fixture(params=["github", "gitlab"])
def side(request: pytest.FixtureRequest, engine: Engine) -> Side:
    if request.param == "github":
        return Side(GitHubWorld(engine), github_event, "pull_request")
    return Side(GitLabWorld(engine), gitlab_event, "Merge Request Hook")


@pytest.mark.parametrize("value", PR_TYPES)
async def test_each_type_starts_a_pipeline_when_named_and_only_then(side: Side, value: str) -> None:
    w = side.w
    named = w.commit(1, config=config([value]))
    await side.deliver(value, named)
    (p,) = w.pipelines()
    assert (p.sha, p.pr_number, p.state) == (named, 7, "running")
    others = [t for t in PR_TYPES if t != value]
    unnamed = w.commit(2, config=config(others[:1]))
    await side.deliver(value, unnamed)
    assert [q.sha for q in w.pipelines()] == [named]  # a type the config does not name
    default = w.commit(3, config=CONFIG)
    await side.deliver(value, default)
    started = [q.sha for q in w.pipelines() if q.sha == default]
    assert started == ([default] if value in DEFAULT else [])


async def test_closed_cancels_what_runs_then_starts_when_named(side: Side) -> None:
    w = side.w
    head = w.commit(1, config=config(["opened", "closed"]))
    await side.deliver("opened", head)
    await side.deliver("closed", head)
    first, second = w.pipelines()
    assert (first.state, second.state) == ("cancelled", "running")


async def test_drafts_false_skips_a_draft_until_it_is_ready(side: Side) -> None:
    w = side.w
    head = w.commit(1, config=config(drafts=False))
    await side.deliver("opened", head, draft=True)
    await side.deliver("synchronize", head, draft=True)
    assert w.pipelines() == []
    await side.deliver("ready_for_review", head)  # not in types: still runs
    (p,) = w.pipelines()
    assert p.sha == head
    await side.deliver("converted_to_draft", head)
    assert len(w.pipelines()) == 1
    ready = w.commit(2, config=config(drafts=False))
    await side.deliver("synchronize", ready)  # not a draft: runs as usual
    assert [q.sha for q in w.pipelines()] == [head, ready]


async def test_drafts_run_by_default(side: Side) -> None:
    w = side.w
    head = w.commit(1, config=config())
    await side.deliver("opened", head, draft=True)
    assert [p.sha for p in w.pipelines()] == [head]


async def test_a_gitlab_update_that_no_type_names_asks_gitlab_nothing(gitlab: GitLabWorld) -> None:
    w = gitlab
    head = w.commit(1, config=config(list(PR_TYPES)))
    assignee = {"assignees": {"previous": [], "current": [{"username": "dev"}]}}
    update = w.merge_request(7, head, action="update", changes=assignee)
    await w.deliver("Merge Request Hook", update)
    await w.deliver("Merge Request Hook", w.merge_request(7, head, action="approved"))
    assert w.pipelines() == [] and w.fake.calls == []


@pytest.mark.parametrize(
    ("attrs", "changes", "actions"),
    [
        ({"action": "open"}, {}, ("opened",)),
        ({"action": "reopen"}, {}, ("reopened",)),
        ({"action": "close"}, {}, ("closed",)),
        ({"action": "merge"}, {}, ("closed",)),
        ({"action": "approved"}, {}, ()),
        ({"action": "update", "oldrev": "a" * 40}, {}, ("synchronize",)),
        ({"action": "update"}, {}, ()),
        # Marking a draft changes its title too ("Draft: ..."): not an edit.
        (
            {"action": "update"},
            {
                "draft": {"previous": False, "current": True},
                "title": {"previous": "Fix", "current": "Draft: Fix"},
            },
            ("converted_to_draft",),
        ),
        (
            {"action": "update"},
            {"work_in_progress": {"previous": True, "current": False}},
            ("ready_for_review",),
        ),
        (
            {"action": "update"},
            {"labels": {"previous": [{"title": "a"}], "current": [{"title": "b"}]}},
            ("labeled", "unlabeled"),
        ),
        ({"action": "update"}, {"description": {"previous": "", "current": "x"}}, ("edited",)),
        (
            {"action": "update", "oldrev": "a" * 40},
            {"title": {"previous": "a", "current": "b"}},
            ("synchronize", "edited"),
        ),
    ],
)
def test_gitlab_merge_request_events_as_pull_request_types(
    attrs: dict[str, Any], changes: dict[str, Any], actions: tuple[str, ...]
) -> None:
    assert mr_actions({"object_attributes": attrs, "changes": changes}) == actions
    assert set(actions) <= set(PR_TYPES)
