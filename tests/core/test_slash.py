"""Slash commands: parsing (with the tricky negatives), resolving against a pipeline's jobs
and the catalog, permissions, help."""

from __future__ import annotations

import pytest

from app.core.config.model import HardwareSpec
from app.core.hardware import Catalog
from app.core.slash import (
    COMMANDS,
    GITLAB_WORDS,
    Command,
    CommandError,
    JobRef,
    Permission,
    Resolution,
    Verb,
    command_text,
    gitlab_standing,
    help_text,
    may_run,
    parse_comment,
    resolve,
)
from app.core.states import JobState

CAT = Catalog.default()
J = JobState


def cmd(verb: Verb, job: str | None = None, hardware: str | None = None, *,
        all_jobs: bool = False) -> tuple[Verb, str | None, bool, str | None]:
    return (verb, job, all_jobs, hardware)


def shape(found: Command | CommandError) -> tuple[Verb, str | None, bool, str | None]:
    assert isinstance(found, Command), found
    return (found.verb, found.job, found.all_jobs, found.hardware)


# -- parsing: what is a command --------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ("/ployd retry", cmd(Verb.RETRY)),
    ("/ployd retry unit", cmd(Verb.RETRY, "unit")),
    ("/ployd retry on h100", cmd(Verb.RETRY, hardware="h100")),
    ("/ployd retry on h100:8", cmd(Verb.RETRY, hardware="h100:8")),
    ("/ployd retry gpu-tests on a10g:4", cmd(Verb.RETRY, "gpu-tests", "a10g:4")),
    ("/ployd retry gpu-tests (python=3.11, hardware=l4)",
     cmd(Verb.RETRY, "gpu-tests (python=3.11, hardware=l4)")),
    ("/ployd retry gpu-tests (python=3.11, hardware=l4) on h100",
     cmd(Verb.RETRY, "gpu-tests (python=3.11, hardware=l4)", "h100")),
    ('/ployd retry "gpu-tests (python=3.11, hardware=l4)" on l40s',
     cmd(Verb.RETRY, "gpu-tests (python=3.11, hardware=l4)", "l40s")),
    ("/ployd retry `gpu-tests (python=3.11, hardware=l4)`",
     cmd(Verb.RETRY, "gpu-tests (python=3.11, hardware=l4)")),
    ("/ployd retry `unit` on `cpu:16`", cmd(Verb.RETRY, "unit", "cpu:16")),
    ("/ployd run benchmark", cmd(Verb.RUN, "benchmark")),
    ("/ployd run benchmark on h100:8", cmd(Verb.RUN, "benchmark", "h100:8")),
    ("/ployd run all", cmd(Verb.RUN, all_jobs=True)),
    ("/ployd run all on l4", cmd(Verb.RUN, hardware="l4", all_jobs=True)),
    ("/ployd run `all`", cmd(Verb.RUN, "all")),  # a job called "all", quoted
    ("/ployd run allegro", cmd(Verb.RUN, "allegro")),
    ("/ployd cancel", cmd(Verb.CANCEL)),
    ("/ployd cancel train-smoke", cmd(Verb.CANCEL, "train-smoke")),
    ("/ployd ok-to-test", cmd(Verb.OK_TO_TEST)),
    ("/ployd help", cmd(Verb.HELP)),
    # case, whitespace, line endings
    ("/PLOYD RETRY ON H100:8", cmd(Verb.RETRY, hardware="h100:8")),
    ("/Ployd Ok-To-Test", cmd(Verb.OK_TO_TEST)),
    ("   /ployd retry   ", cmd(Verb.RETRY)),
    ("/ployd\tretry\tunit", cmd(Verb.RETRY, "unit")),
    ("LGTM\r\n/ployd retry\r\n", cmd(Verb.RETRY)),
    ("/ployd retry  gpu-tests   (python=3.11,  hardware=l4)",
     cmd(Verb.RETRY, "gpu-tests (python=3.11, hardware=l4)")),
    # a fence that is closed does not hide what follows
    ("```\n/ployd cancel\n```\n/ployd retry", cmd(Verb.RETRY)),
    ("~~~~\n```\n/ployd cancel\n~~~~\n/ployd retry", cmd(Verb.RETRY)),
    ("<!-- template -->\n/ployd retry", cmd(Verb.RETRY)),
])
def test_one_command(body: str, expected: tuple[Verb, str | None, bool, str | None]) -> None:
    found = parse_comment(body)
    assert len(found) == 1, found
    assert shape(found[0]) == expected


