"""Slash commands in pull request comments (``/ployd retry``, ``/ployd run JOB on h100``),
Prow-style: each command is an anchored, case-insensitive, per-line regex with its help
registered beside it as data (``COMMANDS``).

Three pure steps, each tested by tables:

* ``parse_comment(body)``: the commands of a comment, in order, or a ``CommandError`` per
  line that starts with ``/ployd`` but is not a command PloyD knows.
* ``resolve(cmd, jobs, catalog)``: the concrete jobs of the pull request's latest pipeline
  a command targets, with its hardware checked against the catalog.
* ``may_run(verb, permission, ...)``: whether the commenter may do it.

What counts as a command: a line that *starts* with ``/ployd`` (up to three spaces before
it) followed by a space or the end of the line. Not: lines quoted with ``>``, lines in
fenced code blocks (````` or ``~~~``), in indented code (four spaces or a tab), in an
HTML comment (``<!-- ... -->``, as in pull request templates), inline code in prose,
``/ployds``, ``/ployd-retry``, ``please /ployd retry``.

JOB is a job's base name (``gpu-tests``: every matrix child of it) or a full child name
(``gpu-tests (python=3.11, hardware=l4)``), optionally quoted in backticks or double
quotes; HARDWARE is ``CLASS[:COUNT]``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.core.config.model import HardwareSpec
from app.core.hardware import Catalog, parse_spec
from app.core.report.markdown import NONE, code_span, escape_md
from app.core.states import RETRYABLE, JobState

PREFIX = "/ployd"


class Verb(StrEnum):
    RETRY = "retry"
    RUN = "run"
    CANCEL = "cancel"
    OK_TO_TEST = "ok-to-test"  # the word people type
    HELP = "help"


class Permission(StrEnum):
    """A commenter's permission on the repository (GitHub's names; GitLab maps onto them:
    owner/maintainer -> maintain or admin, developer -> write, reporter -> triage,
    guest -> read)."""

    ADMIN = "admin"
    MAINTAIN = "maintain"
    WRITE = "write"
    TRIAGE = "triage"
    READ = "read"
    NONE = "none"

    @property
    def rank(self) -> int:
        return _RANK[self]


@dataclass(frozen=True, slots=True)
class Standing:
    """Someone's permission on the repository, and its name in the forge's words
    (``triage`` on GitHub, ``Reporter`` on GitLab)."""

    permission: Permission
    role: str


@dataclass(frozen=True, slots=True)
class ForgeWords:
    """How a forge names what commands need: ``needed`` (the least role that may run
    every command), ``enough`` (every role that may), ``request`` (a pull request, a
    merge request)."""

    request: str
    needed: str
    enough: str
    where: str  # "the repository", "the project"


GITHUB_WORDS = ForgeWords(
    request="pull request",
    needed="write access",
    enough="write, maintain or admin permission",
    where="the repository",
)
GITLAB_WORDS = ForgeWords(
    request="merge request",
    needed="the Developer role",
    enough="the Developer, Maintainer or Owner role",
    where="the project",
)

# GitLab's role names by access level (contract "Access levels"), highest first
GITLAB_ROLES = (
    (50, "Owner"),
    (40, "Maintainer"),
    (30, "Developer"),
    (20, "Reporter"),
    (15, "Planner"),
    (10, "Guest"),
    (5, "Minimal access"),
)


def gitlab_standing(access_level: int) -> Standing:
    """A GitLab role number as a Standing: its Permission, and GitLab's name of it."""
    role = next((name for floor, name in GITLAB_ROLES if access_level >= floor), "no role")
    return Standing(gitlab_permission(access_level), role)


def github_standing(permission: Permission) -> Standing:
    return Standing(permission, permission.value)


def gitlab_permission(access_level: int) -> Permission:
    """A GitLab role number (members API) as a Permission: Owner (50) and above admin,
    Maintainer (40) maintain, Developer (30) write, Reporter (20) triage, Guest and
    Planner (10, 15) read, anything lower none."""
    for floor, permission in (
        (50, Permission.ADMIN),
        (40, Permission.MAINTAIN),
        (30, Permission.WRITE),
        (20, Permission.TRIAGE),
        (10, Permission.READ),
    ):
        if access_level >= floor:
            return permission
    return Permission.NONE


_RANK = {
    Permission.NONE: 0,
    Permission.READ: 1,
    Permission.TRIAGE: 2,
    Permission.WRITE: 3,
    Permission.MAINTAIN: 4,
    Permission.ADMIN: 5,
}


