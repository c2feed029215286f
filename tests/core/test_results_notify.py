"""Notifications decided without I/O: events, channel choice by event and branch, the
operator's channel syntax, messages, signatures, the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest

from app.core.config.model import NotifyChannel
from app.core.results.notify import (
    MAX_TRIES,
    FailingJob,
    Message,
    cause_line,
    channel_from_json,
    channel_json,
    parse_channels,
    pipeline_events,
    retry_after_s,
    scrub,
    sign,
    slack_body,
    wants,
    webhook_body,
)


@pytest.mark.parametrize(
    ("state", "previous", "announced", "events"),
    [
        ("running", None, False, ["started"]),
        ("running", None, True, []),
        ("failed", "succeeded", True, ["failure"]),
        ("succeeded", "failed", True, ["success", "fixed"]),
        ("succeeded", "succeeded", True, ["success"]),
        ("succeeded", None, False, ["started", "success"]),
        ("cancelled", "failed", True, []),
    ],
)
def test_pipeline_events(
    state: str, previous: str | None, announced: bool, events: list[str]
) -> None:
    assert pipeline_events(state, previous, announced_start=announced) == events


def test_channels_choose_by_event_and_branch() -> None:
    c = NotifyChannel("slack", "S", on=frozenset({"failure"}), branches=("main", "release/*"))
    assert wants(c, "failure", "main") and wants(c, "failure", "release/1.2")
    assert not wants(c, "failure", "feature") and not wants(c, "success", "main")
    assert not wants(c, "failure", None)  # a tag's pipeline has no branch
    assert wants(NotifyChannel("slack", "S"), "fixed", None)  # default on: failure, fixed
    assert channel_from_json(channel_json(c)) == c


def test_the_operators_channels_parse_with_errors_naming_the_field() -> None:
    got = parse_channels(
        [
            {"slack": "SLACK", "on": ["budget", "failure"]},
            {"email": "ops@example.com", "branches": ["main"]},
            {"webhook": "https://x.example/h", "secret": "KEY"},
        ],
        "defaults.notify",
    )
    assert [c.kind for c in got] == ["slack", "email", "webhook"]
    assert got[0].on == frozenset({"budget", "failure"}) and got[2].secret == "KEY"
    for bad, why in [
        ("x", "expected a list"),
        ([{"slack": "S", "webhook": "https://x"}], "exactly one of"),
        ([{"slack": "https://hooks.slack.com/x"}], "defaults.notify[0].slack"),
        ([{"slack": "S", "on": ["always"]}], "'always' is not one of"),
        ([{"email": "nope"}], "defaults.notify[0].email"),
        ([{"slack": "S", "secret": "K"}], "defaults.notify[0].secret"),
        ([{"slack": "S", "to": 1}], "unknown key 'to'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(why)):
            parse_channels(bad, "defaults.notify")


def _message() -> Message:
    return Message(
        event="failure",
        repo="acme/models",
        pipeline_id=7,
        state="failed",
        ref="refs/pull/3/head",
        sha="1a2b3c4d5e",
        url="https://ployd.example/pipelines/7",
        pr_number=3,
        pr_url="https://github.com/acme/models/pull/3",
        failing=(FailingJob("train <gpu>", "failed", "step 'Train': exit code 1", "https://l/1"),),
    )


def test_messages_name_pipeline_failing_jobs_causes_and_links() -> None:
    m = _message()
    assert m.title == "PloyD: acme/models pipeline #7 failed (PR #3 @ 1a2b3c4)"
    text = m.text()
    assert "https://ployd.example/pipelines/7" in text and "pull/3" in text
    assert "- train <gpu> (failed): step 'Train': exit code 1 https://l/1" in text
    slack = slack_body(m)["text"]
    assert "<https://l/1|train &lt;gpu&gt;>: step 'Train': exit code 1" in slack
    assert Message.from_json(json.loads(webhook_body(m))) == m


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = webhook_body(_message())
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_retry_schedule_backs_off_then_gives_up() -> None:
    waits = [retry_after_s(n) for n in range(1, MAX_TRIES + 1)]
    assert waits[:-1] == [2.0, 4.0, 8.0, 16.0] and waits[-1] is None


def test_cause_line_and_scrub() -> None:
    assert cause_line("Test", None, "exit code 1") == "step 'Test': exit code 1"
    assert cause_line(None, None, None) == "failed"
    assert len(cause_line("s", "x" * 1000, None)) == 300
    assert scrub("url https://hooks/SECRET here", ["https://hooks/SECRET", "ab"]) == "url *** here"