@pytest.mark.parametrize("body", [
    "",
    "LGTM, thanks!",
    "> /ployd retry",  # quoted
    ">/ployd retry",
    "> > /ployd retry",
    "  > /ployd retry",
    "```\n/ployd retry\n```",  # fenced code
    "~~~\n/ployd retry\n~~~",
    "```text\n/ployd retry\n```",
    "````\n```\n/ployd retry\n````",  # a shorter fence inside does not close it
    "```\n/ployd retry",  # an unclosed fence runs to the end
    "    /ployd retry",  # indented code
    "\t/ployd retry",
    "Try `/ployd retry` when it fails",  # inline code in prose
    "`/ployd retry`",
    "/ployds retry",  # near-misses
    "/ployd-retry",
    "/ployd_retry",
    "/ployd:retry",
    "/ployd/retry",
    "please /ployd retry",
    "I ran /ployd retry yesterday",
    "ployd retry",
    "//ployd retry",
    "\\/ployd retry",
    "<!--\n/ployd retry\n-->",  # pull request templates hide instructions in comments
    "<!-- Comment\n/ployd cancel to stop it\n-->",
    "* /ployd retry",  # a list item is prose
    "**/ployd retry**",
])
def test_not_a_command(body: str) -> None:
    assert parse_comment(body) == []


def test_several_commands_in_order_with_lines() -> None:
    body = ("Two things:\n"
            "/ployd retry unit\n"
            "\n"
            "> /ployd cancel\n"
            "/ployd run benchmark on h100:8\n"
            "```\n/ployd cancel\n```\n"
            "/ployd rety\n"
            "/ployd help\n")
    found = parse_comment(body)
    assert [(f.line, type(f).__name__) for f in found] == [
        (2, "Command"), (5, "Command"), (9, "CommandError"), (10, "Command")]
    assert isinstance(found[0], Command) and found[0].text == "/ployd retry unit"
    assert isinstance(found[1], Command) and found[1].hardware == "h100:8"
    assert isinstance(found[3], Command) and found[3].verb is Verb.HELP


def test_line_numbers_count_only_newlines() -> None:
    (found,) = parse_comment("a\x0cb\r\nc\u2028d\n/ployd retry")
    assert isinstance(found, Command) and found.line == 3


@pytest.mark.parametrize(("line", "fragments"), [
    ("/ployd rety", ["unknown command '/ployd rety'", "did you mean /ployd retry?",
                     "/ployd ok-to-test", "/ployd help"]),
    ("/ployd retyr unit", ["unknown command '/ployd retyr'", "did you mean /ployd retry?"]),
    ("/ployd cancle", ["did you mean /ployd cancel?"]),
    ("/ployd ok_to_test", ["did you mean /ployd ok-to-test?"]),
    ("/ployd oktotest", ["did you mean /ployd ok-to-test?"]),
    ("/ployd hepl", ["did you mean /ployd help?"]),
    ("/ployd deploy", ["unknown command '/ployd deploy'", "commands: /ployd retry"]),
    ("/ployd", ["needs a command", "/ployd retry"]),
    ("/ployd retry on", ["'on' needs a hardware spec", "usage: /ployd retry",
                         "/ployd retry JOB on HARDWARE"]),
    ("/ployd retry unit on", ["'on' needs a hardware spec", "usage:"]),
    ("/ployd retry unit please", ["cannot read", "usage: /ployd retry"]),
    ("/ployd retry on h100 please", ["usage: /ployd retry"]),
    ("/ployd retry on h100:x", ["usage: /ployd retry"]),
    ("/ployd run", ["usage: /ployd run JOB", "/ployd run all"]),
    ("/ployd run on l4", ["usage: /ployd run JOB"]),
    ("/ployd cancel a b", ["usage: /ployd cancel"]),
    ("/ployd help me", ["usage: /ployd help"]),
    ("/ployd ok-to-test now", ["usage: /ployd ok-to-test"]),
    ('/ployd retry "unit', ["usage: /ployd retry"]),
])
def test_errors(line: str, fragments: list[str]) -> None:
    found = parse_comment("hello\n" + line)
    assert len(found) == 1
    err = found[0]
    assert isinstance(err, CommandError), err
    assert err.line == 2 and err.text == line.strip()
    for f in fragments:
        assert f in err.message, (f, err.message)


