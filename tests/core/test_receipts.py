"""The receipt schemas: GitHub's and GitLab's real payloads pass (no false refusals);
each kind of problem is named by its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from app.core.receipts import github_problem, gitlab_problem
from tests.fakes import github as gh_fake
from tests.fakes import gitlab_webhooks as gl_fake

GITHUB_FIXTURES = sorted(
    (Path(gh_fake.__file__).parents[1] / "fixtures/github/webhooks").glob("*.json")
)
GITLAB_EVENTS = {
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "merge_request.open": "Merge Request Hook",
    "note.merge_request": "Note Hook",
}


@pytest.mark.parametrize("path", GITHUB_FIXTURES, ids=lambda p: p.stem)
def test_every_recorded_github_delivery_passes(path: Path) -> None:
    event = path.stem.split(".")[0]
    payload = gh_fake.load_fixture(path.name)
    payload.setdefault("installation", {"id": 1, "account": {"login": "octo"}})
    assert github_problem(event, payload) is None


@pytest.mark.parametrize("name", sorted(GITLAB_EVENTS))
def test_every_documented_gitlab_delivery_passes(name: str) -> None:
    assert gitlab_problem(GITLAB_EVENTS[name], gl_fake.load_fixture(name)) is None


def _pr() -> dict[str, Any]:
    p = copy.deepcopy(gh_fake.load_fixture("pull_request.opened.1"))
    p["installation"] = {"id": 7}
    return p


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("repository"), "field 'repository' is required"),
        (lambda p: p.update(number=True), "field 'number' must be an integer, not a boolean"),
        (lambda p: p.update(number=-1), "field 'number' must be between 0 and"),
        (
            lambda p: p["pull_request"].update(user=None),
            "'pull_request.user' must be an object, not null",
        ),
        (
            lambda p: p["pull_request"]["head"].update(sha=["a"]),
            "'pull_request.head.sha' must be a string, not a list",
        ),
        (
            lambda p: p["pull_request"]["base"].update(ref=""),
            "'pull_request.base.ref' must not be empty",
        ),
        (
            lambda p: p["pull_request"]["head"].update(repo="x"),
            "'pull_request.head.repo' must be an object",
        ),
        (lambda p: p["repository"].update(full_name="a/"), "must be 'owner/name'"),
        (lambda p: p["repository"].update(default_branch="ma\x00in"), "must not contain a NUL"),
        (lambda p: p.update(sender=[]), "'sender' must be an object, not a list"),
    ],
)
def test_problems_name_their_field(change: Any, message: str) -> None:
    p = _pr()
    assert github_problem("pull_request", p) is None
    change(p)
    problem = github_problem("pull_request", p)
    assert problem is not None and message in problem


def test_head_repo_null_is_a_deleted_fork_not_an_error() -> None:
    p = _pr()
    p["pull_request"]["head"]["repo"] = None
    assert github_problem("pull_request", p) is None


def test_events_without_a_schema_pass_untouched() -> None:
    assert github_problem("star", {"anything": object()}) is None
    assert gitlab_problem("Issue Hook", {}) is None
