"""The ``ployd / config`` check run: every error of an invalid `.ployd.yml`, listed in the
summary and annotated on its line (50 annotations per request, the rest in updates)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.core.config.errors import ConfigError
from app.core.report.checks import MAX_OUTPUT
from app.core.report.markdown import clip, code_span, escape_md, fence_for

MAX_ANNOTATIONS = 50  # per request
MAX_ANNOTATION_MESSAGE = 64 * 1024
MAX_ANNOTATION_TITLE = 255
CONFIG_CHECK = "ployd / config"
MAX_NOTE = 1_000_000  # a GitLab note body


def _annotation(e: ConfigError) -> dict[str, Any]:
    line = max(1, e.line)
    note: dict[str, Any] = {
        "path": e.file,
        "start_line": line,
        "end_line": line,
        "annotation_level": "failure",
        "message": clip(e.message, MAX_ANNOTATION_MESSAGE),
        "title": clip(f"{e.file}:{line}:{e.column}", MAX_ANNOTATION_TITLE),
    }
    if e.column >= 1:  # start and end are on the same line: columns are allowed
        note["start_column"] = e.column
        note["end_column"] = e.column
    return note


def annotation_batches(errors: Sequence[ConfigError]) -> list[list[dict[str, Any]]]:
    """Every error as an annotation, in batches of 50: the first goes with the check run,
    each further one in an update (GitHub appends them)."""
    notes = [_annotation(e) for e in errors]
    return [notes[i : i + MAX_ANNOTATIONS] for i in range(0, len(notes), MAX_ANNOTATIONS)]


def config_error_report(errors: Sequence[ConfigError], sha: str) -> dict[str, Any]:
    """The ``ployd / config`` check run for an invalid `.ployd.yml` (the first 50
    annotations; the rest from ``annotation_batches(errors)[1:]``)."""
    files = list(dict.fromkeys(e.file for e in errors))
    where = files[0] if len(files) == 1 else ".ployd.yml"
    if not errors:
        return {
            "name": CONFIG_CHECK,
            "head_sha": sha,
            "status": "completed",
            "conclusion": "success",
            "output": {"title": f"{where} is valid", "summary": "No errors."},
        }
    n = len(errors)
    title = f"{n} error{'s' if n != 1 else ''} in {where}"
    listing = [str(e) for e in errors]
    fence = fence_for("\n".join(listing))
    intro = f"PloyD cannot run this commit: {code_span(where)} has {title.split(' in ')[0]}.\n\n"
    budget = MAX_OUTPUT - len(intro) - 2 * len(fence) - 64
    shown: list[str] = []
    size = 0
    for line in listing:
        if size + len(line) + 1 > budget:
            break
        shown.append(line)
        size += len(line) + 1
    more = f"\n… and {n - len(shown)} more" if len(shown) < n else ""
    summary = f"{intro}{fence}text\n" + "\n".join(shown) + f"{more}\n{fence}"
    return {
        "name": CONFIG_CHECK,
        "head_sha": sha,
        "status": "completed",
        "conclusion": "failure",
        "output": {
            "title": title,
            "summary": summary,
            "annotations": annotation_batches(errors)[0],
        },
    }


def config_error_note(errors: Sequence[ConfigError], sha: str) -> str:
    """A merge request note listing every error of an invalid `.ployd.yml` with its line
    (GitLab has no annotations)."""
    n = len(errors)
    head = f"**PloyD cannot run `{sha[:8]}`**: {n} error{'s' if n != 1 else ''} in `.ployd.yml`"
    listing = "\n".join(
        f"- {code_span(f'{e.file}:{e.line}:{e.column}')} {escape_md(e.message)}" for e in errors
    )
    return clip(
        f"{head}\n\n{listing}\n\nFix them and push again; `ployd validate` checks "
        "the file locally.",
        MAX_NOTE,
    )