def test_registry_has_help_for_every_verb() -> None:
    assert {c.verb for c in COMMANDS} == set(Verb)
    for c in COMMANDS:
        assert c.usage and c.description and c.who and c.examples
        assert "|" not in c.description + c.who  # they go into a table as they are
        for example in c.examples:  # every example parses as the command it documents
            (found,) = parse_comment(example)
            assert isinstance(found, Command) and found.verb is c.verb, example


# -- resolving against the pipeline ----------------------------------------------------

L4 = "gpu-tests (python=3.11, hardware=l4)"
A10 = "gpu-tests (python=3.11, hardware=a10g)"
JOBS = (
    JobRef("lint", "lint", J.SUCCEEDED, ("cpu:2",)),
    JobRef("unit", "unit", J.FAILED, ("cpu:8",)),
    JobRef(L4, "gpu-tests", J.TIMED_OUT, ("l4:1",)),
    JobRef(A10, "gpu-tests", J.SUCCEEDED, ("a10g:1",)),
    JobRef("train-smoke", "train-smoke", J.INTERRUPTED, ("h100:8",)),
    JobRef("eval", "eval", J.CANCELLED, ()),
    JobRef("benchmark", "benchmark", J.MANUAL, ("h100:1", "a100:8"), manual=True),
    JobRef("docs", "docs", J.SKIPPED, ("cpu:2",)),
)
RUNNING = (
    JobRef("lint", "lint", J.SUCCEEDED, ("cpu:2",)),
    JobRef("unit", "unit", J.RUNNING, ("cpu:8",)),
    JobRef("e2e", "e2e", J.WAITING, ("cpu:2",)),
)
PASSED = (
    JobRef("lint", "lint", J.SUCCEEDED, ("cpu:2",)),
    JobRef("docs", "docs", J.SKIPPED, ("cpu:2",)),
)


def one(line: str) -> Command:
    (c,) = parse_comment(line)
    assert isinstance(c, Command), c
    return c