@dataclass(frozen=True, slots=True)
class Command:
    verb: Verb
    job: str | None  # as written, quotes removed; None = no job named
    all_jobs: bool  # `/ployd run all`
    hardware: str | None  # `CLASS[:COUNT]` as written, lowercased; None = not asked
    line: int  # 1-based line of the comment
    text: str  # the line, stripped


@dataclass(frozen=True, slots=True)
class CommandError:
    line: int
    text: str
    message: str


# -- the registry ---------------------------------------------------------------------

_WS = r"[ \t]+"
# A job: quoted (backticks or double quotes, anything inside), or a name with an optional
# parenthesised matrix part (`gpu-tests (python=3.11, hardware=l4)`). Never the bare word
# `on`, so that `/ployd retry on` is an error rather than a job called "on".
_JOB = (
    r"(?:`(?P<bq>[^`\n]+)`"
    r'|"(?P<dq>[^"\n]+)"'
    r"|(?P<job>(?!on(?:[ \t]|$))[^\s`\"()]+(?:[ \t]*\([^()\n]*\))?))"
)
_HW = r"`?(?P<hw>[a-z0-9][a-z0-9-]*(?::[0-9]+)?)`?"
_ON = rf"(?:{_WS}on{_WS}{_HW})"
_START = rf"^[ ]{{0,3}}{PREFIX}{_WS}"
_END = r"[ \t]*$"


@dataclass(frozen=True, slots=True)
class CommandHelp:
    """One command: its regex and its help, as data."""

    verb: Verb
    pattern: re.Pattern[str]
    usage: tuple[str, ...]
    description: str
    who: str
    examples: tuple[str, ...]


def _rx(body: str) -> re.Pattern[str]:
    return re.compile(_START + body + _END, re.IGNORECASE)


COMMANDS: tuple[CommandHelp, ...] = (
    CommandHelp(
        Verb.RETRY,
        _rx(rf"retry(?:{_WS}{_JOB})?{_ON}?"),
        (
            "/ployd retry",
            "/ployd retry JOB",
            "/ployd retry on HARDWARE",
            "/ployd retry JOB on HARDWARE",
        ),
        "Run failed jobs of the latest pipeline again (every failed, timed out, interrupted "
        "or cancelled job when no JOB is named), on other hardware when asked.",
        "write access; the pull request's author, on the same hardware",
        (
            "/ployd retry",
            "/ployd retry gpu-tests",
            "/ployd retry unit on cpu:16",
            '/ployd retry "gpu-tests (python=3.11, hardware=l4)" on a10g',
        ),
    ),
    CommandHelp(
        Verb.RUN,
        _rx(rf"run{_WS}(?:(?P<all>all)|{_JOB}){_ON}?"),
        (
            "/ployd run JOB",
            "/ployd run JOB on HARDWARE",
            "/ployd run all",
            "/ployd run all on HARDWARE",
        ),
        "Run a job (manual jobs too), or every job of the latest pipeline with `all`.",
        "write access",
        ("/ployd run benchmark", "/ployd run benchmark on h100:8", "/ployd run all"),
    ),
    CommandHelp(
        Verb.CANCEL,
        _rx(rf"cancel(?:{_WS}{_JOB})?"),
        ("/ployd cancel", "/ployd cancel JOB"),
        "Cancel the latest pipeline's unfinished jobs, or one job.",
        "write access",
        ("/ployd cancel", "/ployd cancel train-smoke"),
    ),
    CommandHelp(
        Verb.OK_TO_TEST,
        _rx(r"ok-to-test"),
        ("/ployd ok-to-test",),
        "Let the pipeline of a pull request from a fork run (once per pushed commit).",
        "write access",
        ("/ployd ok-to-test",),
    ),
    CommandHelp(
        Verb.HELP,
        _rx(r"help"),
        ("/ployd help",),
        "List these commands and this pull request's jobs.",
        "anyone",
        ("/ployd help",),
    ),
)

HELP_BY_VERB: dict[Verb, CommandHelp] = {c.verb: c for c in COMMANDS}
VERBS: tuple[str, ...] = tuple(v.value for v in Verb)

# A line that addresses PloyD at all: `/ployd` then a space or the end of the line.
_ADDRESSED = re.compile(rf"^[ ]{{0,3}}{PREFIX}(?:{_WS}(?P<verb>\S+))?(?:[ \t].*)?$", re.IGNORECASE)
_FENCE_OPEN = re.compile(r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})[ \t]*$")


# -- parsing --------------------------------------------------------------------------


