"""The real clients and the fakes both satisfy every forge port, method by method: same
names, same parameters (a client may take more, with defaults), coroutines. What the
handlers are tested against is then what they run against."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from app.adapters import ports
from app.adapters.github.client import GitHubClient
from app.adapters.gitlab.client import GitLabClient
from app.handlers.github import events as github_events
from app.handlers.github import slash as github_slash
from app.handlers.gitlab import events as gitlab_events
from app.handlers.gitlab import notes as gitlab_notes
from app.reporters import github as github_reporter
from app.reporters import gitlab as gitlab_reporter
from tests.handlers.fakes import FakeGitHub, FakeGitLab


def _ports(prefix: str) -> list[type]:
    return [
        cls
        for name, cls in vars(ports).items()
        if name.startswith(prefix) and inspect.isclass(cls) and getattr(cls, "_is_protocol", False)
    ]


def members(port: type) -> dict[str, Callable[..., Any]]:
    """The methods a Protocol asks for, its bases' included."""
    found: dict[str, Callable[..., Any]] = {}
    for cls in reversed(port.__mro__):
        if cls.__module__ in ("typing", "builtins"):
            continue
        for name, value in vars(cls).items():
            if inspect.isfunction(value) and not name.startswith("_"):
                found[name] = value
    return found


def _compatible(asked: Callable[..., Any], given: Callable[..., Any]) -> str | None:
    """Why ``given`` cannot stand for ``asked``, or None."""
    if not inspect.iscoroutinefunction(given):
        return "not a coroutine"
    want = list(inspect.signature(asked).parameters.values())
    have = list(inspect.signature(given).parameters.values())
    for i, p in enumerate(want):
        if p.kind is p.VAR_KEYWORD:
            if not any(q.kind is q.VAR_KEYWORD for q in have):
                return "takes no **keywords"
            continue
        if i >= len(have) or have[i].name != p.name or have[i].kind != p.kind:
            return f"parameter {i} is not {p.name!r} ({p.kind.description})"
        if p.default is not p.empty and have[i].default != p.default:
            return f"{p.name!r} defaults to {have[i].default!r}, not {p.default!r}"
    for q in have[len(want) :]:
        if q.default is q.empty and q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL):
            return f"{q.name!r} has no default"
    return None


CASES = [
    (port, impl)
    for prefix, impls in (
        ("GitHub", (GitHubClient, FakeGitHub)),
        ("GitLab", (GitLabClient, FakeGitLab)),
    )
    for port in _ports(prefix)
    for impl in impls
]


@pytest.mark.parametrize(
    ("port", "impl"), CASES, ids=[f"{p.__name__}-{i.__name__}" for p, i in CASES]
)
def test_implementations_satisfy_each_port(port: type, impl: type) -> None:
    assert members(port), port
    for name, asked in members(port).items():
        given = getattr(impl, name, None)
        assert given is not None, f"{impl.__name__} has no {name}"
        why = _compatible(asked, given)
        assert why is None, f"{impl.__name__}.{name}: {why}"


FEATURES = [
    (github_events.PullRequestForge, GitHubClient),
    (github_slash.CommentForge, GitHubClient),
    (github_reporter.ReporterForge, GitHubClient),
    (gitlab_events.MergeRequestForge, GitLabClient),
    (gitlab_notes.NoteForge, GitLabClient),
    (gitlab_reporter.ReporterForge, GitLabClient),
]


def _operations(client: type) -> set[str]:
    return {
        name
        for name, value in vars(client).items()
        if inspect.iscoroutinefunction(value) and not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("feature", "client"), FEATURES, ids=[f"{f.__module__}.{f.__name__}" for f, _ in FEATURES]
)
def test_each_feature_asks_for_less_than_the_client_offers(feature: type, client: type) -> None:
    asked = set(members(feature))
    assert asked and asked < _operations(client)