@pytest.mark.parametrize(("line", "jobs", "targets", "hardware", "same"), [
    ("/ployd retry", JOBS, ("unit", L4, "train-smoke", "eval"), None, True),
    ("/ployd retry on h100:8", JOBS, ("unit", L4, "train-smoke", "eval"),
     HardwareSpec("h100", 8), False),
    ("/ployd retry unit", JOBS, ("unit",), None, True),
    ("/ployd retry lint", JOBS, ("lint",), None, True),  # a named job reruns even if it passed
    ("/ployd retry gpu-tests", JOBS, (L4, A10), None, True),  # every matrix child
    (f"/ployd retry {L4}", JOBS, (L4,), None, True),
    (f'/ployd retry "{L4}" on l4', JOBS, (L4,), HardwareSpec("l4", 1), True),
    (f"/ployd retry `{L4}` on l4:1", JOBS, (L4,), HardwareSpec("l4", 1), True),
    ("/ployd retry gpu-tests (python=3.11,hardware=l4)", JOBS, (L4,), None, True),
    ("/ployd retry GPU-Tests", JOBS, (L4, A10), None, True),  # case-insensitive fallback
    (f"/ployd retry {L4} on a10g", JOBS, (L4,), HardwareSpec("a10g", 1), False),
    ("/ployd retry gpu-tests on l4", JOBS, (L4, A10), HardwareSpec("l4", 1), False),
    ("/ployd retry unit on cpu:8", JOBS, ("unit",), HardwareSpec("cpu", 8), True),
    ("/ployd retry unit on cpu", JOBS, ("unit",), HardwareSpec("cpu", 2), False),
    ("/ployd retry train-smoke on h100:8", JOBS, ("train-smoke",), HardwareSpec("h100", 8), True),
    ("/ployd retry eval on l4", JOBS, ("eval",), HardwareSpec("l4", 1), False),  # no hardware
    ("/ployd run benchmark", JOBS, ("benchmark",), None, True),
    ("/ployd run benchmark on h100", JOBS, ("benchmark",), HardwareSpec("h100", 1), True),
    ("/ployd run all", JOBS, tuple(j.name for j in JOBS), None, True),
    ("/ployd run all", RUNNING, ("lint", "e2e"), None, True),  # not what already runs
    ("/ployd run all on l4", PASSED, ("lint", "docs"), HardwareSpec("l4", 1), False),
    ("/ployd cancel", RUNNING, ("unit", "e2e"), None, True),
    ("/ployd cancel unit", RUNNING, ("unit",), None, True),
    ("/ployd cancel", JOBS, ("benchmark",), None, True),  # a manual job not started
    ("/ployd help", JOBS, (), None, True),
    ("/ployd help", (), (), None, True),
    ("/ployd ok-to-test", JOBS, (), None, True),
])
def test_resolve(line: str, jobs: tuple[JobRef, ...], targets: tuple[str, ...],
                 hardware: HardwareSpec | None, same: bool) -> None:
    c = one(line)
    assert resolve(c, jobs, CAT) == Resolution(c.verb, targets, hardware, same)


@pytest.mark.parametrize(("line", "jobs", "fragments"), [
    ("/ployd retry unti", JOBS, ["unknown job 'unti'; did you mean 'unit'?",
                                 "jobs: lint, unit, gpu-tests, train-smoke, eval, benchmark, "
                                 "docs"]),
    ("/ployd retry gpu-test", JOBS, ["did you mean 'gpu-tests'?"]),
    ("/ployd run benchmrk", JOBS, ["did you mean 'benchmark'?"]),
    ("/ployd cancel zzz", JOBS, ["unknown job 'zzz'", "jobs: lint"]),
    ("/ployd retry on h10", JOBS, ["unknown hardware 'h10'; did you mean h100?",
                                   "known: cpu, t4, l4, a10g"]),
    ("/ployd retry unit on gpu", JOBS, ["unknown hardware 'gpu'", "known: cpu, t4"]),
    ("/ployd retry unit on h100:16", JOBS, ["no h100 machine has 16 accelerators",
                                            "h100 offers 1, 8 accelerators per machine"]),
    ("/ployd retry unit on a100:9", JOBS, ["a100 offers 8 accelerators"]),
    ("/ployd retry unit on cpu:500", JOBS, ["no cpu machine has 500 vCPUs",
                                            "cpu offers 2, 4, 8, 16, 32, 48, 64, 96, 192 vCPUs"]),
    ("/ployd retry unit on l4:0", JOBS, ["the count must be at least 1"]),
    ("/ployd retry", PASSED, ["nothing to retry: every job passed"]),
    ("/ployd retry", RUNNING, ["nothing to retry: no job failed (2 not finished yet)"]),
    ("/ployd retry unit", RUNNING, ["nothing to retry: 'unit' has not finished (running)"]),
    ("/ployd retry benchmark", JOBS, ["has not finished (manual)",
                                      "start it with /ployd run benchmark"]),
    ("/ployd run unit", RUNNING, ["nothing to run: 'unit' is already queued or running"]),
    ("/ployd cancel", PASSED, ["nothing to cancel: every job has finished"]),
    ("/ployd cancel lint", JOBS, ["nothing to cancel: 'lint' has finished (succeeded)"]),
    ("/ployd retry", (), ["no pipeline yet"]),
    ("/ployd run all", (), ["no pipeline yet"]),
])
def test_resolve_errors(line: str, jobs: tuple[JobRef, ...], fragments: list[str]) -> None:
    c = one(line)
    err = resolve(c, jobs, CAT)
    assert isinstance(err, CommandError), err
    assert (err.line, err.text) == (c.line, c.text)
    for f in fragments:
        assert f in err.message, (f, err.message)