def _candidate_lines(body: str) -> list[tuple[int, str]]:
    """The (1-based number, text) of lines outside code blocks, quotes and HTML comments."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    in_html_comment = False
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(lines, start=1):
        if fence is not None:
            close = _FENCE_CLOSE.match(line)
            if close is not None and close[1][0] == fence[0] and len(close[1]) >= len(fence):
                fence = None
            continue
        if in_html_comment:
            if "-->" in line:
                in_html_comment = False
            continue
        m = _FENCE_OPEN.match(line)
        if m is not None and not (m["fence"][0] == "`" and "`" in m["info"]):
            fence = m["fence"]
            continue
        if line.startswith(("    ", "\t")):
            continue  # indented code
        if line.lstrip().startswith(">"):
            continue  # quoted
        start = line.rfind("<!--")
        if start != -1 and "-->" not in line[start:]:
            in_html_comment = True
            if not line.lstrip().startswith(PREFIX):
                continue
            line = line[:start]
        out.append((number, line))
    return out


def _unknown_verb(word: str) -> str:
    known = ", ".join(f"{PREFIX} {v}" for v in VERBS)
    close = difflib.get_close_matches(word.lower(), VERBS, n=1, cutoff=0.6)
    hint = f"; did you mean {PREFIX} {close[0]}?" if close else ""
    return f"unknown command '{PREFIX} {word}'{hint} commands: {known}"


def _usage(verb: Verb) -> str:
    return "usage: " + " | ".join(HELP_BY_VERB[verb].usage)


def parse_line(number: int, line: str) -> Command | CommandError | None:
    """One line: a command, an error (it addresses PloyD but is wrong), or None."""
    addressed = _ADDRESSED.match(line)
    if addressed is None:
        return None
    text = line.strip()
    word = addressed["verb"]
    if word is None:
        known = ", ".join(f"{PREFIX} {v}" for v in VERBS)
        return CommandError(number, text, f"'{PREFIX}' needs a command: {known}")
    try:
        verb = Verb(word.lower())
    except ValueError:
        return CommandError(number, text, _unknown_verb(word))
    spec = HELP_BY_VERB[verb]
    m = spec.pattern.match(line)
    if m is None:
        detail = ""
        if re.search(rf"{_WS}on[ \t]*$", line, re.IGNORECASE):
            detail = "'on' needs a hardware spec CLASS[:COUNT], e.g. l4 or h100:8; "
        return CommandError(number, text, f"cannot read '{text}': {detail}{_usage(verb)}")
    groups = m.groupdict()
    job = groups.get("bq") or groups.get("dq") or groups.get("job")
    job = " ".join(job.split()) if job else None
    hw = groups.get("hw")
    return Command(
        verb=verb,
        job=job,
        all_jobs=bool(groups.get("all")),
        hardware=hw.lower() if hw else None,
        line=number,
        text=text,
    )


def command_text(verb: Verb, job: str | None = None, hardware: str | None = None) -> str:
    """The comment line for a command (for buttons and hints): the job unquoted when it
    reads back as itself, else quoted in backticks or double quotes."""
    parts = [PREFIX, verb.value]
    if job is not None:
        for quoted in (job, f"`{job}`", f'"{job}"'):
            found = parse_line(1, " ".join([*parts, quoted]))
            if isinstance(found, Command) and found.job == " ".join(job.split()):
                parts.append(quoted)
                break
        else:
            raise ValueError(f"job name {job!r} cannot be written in a command")
    if hardware is not None:
        parts += ["on", hardware]
    return " ".join(parts)


def parse_comment(body: str) -> list[Command | CommandError]:
    """Every command (or error) in a comment, in order."""
    out: list[Command | CommandError] = []
    for number, line in _candidate_lines(body):
        parsed = parse_line(number, line)
        if parsed is not None:
            out.append(parsed)
    return out


# -- resolving against the pipeline ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRef:
    """A job of the pull request's latest pipeline, as commands see it."""

    name: str  # `unit` or `gpu-tests (python=3.11, hardware=l4)`
    base: str  # the job key in the file
    state: JobState
    hardware: tuple[str, ...] = ()  # specs in preference order, e.g. ("l4:1",)
    manual: bool = False


@dataclass(frozen=True, slots=True)
class Resolution:
    verb: Verb
    jobs: tuple[str, ...]  # concrete job names, in pipeline order
    hardware: HardwareSpec | None
    same_hardware: bool  # no hardware asked, or it equals every target's first hardware


def _norm(name: str) -> str:
    return "".join(name.split()).casefold()


