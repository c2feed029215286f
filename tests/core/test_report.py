"""Report payload builders: check runs (every job state, actions, limits, log text), the
config check run and its annotation batches, the summary comment, GitLab statuses, and
the next bigger machine. Every check run body is validated against GitHub's OpenAPI
description (tests/contracts), through the shared fake's validator."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.core.config.errors import ConfigError
from app.core.hardware import Catalog
from app.core.report import (
    MARKER,
    JobView,
    PipelineView,
    action,
    actions_for,
    annotation_batches,
    bigger_hardware,
    check_name,
    check_run,
    config_error_report,
    failure_text,
    gpu_ladder,
    status_for,
    summary_comment,
)
from app.core.report.markdown import (
    NONE,
    code_span,
    escape_md,
    fence_for,
    human_duration,
    human_money,
    strip_ansi,
)
from app.core.slash import parse_comment
from app.core.states import JobState, PipelineState
from tests.fakes.github_openapi import load_spec, schema_errors

CAT = Catalog.default()
J = JobState
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
SHA = "0123456789abcdef0123456789abcdef01234567"
LOG_URL = "https://ployd.example.com/logs/7?sig=abc"

BASE = JobView(
    job_id=7,
    name="unit",
    state=J.SUCCEEDED,
    hardware=("l4:1",),
    instance_type="g6.xlarge",
    spot=True,
    queued_at=T0,
    started_at=T0 + timedelta(seconds=42),
    finished_at=T0 + timedelta(seconds=42 + 185),
    cost_usd=0.1234,
    log_url=LOG_URL,
)
FAILED = replace(
    BASE,
    state=J.FAILED,
    exit_code=1,
    failed_step="pytest -q tests/unit",
    log_tail="collected 3 items\n\x1b[31mFAILED\x1b[0m tests/test_x.py::test_y\n",
    first_error_line=120,
)


def view(state: JobState, **kw: Any) -> JobView:
    base = FAILED if state in (J.FAILED, J.TIMED_OUT, J.INTERRUPTED) else BASE
    if not state.final:
        kw.setdefault("finished_at", None)
        if state is not J.RUNNING:
            kw.setdefault("started_at", None)
            kw.setdefault("instance_type", None)
            kw.setdefault("spot", None)
    return replace(base, state=state, **kw)


def assert_valid(body: dict[str, Any]) -> None:
    """The body is what GitHub accepts for create (POST, with head_sha) and update."""
    spec = load_spec()
    post = spec.by_key("POST", "/repos/{owner}/{repo}/check-runs").body_schema()
    patch = spec.by_key("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}").body_schema()
    assert schema_errors(post, {"head_sha": SHA, **body}) == []
    assert schema_errors(patch, body) == []
    out = body.get("output", {})
    for key in ("summary", "text"):
        assert len(out.get(key, "")) <= 65535
    assert len(out.get("annotations", [])) <= 50
    assert len(body.get("actions", [])) <= 3
    for a in body.get("actions", []):
        assert len(a["label"]) <= 20 and len(a["description"]) <= 40
        assert len(a["identifier"]) <= 20


# -- check runs: every state ---------------------------------------------------------------


@pytest.mark.parametrize(("v", "status", "conclusion", "title"), [
    (view(J.SUCCEEDED), "completed", "success", "succeeded in 3m 05s on l4:1"),
    (view(J.FAILED), "completed", "failure",
     "failed at pytest -q tests/unit (exit code 1)"),
    (view(J.FAILED, allow_failure=True), "completed", "neutral", "failed, allowed to fail"),
    (view(J.CANCELLED, end_reason="cancelled by @alice"), "completed", "cancelled",
     "cancelled: cancelled by @alice"),
    (view(J.TIMED_OUT), "completed", "timed_out", "timed out after 3m 05s"),
    (view(J.TIMED_OUT, allow_failure=True), "completed", "neutral", "allowed to fail"),
    (view(J.SKIPPED, skip_reason="a job it needs failed: unit"), "completed", "skipped",
     "skipped: a job it needs failed: unit"),
    (view(J.INTERRUPTED, end_reason="spot interruption"), "completed", "failure",
     "interrupted: the machine was lost (spot interruption)"),
    (view(J.INTERRUPTED, allow_failure=True), "completed", "neutral", "machine was lost"),
    (view(J.MANUAL, manual=True), "completed", "neutral",
     "manual job: comment /ployd run unit"),
    (view(J.WAITING), "queued", None, "waiting for the jobs it needs"),
    (view(J.QUEUED), "queued", None, "queued for l4:1"),
    (view(J.QUEUED, waiting_reason="waiting for capacity: tried g6.xlarge (us-east-1a)"),
     "queued", None, "waiting for capacity: tried g6.xlarge (us-east-1a)"),
    (view(J.DISPATCHING), "queued", None, "starting a machine for l4:1"),
    (view(J.RUNNING), "in_progress", None, "running on g6.xlarge, spot"),
    (view(J.QUEUED, fork_gated=True), "completed", "action_required",
     "waiting for a maintainer's /ployd ok-to-test"),
    (view(J.WAITING, fork_gated=True), "completed", "action_required", "ok-to-test"),
])
def test_check_run_status_conclusion_title(v: JobView, status: str, conclusion: str | None,
                                           title: str) -> None:
    body = check_run(v, now=NOW)
    assert_valid(body)
    assert body["name"] == "ployd / unit"
    assert body["external_id"] == "7"
    assert body["status"] == status
    assert body.get("conclusion") == conclusion
    assert title in body["output"]["title"]


def test_every_job_state_has_a_check_run() -> None:
    for state in JobState:
        body = check_run(view(state), now=NOW)
        assert_valid(body)
        assert (body["status"] == "completed") == (state.final or state is J.MANUAL)
        assert ("conclusion" in body) == (body["status"] == "completed")


def test_timestamps_and_details_url() -> None:
    ok = check_run(BASE, now=NOW)
    assert ok["started_at"] == "2024-05-01T12:00:42Z"
    assert ok["completed_at"] == "2024-05-01T12:03:47Z"
    assert ok["details_url"] == LOG_URL  # no anchor on success
    bad = check_run(FAILED, now=NOW)
    assert bad["details_url"] == LOG_URL + "#L120"
    other_tz = replace(BASE, started_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(
        timedelta(hours=2))))
    assert check_run(other_tz, now=NOW)["started_at"] == "2024-05-01T12:00:00Z"
    queued = check_run(view(J.QUEUED, log_url=""), now=NOW)
    assert "details_url" not in queued and "started_at" not in queued
    assert "completed_at" not in check_run(view(J.RUNNING), now=NOW)


def test_summary_says_hardware_machine_spot_times_and_cost() -> None:
    s = check_run(BASE, now=NOW)["output"]["summary"]
    assert "| l4:1 | g6.xlarge, spot | 42s | 3m 05s | $0.12 |" in s
    on_demand = check_run(replace(BASE, spot=False, cost_usd=1234.5), now=NOW)
    assert "g6.xlarge, on-demand" in on_demand["output"]["summary"]
    assert "$1,234.50" in on_demand["output"]["summary"]
    running = check_run(view(J.RUNNING), now=NOW)["output"]["summary"]
    assert "9m 18s so far" in running
    retried = check_run(replace(BASE, attempt=2, attempt_reason="retried after a spot "
                                                                 "interruption"), now=NOW)
    assert "Attempt 2: retried after a spot interruption" in retried["output"]["summary"]


def test_waiting_summary_says_why_and_since_when() -> None:
    reason = "waiting for capacity: tried p5.4xlarge (us-east-1a), p5.4xlarge (us-east-1b)"
    v = view(J.QUEUED, waiting_reason=reason, waiting_since=T0 + timedelta(minutes=2))
    s = check_run(v, now=NOW)["output"]["summary"]
    assert "**Waiting:** waiting for capacity: tried p5.4xlarge \\(us-east-1a\\)" in s
    assert "since 2024-05-01 12:02 UTC, 8m 00s ago" in s
    assert "| 10m 00s |" in s  # queue time so far
    gated = check_run(view(J.QUEUED, fork_gated=True), now=NOW)["output"]["summary"]
    assert "`/ployd ok-to-test`" in gated
    manual = check_run(view(J.MANUAL, manual=True), now=NOW)["output"]["summary"]
    assert "`/ployd run unit`" in manual


def test_interrupted_says_the_machine_was_lost() -> None:
    body = check_run(view(J.INTERRUPTED, end_reason="spot interruption"), now=NOW)
    assert "The machine was lost" in body["output"]["summary"]
    assert body["conclusion"] == "failure"


# -- failure text ------------------------------------------------------------------------------


def test_failure_text_holds_the_step_and_the_log_without_ansi() -> None:
    text = check_run(FAILED, now=NOW)["output"]["text"]
    assert text.startswith("### Failed step: `pytest -q tests/unit` (exit code 1)")
    assert "```text\ncollected 3 items\nFAILED tests/test_x.py::test_y\n```" in text
    assert "\x1b" not in text
    assert text.endswith(f"[Full log]({LOG_URL}#L120)")
    assert "text" not in check_run(BASE, now=NOW)["output"]


def test_failure_text_trims_a_200kb_log_from_the_top_and_keeps_its_fence_closed() -> None:
    lines = [f"\x1b[1;31mline {i:06d}\x1b[0m " + "x" * 80 for i in range(2400)]
    lines[1200] = "```"  # a fence inside the log
    lines[2390] = "````python"
    tail = "\n".join(lines) + "\nERROR: the very last line"
    assert len(tail) > 200_000
    v = replace(FAILED, log_tail=tail)
    body = check_run(v, now=NOW)
    assert_valid(body)
    text = body["output"]["text"]
    assert len(text) <= 65535
    assert len(text) > 60_000  # it uses the room it has
    assert "\x1b" not in text
    # the fence is longer than any run of backticks in the log, and closes at the end
    assert "\n`````text\n" in text
    fence_lines = [ln for ln in text.split("\n") if ln.startswith("`````")]
    assert fence_lines == ["`````text", "`````"]
    assert "ERROR: the very last line\n`````" in text
    assert re.search(r"… \d+ earlier lines not shown\n", text)
    assert "line 000000" not in text and "line 002399" in text


def test_failure_text_one_enormous_line() -> None:
    v = replace(FAILED, log_tail="y" * 300_000 + "END")
    text = failure_text(v)
    assert len(text) <= 65535 and "END\n```" in text


def test_timed_out_text_says_so() -> None:
    text = check_run(view(J.TIMED_OUT), now=NOW)["output"]["text"]
    assert text.startswith("### Timed out in step: `pytest -q tests/unit`")


def test_failure_text_without_log() -> None:
    v = replace(FAILED, log_tail="\x1b[0m\n")
    assert "No log output." in failure_text(v)


@pytest.mark.parametrize(("raw", "clean"), [
    ("\x1b[31mred\x1b[0m", "red"),
    ("\x1b[1;32;40mbold\x1b[m", "bold"),
    ("\x1b[2K\x1b[1Gdone", "done"),
    ("\x1b]0;title\x07text", "text"),
    ("\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\", "link"),
    ("10%\r50%\r100%\nnext", "100%\nnext"),
    ("crlf\r\nline", "crlf\nline"),
    ("bell\x07 and \x00nul", "bell and nul"),
    ("tabs\tstay", "tabs\tstay"),
])
def test_strip_ansi(raw: str, clean: str) -> None:
    assert strip_ansi(raw) == clean


# -- actions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("v", "bigger", "identifiers"), [
    (view(J.SUCCEEDED), "a10g:1", []),
    (view(J.FAILED), None, ["retry"]),
    (view(J.FAILED), "a10g:1", ["retry", "retry-on:a10g:1"]),
    (view(J.FAILED, allow_failure=True), None, ["retry"]),
    (view(J.TIMED_OUT), "a100-80gb:8", ["retry", "retry-on:a100-80gb:8"]),
    (view(J.INTERRUPTED), None, ["retry"]),
    (view(J.CANCELLED), None, ["retry"]),
    (view(J.SKIPPED), "a10g:1", []),  # retry what it needed instead
    (view(J.MANUAL, manual=True), None, ["run"]),
    (view(J.RUNNING), None, []),
    (view(J.QUEUED), None, []),
    (view(J.QUEUED, fork_gated=True), None, []),
    (view(J.FAILED), "a-very-long-class-name:8", ["retry"]),  # cannot be identified
])
def test_actions(v: JobView, bigger: str | None, identifiers: list[str]) -> None:
    body = check_run(v, now=NOW, bigger=bigger)
    assert_valid(body)
    assert [a["identifier"] for a in body.get("actions", [])] == identifiers


def test_action_labels() -> None:
    (retry, bigger) = actions_for(view(J.FAILED), "a100-80gb:8")
    assert retry["label"] == "Retry"
    assert bigger["label"] == "Retry on a100-80gb:8"
    assert len(bigger["label"]) == 20
    assert bigger["description"] == "Run again on a100-80gb:8"
    assert [a["identifier"] for a in actions_for(view(J.FAILED), "xyzw-12345:16")] == ["retry"]


def test_action_limits_are_enforced() -> None:
    a = action("A label much longer than twenty", "d" * 100, "ok")
    assert len(a["label"]) == 20 and a["label"].endswith("…")
    assert len(a["description"]) == 40
    with pytest.raises(ValueError):
        action("Retry", "x", "i" * 21)
    with pytest.raises(ValueError):
        action("Retry", "x", "")


def test_check_name_truncation_keeps_names_apart() -> None:
    long_a = "gpu-tests (" + ", ".join(f"k{i}=v" for i in range(40)) + ", last=a)"
    long_b = long_a.replace("last=a", "last=b")
    a, b = check_name(long_a), check_name(long_b)
    assert a != b and len(a) <= 100 and len(b) <= 100 and a.startswith("ployd / gpu-tests (")
    assert check_name("unit") == "ployd / unit"
    assert check_name("a\nb") == "ployd / a b"


# -- bigger hardware ----------------------------------------------------------------------------


def test_ladder_from_the_catalog() -> None:
    assert gpu_ladder(CAT) == ("t4", "l4", "a10g", "l40s", "a100", "a100-80gb", "h100",
                               "h200", "b200")


@pytest.mark.parametrize(("spec", "bigger"), [
    ("t4", "l4:1"),
    ("t4:1", "l4:1"),
    ("l4", "a10g:1"),
    ("l4:4", "a10g:4"),
    ("a10g:8", "l40s:8"),
    ("l40s:1", "a100:8"),  # a100 machines have 8 GPUs: the smallest offered count above
    ("l40s:8", "a100:8"),
    ("a100:8", "a100-80gb:8"),
    ("a100-80gb:8", "h100:8"),
    ("h100", "h200:8"),
    ("h200:8", "b200:8"),
    ("b200:8", None),  # the top
    ("t4:8", "l4:8"),
    ("cpu", "cpu:4"),
    ("cpu:8", "cpu:16"),
    ("cpu:96", "cpu:192"),
    ("cpu:150", "cpu:192"),  # capped at the largest machine
    ("cpu:192", None),
    ("trainium", "trainium:16"),
    ("inferentia", "inferentia:6"),
    ("inferentia:12", None),
    ("tpu", None),
    ("not a spec", None),
])
def test_bigger_hardware(spec: str, bigger: str | None) -> None:
    assert bigger_hardware(spec, CAT) == bigger


def test_bigger_hardware_skips_classes_not_in_the_catalog() -> None:
    no_l4 = Catalog.from_data({"remove": [t.name for t in CAT.types_of("l4")]}, base=CAT)
    assert "l4" not in gpu_ladder(no_l4)
    assert bigger_hardware("t4", no_l4) == "a10g:1"
    extra = Catalog.from_data({
        "classes": {"rtx6000": {"kind": "gpu", "tier": "inference"}},
        "instance_types": [{"name": "g7.xlarge", "class": "rtx6000", "accelerators": 1,
                            "accelerator_memory_gb": 96, "vcpus": 8, "memory_gb": 64,
                            "price_usd_hour": 3.0}],
    }, base=CAT)
    assert bigger_hardware("l40s:1", extra) == "rtx6000:1"
    assert bigger_hardware("rtx6000", extra) == "a100:8"


# -- the config check run --------------------------------------------------------------------


def errors(n: int) -> list[ConfigError]:
    return [ConfigError(".ployd.yml", i + 1, 3, f"problem {i + 1}") for i in range(n)]


def test_config_error_report() -> None:
    errs = [ConfigError(".ployd.yml", 4, 7, "unknown key 'step' (did you mean 'steps'?)"),
            ConfigError(".ployd.yml", 0, 0, "cannot read the file")]
    body = config_error_report(errs, SHA)
    assert_valid(body)
    assert body["name"] == "ployd / config" and body["head_sha"] == SHA
    assert (body["status"], body["conclusion"]) == ("completed", "failure")
    assert body["output"]["title"] == "2 errors in .ployd.yml"
    summary = body["output"]["summary"]
    assert ".ployd.yml:4:7: unknown key 'step' (did you mean 'steps'?)" in summary
    assert ".ployd.yml:0:0: cannot read the file" in summary
    first, second = body["output"]["annotations"]
    assert first == {"path": ".ployd.yml", "start_line": 4, "end_line": 4, "start_column": 7,
                     "end_column": 7, "annotation_level": "failure",
                     "message": "unknown key 'step' (did you mean 'steps'?)",
                     "title": ".ployd.yml:4:7"}
    assert second["start_line"] == 1 and "start_column" not in second
    assert config_error_report(errs[:1], SHA)["output"]["title"] == "1 error in .ployd.yml"


def test_annotations_are_batched_by_50() -> None:
    errs = errors(120)
    body = config_error_report(errs, SHA)
    assert_valid(body)
    assert len(body["output"]["annotations"]) == 50
    batches = annotation_batches(errs)
    assert [len(b) for b in batches] == [50, 50, 20]
    assert batches[0] == body["output"]["annotations"]
    assert [a["message"] for b in batches for a in b] == [e.message for e in errs]
    assert body["output"]["summary"].count("problem ") == 120  # the summary lists every one
    assert [len(b) for b in annotation_batches(errors(50))] == [50]
    assert annotation_batches([]) == []


def test_config_summary_fits_with_huge_errors() -> None:
    errs = [ConfigError(".ployd.yml", i, 1, "m" * 1000) for i in range(1, 200)]
    body = config_error_report(errs, SHA)
    assert_valid(body)
    assert "… and " in body["output"]["summary"]


def test_config_report_without_errors() -> None:
    body = config_error_report([], SHA)
    assert_valid(body)
    assert body["conclusion"] == "success"


# -- the summary comment ----------------------------------------------------------------------

PIPE = PipelineView(id=42, state=PipelineState.FAILED, sha=SHA, ref="refs/pull/5/head",
                    trigger="pull_request")
CHILD = "gpu-tests (python=3.11, hardware=l4)"


def test_summary_comment() -> None:
    jobs = [
        BASE,
        replace(FAILED, job_id=8, name=CHILD, hardware=("l4:1",)),
        view(J.FAILED, job_id=9, name="flaky", allow_failure=True, log_url=""),
        view(J.SKIPPED, job_id=10, name="docs"),
    ]
    text = summary_comment(PIPE, jobs, catalog=CAT)
    assert text.startswith(MARKER + "\n")
    assert "### ❌ PloyD pipeline #42 failed · `0123456`" in text
    assert "| | job | state | hardware | duration | log |" in text
    assert ("| ✅ | unit | succeeded | l4:1 · g6.xlarge (spot) | 3m 05s "
            f"| [log]({LOG_URL}) |") in text
    assert "| ❌ | gpu-tests \\(python=3.11, hardware=l4\\) | failed |" in text
    assert "| ⚠️ | flaky | failed, allowed |" in text and f"| {NONE} |" in text
    assert "| ⏭️ | docs | skipped |" in text
    assert "`/ployd retry`" in text
    assert "`/ployd retry gpu-tests on a10g:1`" in text
    assert "`/ployd help`" in text
    assert parse_comment(text) == []  # PloyD's own comment never reads as a command


def test_summary_comment_escapes_job_names_and_urls() -> None:
    evil = replace(FAILED, name="a|b *c* [x](y) <b>`d`</b>",
                   log_url="https://x/log?a=1|2&b=(3)")
    text = summary_comment(PIPE, [evil])
    row = next(ln for ln in text.splitlines() if "a\\|b" in ln)
    assert "a\\|b \\*c\\* \\[x\\]\\(y\\) \\<b\\>\\`d\\`\\</b\\>" in row
    assert "[log](https://x/log?a=1%7C2&b=%283%29)" in row
    assert row.count(" | ") + row.count("| ") >= 6
    assert re.sub(r"\\\|", "", row).count("|") == 7  # exactly the table's own pipes
    assert "`/ployd retry JOB on HARDWARE`" in text  # no catalog: a placeholder


def test_summary_comment_while_running_and_waiting() -> None:
    pipe = replace(PIPE, state=PipelineState.RUNNING)
    jobs = [
        view(J.RUNNING, name="unit"),
        view(J.QUEUED, name="train", queued_at=T0, waiting_since=T0,
             waiting_reason="waiting for capacity: tried p5.48xlarge (us-east-1a)"),
    ]
    text = summary_comment(pipe, jobs, now=NOW, marker="<!-- custom -->")
    assert text.startswith("<!-- custom -->\n")
    assert "### 🔄 PloyD pipeline #42 running" in text
    assert "| 🔄 | unit | running |" in text and "9m 18s so far" in text
    assert "| ⏳ | train | queued |" in text and "queued 10m 00s" in text
    assert ("- ⏳ train: waiting for capacity: tried p5.48xlarge \\(us-east-1a\\) "
            "(since 2024-05-01 12:00 UTC)") in text
    assert "/ployd retry`" not in text  # nothing failed: only help
    gated = summary_comment(pipe, [view(J.QUEUED, fork_gated=True)])
    assert "🔒" in gated and "`/ployd ok-to-test` from someone with write access" in gated
    on_gitlab = summary_comment(replace(pipe, forge="gitlab"), [view(J.QUEUED, fork_gated=True)])
    assert "`/ployd ok-to-test` from a Developer, Maintainer or Owner" in on_gitlab


def test_summary_comment_fits_with_many_jobs() -> None:
    jobs = [replace(BASE, job_id=i, name=f"job-{i} (" + "k=v, " * 20 + ")")
            for i in range(2000)]
    text = summary_comment(PIPE, jobs)
    assert len(text) <= 65536
    assert re.search(r"… and \d+ more jobs", text)
    assert "`/ployd help`" in text


def test_summary_comment_without_jobs() -> None:
    assert "No jobs in this pipeline." in summary_comment(PIPE, [])


# -- GitLab statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(("v", "state", "description"), [
    (view(J.SUCCEEDED), "success", "succeeded on l4:1 in 3m 05s"),
    (view(J.FAILED), "failed", "failed at pytest -q tests/unit on l4:1 in 3m 05s"),
    (view(J.FAILED, allow_failure=True), "success", "failed, allowed to fail on l4:1 in 3m 05s"),
    (view(J.TIMED_OUT), "failed", "timed out on l4:1 in 3m 05s"),
    (view(J.INTERRUPTED), "failed", "interrupted on l4:1 in 3m 05s"),
    (view(J.CANCELLED), "canceled", "cancelled on l4:1 in 3m 05s"),
    (view(J.SKIPPED, skip_reason="no changes in model/**"), "skipped",
     "skipped: no changes in model/**"),
    (view(J.MANUAL, manual=True), "skipped", "manual job: comment /ployd run unit"),
    (view(J.WAITING), "pending", "waiting on l4:1"),
    (view(J.QUEUED, waiting_reason="waiting for capacity"), "pending", "waiting for capacity"),
    (view(J.DISPATCHING), "pending", "dispatching on l4:1"),
    (view(J.RUNNING), "running", "running on l4:1"),
    (view(J.QUEUED, fork_gated=True), "pending",
     "from a fork: waiting for /ployd ok-to-test from a Developer or higher"),
    (view(J.TIMED_OUT, end_reason="no capacity: waited longer than its timeout (0:30:00)"),
     "failed", "timed out on l4:1: no capacity: waited longer than its timeout (0:30:00)"),
    (view(J.QUEUED, waiting_reason="waiting for capacity", attempt=2,
          attempt_reason="retry 1 of 2: no machine could be had within retry.capacity_wait"),
     "pending", "waiting for capacity (retry 1 of 2: no machine could be had within "
     "retry.capacity_wait)"),
])
def test_status_for(v: JobView, state: str, description: str) -> None:
    assert status_for(v) == (state, description)


def test_status_description_fits() -> None:
    state, desc = status_for(view(J.FAILED, failed_step="x" * 1000))
    assert state == "failed" and len(desc) <= 255


# -- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (42, "42s"), (59.9, "59s"), (60, "1m 00s"), (185, "3m 05s"), (3600, "1h 00m"),
    (3725, "1h 02m"), (90000, "1d 01h"), (-5, "0s"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(("usd", "text"), [
    (0, "$0.00"), (0.001, "<$0.01"), (0.12, "$0.12"), (0.125, "$0.12"), (3.456, "$3.46"),
    (1234.5, "$1,234.50"),
])
def test_human_money(usd: float, text: str) -> None:
    assert human_money(usd) == text


def test_markdown_helpers() -> None:
    assert escape_md("a|b_c*d") == "a\\|b\\_c\\*d"
    assert escape_md("multi\nline") == "multi line"
    assert code_span("a`b") == "``a`b``"
    assert code_span("`x`") == "`` `x` ``"
    assert fence_for("no fences") == "```"
    assert fence_for("```\n~~~~~") == "``````"