def test_hardware_is_checked_before_jobs() -> None:
    err = resolve(one("/ployd retry unti on h10"), JOBS, CAT)
    assert isinstance(err, CommandError) and "unknown hardware 'h10'" in err.message


# -- permissions -----------------------------------------------------------------------

P = Permission
ALL_VERBS = list(Verb)


@pytest.mark.parametrize("permission", [P.ADMIN, P.MAINTAIN, P.WRITE])
@pytest.mark.parametrize("verb", ALL_VERBS)
@pytest.mark.parametrize("author", [True, False])
@pytest.mark.parametrize("same", [True, False])
def test_write_and_above_may_do_everything(permission: Permission, verb: Verb, author: bool,
                                           same: bool) -> None:
    ok, reason = may_run(verb, permission, is_pr_author=author, same_hardware=same)
    assert ok, reason


@pytest.mark.parametrize("permission", [P.NONE, P.READ, P.TRIAGE, P.WRITE, P.ADMIN])
@pytest.mark.parametrize("author", [True, False])
def test_help_is_open_to_everyone(permission: Permission, author: bool) -> None:
    assert may_run(Verb.HELP, permission, is_pr_author=author, same_hardware=False)[0]


@pytest.mark.parametrize(("verb", "author", "same", "allowed"), [
    (Verb.RETRY, True, True, True),  # the author retries their own jobs as they were
    (Verb.RETRY, True, False, False),  # ... but not on other hardware
    (Verb.RETRY, False, True, False),  # others need write
    (Verb.RUN, True, True, False),
    (Verb.RUN, False, True, False),
    (Verb.CANCEL, True, True, False),
    (Verb.CANCEL, False, True, False),
    (Verb.OK_TO_TEST, True, True, False),  # a fork's author cannot approve their own code
    (Verb.OK_TO_TEST, False, True, False),
])
@pytest.mark.parametrize("permission", [P.NONE, P.READ, P.TRIAGE])
def test_below_write(verb: Verb, author: bool, same: bool, allowed: bool,
                     permission: Permission) -> None:
    ok, reason = may_run(verb, permission, is_pr_author=author, same_hardware=same,
                         user="alice")
    assert ok is allowed, reason
    if not ok:
        assert reason.startswith(f"@alice needs write access to run /ployd {verb.value}")
        assert f"(has {permission.value})" in reason


def test_refusal_messages() -> None:
    assert may_run(Verb.CANCEL, P.READ, is_pr_author=False, same_hardware=True, user="bob") == (
        False,
        "@bob needs write access to run /ployd cancel (has read): someone with write, "
        "maintain or admin permission on the repository can run it",
    )
    ok, reason = may_run(Verb.RETRY, P.READ, is_pr_author=True, same_hardware=False,
                         user="bob")
    assert not ok and "on other hardware" in reason and "without 'on'" in reason
    ok, reason = may_run(Verb.RETRY, P.TRIAGE, is_pr_author=False, same_hardware=True,
                         user="bob")
    assert reason.endswith("; the pull request's author may retry on the same hardware")