def _select(name: str, jobs: Sequence[JobRef]) -> list[JobRef] | None:
    """The jobs ``name`` means: a full name, else a base name (every child), else the same
    up to case and spaces. None when nothing matches."""
    n = _norm(name)
    for loose in (False, True):
        for by_base in (False, True):
            keys = [(j, j.base if by_base else j.name) for j in jobs]
            found = [j for j, k in keys if (_norm(k) == n if loose else k == name)]
            if found:
                return found
    return None


def _unknown_job(cmd: Command, name: str, jobs: Sequence[JobRef]) -> CommandError:
    bases = list(dict.fromkeys(j.base for j in jobs))
    choices = list(dict.fromkeys([*bases, *(j.name for j in jobs)]))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return CommandError(cmd.line, cmd.text, f"unknown job '{name}'{hint} jobs: {', '.join(bases)}")


def _offered_counts(cls: str, catalog: Catalog) -> list[int]:
    return sorted({t.count for t in catalog.types_of(cls)})


def check_hardware(text: str, catalog: Catalog) -> HardwareSpec | str:
    """``text`` as a spec the catalog can provide, or the message saying why not."""
    try:
        spec = parse_spec(text)
    except ValueError as exc:
        return str(exc)
    classes = catalog.classes()
    if not catalog.has_class(spec.cls):
        close = difflib.get_close_matches(spec.cls, classes, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"unknown hardware '{spec.cls}'{hint} known: {', '.join(classes)}"
    if not catalog.for_spec(spec):
        counts = _offered_counts(spec.cls, catalog)
        unit = "vCPUs" if spec.cls == "cpu" else "accelerators"
        if not counts:
            return f"no instance type in the catalog provides {spec.cls}"
        return (
            f"no {spec.cls} machine has {spec.count} {unit}; {spec.cls} offers "
            f"{', '.join(str(c) for c in counts)} {unit} per machine"
        )
    return spec


def retry_hardware(text: str, catalog: Catalog) -> tuple[str, list[str]] | str:
    """A retry's ``on CLASS[:COUNT]`` (the comment's, the API's ``hardware``, the log
    page's button, `ployd retry --on`) as (the spec, its instance types cheapest first),
    or the message saying why no machine provides it."""
    checked = check_hardware(text.strip().lower(), catalog)
    if isinstance(checked, str):
        return checked
    return str(checked), [t.name for t in catalog.for_spec(checked)]


def _first_spec(job: JobRef) -> HardwareSpec | None:
    if not job.hardware:
        return None
    try:
        return parse_spec(job.hardware[0])
    except ValueError:
        return None


def _nothing(cmd: Command, message: str) -> CommandError:
    return CommandError(cmd.line, cmd.text, message)


def _targets(cmd: Command, jobs: Sequence[JobRef]) -> list[JobRef] | CommandError:
    if cmd.verb in (Verb.HELP, Verb.OK_TO_TEST):
        return []
    if not jobs:
        return _nothing(cmd, "this pull request has no pipeline yet")
    selected: list[JobRef]
    if cmd.job is not None:
        found = _select(cmd.job, jobs)
        if found is None:
            return _unknown_job(cmd, cmd.job, jobs)
        selected = found
    else:
        selected = list(jobs)
    what = f"'{cmd.job}'" if cmd.job is not None else "no job"
    if cmd.verb is Verb.RETRY:
        if cmd.job is None:
            out = [j for j in selected if j.state in RETRYABLE]
            if not out:
                unfinished = sum(1 for j in jobs if not j.state.final)
                if unfinished:
                    return _nothing(
                        cmd, f"nothing to retry: no job failed ({unfinished} not finished yet)"
                    )
                return _nothing(cmd, "nothing to retry: every job passed")
            return out
        out = [j for j in selected if j.state.final]
        if not out:
            state = selected[0].state.value
            hint = f"; start it with {PREFIX} run {cmd.job}" if selected[0].manual else ""
            return _nothing(cmd, f"nothing to retry: {what} has not finished ({state}){hint}")
        return out
    if cmd.verb is Verb.RUN:
        out = [j for j in selected if not j.state.active]
        if not out:
            return _nothing(
                cmd,
                f"nothing to run: {what if cmd.job else 'every job'} is already queued or running",
            )
        return out
    # cancel
    out = [j for j in selected if not j.state.final]
    if not out:
        if cmd.job is None:
            return _nothing(cmd, "nothing to cancel: every job has finished")
        return _nothing(cmd, f"nothing to cancel: {what} has finished ({selected[0].state.value})")
    return out


def resolve(cmd: Command, jobs: Sequence[JobRef], catalog: Catalog) -> Resolution | CommandError:
    """The concrete jobs ``cmd`` targets in the latest pipeline, and its hardware, checked.

    * ``retry``: with no JOB, the failed, timed out, interrupted and cancelled jobs; with a
      JOB, its finished children (whatever their result).
    * ``run``: JOB's children, or every job with ``all`` (manual ones too), except those
      already queued or running.
    * ``cancel``: the unfinished jobs (all, or JOB's).
    * ``help``, ``ok-to-test``: no jobs.
    """
    spec: HardwareSpec | None = None
    if cmd.hardware is not None:
        checked = check_hardware(cmd.hardware, catalog)
        if isinstance(checked, str):
            return CommandError(cmd.line, cmd.text, checked)
        spec = checked
    targets = _targets(cmd, jobs)
    if isinstance(targets, CommandError):
        return targets
    same = spec is None or all(_first_spec(j) == spec for j in targets)
    return Resolution(cmd.verb, tuple(j.name for j in targets), spec, same)


# -- permissions ----------------------------------------------------------------------


def may_run(
    verb: Verb,
    permission: Permission | Standing,
    *,
    is_pr_author: bool,
    same_hardware: bool,
    user: str | None = None,
    words: ForgeWords = GITHUB_WORDS,
) -> tuple[bool, str]:
    """Whether someone with ``permission`` may run ``verb``, and why (the reason to show
    when refused, in the forge's ``words``, saying who could).

    * ``help``: anyone.
    * write, maintain, admin (GitLab: Developer, Maintainer, Owner): everything.
    * the pull request's author with less: ``retry`` of their own pull request's jobs, on
      the same hardware only (other hardware may cost more: a maintainer decides).
    * everything else needs write access (``ok-to-test`` above all: it lets a fork's code
      run on PloyD's machines).
    """
    standing = permission if isinstance(permission, Standing) else github_standing(permission)
    who = f"@{user}" if user else "the commenter"
    command = f"{PREFIX} {verb.value}"
    if verb is Verb.HELP:
        return True, "help is open to everyone"
    if standing.permission.rank >= Permission.WRITE.rank:
        return True, f"{who} has {standing.role} access"
    could = f"someone with {words.enough} on {words.where} can run it"
    if verb is Verb.RETRY and is_pr_author:
        if same_hardware:
            return True, f"{who} authored the {words.request} and retries on the same hardware"
        return False, (
            f"{who} needs {words.needed} to run {command} on other hardware "
            f"(has {standing.role}): {could}; the author may retry on the same hardware: "
            f"{command} without 'on'"
        )
    refusal = f"{who} needs {words.needed} to run {command} (has {standing.role}): {could}"
    if verb is Verb.RETRY:
        refusal += f"; the {words.request}'s author may retry on the same hardware"
    return False, refusal


# -- help -----------------------------------------------------------------------------


def help_text(jobs: Sequence[JobRef] | None = None, words: ForgeWords = GITHUB_WORDS) -> str:
    """Markdown: every command (from ``COMMANDS``) and, when given, this pull request's jobs
    with their states and hardware; in the forge's ``words`` (who may run what)."""

    def said(text: str) -> str:
        return text.replace("write access", words.needed).replace("pull request", words.request)

    lines = [
        "### PloyD commands",
        "",
        "Comment one command per line; the line must start with the command.",
        "",
        "| command | what it does | who |",
        "| --- | --- | --- |",
    ]
    for c in COMMANDS:
        usage = "<br>".join(code_span(u) for u in c.usage)
        # descriptions are PloyD's own markdown (no `|`); job names below are escaped
        lines.append(f"| {usage} | {said(c.description)} | {said(c.who)} |")
    lines += [
        "",
        "JOB is a job's name (`gpu-tests`: all its matrix children) or one child's full name "
        '(`"gpu-tests (python=3.11, hardware=l4)"`); HARDWARE is `CLASS[:COUNT]`, '
        "e.g. `l4`, `cpu:16`, `h100:8`.",
        "",
        "Examples: " + ", ".join(code_span(e) for c in COMMANDS for e in c.examples[:2]),
    ]
    if jobs is not None:
        lines += ["", "#### Jobs of the latest pipeline", ""]
        if not jobs:
            lines.append(said("No pipeline has run for this pull request yet."))
        else:
            lines += ["| job | state | hardware |", "| --- | --- | --- |"]
            for j in jobs:
                state = j.state.value
                if j.manual and j.state is not JobState.MANUAL:
                    state += " (manual job)"
                hw = ", ".join(j.hardware) if j.hardware else NONE
                lines.append(f"| {escape_md(j.name)} | {state} | {escape_md(hw)} |")
    return "\n".join(lines) + "\n"
