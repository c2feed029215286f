"""GitHub's limits on what PloyD sends, and fitting bodies into them: pure functions.

From the OpenAPI description: a check run takes at most 3 actions and 50 annotations per
request, and ``output.summary`` / ``output.text`` of at most 65535 characters; GitHub
refuses commit status descriptions over 140 characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MAX_ACTIONS = 3  # check run: at most 3 requested actions
MAX_ANNOTATIONS = 50  # check run: at most 50 annotations per request
MAX_OUTPUT_CHARS = 65535  # check run: output.summary and output.text
MAX_STATUS_DESCRIPTION = 140  # commit status description
TRUNCATED = "\n\n… (truncated)"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying so at the end."""
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def split_check_run(fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A check run body within GitHub's limits, plus follow-up updates for the rest.

    Over 50 annotations: the first 50 go with the request, each further 50 in an update
    (GitHub's documented way). Summary and text longer than 65535 characters are cut.
    More than 3 actions is a programming error.
    """
    body: dict[str, Any] = _jsonable(dict(fields))
    if len(body.get("actions") or []) > MAX_ACTIONS:
        raise ValueError(f"a check run takes at most {MAX_ACTIONS} actions")
    output = body.get("output")
    if not output:
        return body, []
    output = dict(output)
    for key in ("summary", "text"):
        if isinstance(output.get(key), str):
            output[key] = truncate(output[key], MAX_OUTPUT_CHARS)
    notes = list(output.pop("annotations", None) or [])
    batches = [notes[i : i + MAX_ANNOTATIONS] for i in range(0, len(notes), MAX_ANNOTATIONS)]
    if batches:
        output["annotations"] = batches[0]
    body["output"] = output
    header = {k: output[k] for k in ("title", "summary") if k in output}
    return body, [{"output": {**header, "annotations": batch}} for batch in batches[1:]]