@pytest.mark.parametrize(("level", "role"), [
    (0, "no role"), (5, "Minimal access"), (10, "Guest"), (15, "Planner"), (20, "Reporter"),
])
def test_gitlab_refusals_speak_gitlab_roles(level: int, role: str) -> None:
    standing = gitlab_standing(level)
    ok, reason = may_run(Verb.OK_TO_TEST, standing, is_pr_author=False, same_hardware=True,
                         user="rita", words=GITLAB_WORDS)
    assert not ok
    assert reason == (
        f"@rita needs the Developer role to run /ployd ok-to-test (has {role}): someone with "
        "the Developer, Maintainer or Owner role on the project can run it"
    )
    assert "write" not in reason and "triage" not in reason
    ok, reason = may_run(Verb.RETRY, standing, is_pr_author=True, same_hardware=False,
                         user="rita", words=GITLAB_WORDS)
    assert not ok and f"(has {role})" in reason and "without 'on'" in reason


@pytest.mark.parametrize(("level", "role"), [(30, "Developer"), (40, "Maintainer"),
                                             (50, "Owner"), (60, "Owner")])
def test_gitlab_developers_and_above_may_do_everything(level: int, role: str) -> None:
    for verb in ALL_VERBS:
        ok, reason = may_run(verb, gitlab_standing(level), is_pr_author=False,
                             same_hardware=False, words=GITLAB_WORDS)
        assert ok, reason
    assert gitlab_standing(level).role == role


def test_gitlab_help_speaks_of_merge_requests_and_roles() -> None:
    text = help_text([], GITLAB_WORDS)
    assert "pull request" not in text and "write access" not in text
    assert "the Developer role" in text and "No pipeline has run for this merge request" in text


# -- help --------------------------------------------------------------------------------


def test_help_lists_every_command_and_the_jobs() -> None:
    text = help_text(JOBS)
    for c in COMMANDS:
        for usage in c.usage:
            assert f"`{usage}`" in text
    assert "| gpu-tests \\(python=3.11, hardware=l4\\) | timed_out | l4:1 |" in text
    assert "| benchmark | manual | h100:1, a100:8 |" in text
    assert "| eval | cancelled | \N{EN DASH} |" in text
    assert parse_comment(text) == []  # the help never reads as commands


def test_help_without_jobs() -> None:
    assert "Jobs of the latest pipeline" not in help_text()
    assert "No pipeline has run" in help_text([])


def test_help_escapes_job_names() -> None:
    text = help_text([JobRef("a|b", "a|b", J.FAILED, ("l4:1",))])
    assert "| a\\|b | failed |" in text


@pytest.mark.parametrize(("verb", "job", "hardware", "text"), [
    (Verb.RETRY, None, None, "/ployd retry"),
    (Verb.RETRY, "unit", "a10g:1", "/ployd retry unit on a10g:1"),
    (Verb.RETRY, L4, None, f"/ployd retry {L4}"),
    (Verb.RUN, "x (v=3.11 (beta))", "h100", "/ployd run `x (v=3.11 (beta))` on h100"),
    (Verb.RUN, "all", None, "/ployd run `all`"),
    (Verb.RETRY, "on", None, "/ployd retry `on`"),
    (Verb.RETRY, "x (msg=`a`)", None, "/ployd retry x (msg=`a`)"),
    (Verb.RETRY, "x (v=`a` (b))", None, '/ployd retry "x (v=`a` (b))"'),
])
def test_command_text_reads_back(verb: Verb, job: str | None, hardware: str | None,
                                 text: str) -> None:
    assert command_text(verb, job, hardware) == text
    c = one(text)
    assert (c.verb, c.job, c.hardware, c.all_jobs) == (verb, job, hardware, False)


def test_command_text_refuses_what_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        command_text(Verb.RETRY, 'a `b` "c"')
