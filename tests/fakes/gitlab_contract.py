"""The GitLab REST endpoints PloyD may call, as data: ``tests/contracts/gitlab-rest.md``.

Each ``Endpoint`` is a method, a path template under ``/api/v4`` (``:name`` is one URL
segment), the parameters the contract documents, and the name of the fake's handler.
``check`` validates a request's parameters the way GitLab's Grape API does: a missing
required parameter, a value outside an enum or of the wrong type answers 400; a string over
its documented length answers 400 as the model validation does. Parameters the contract
does not list are ignored by GitLab, so they are only reported (``unknown``), not rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

STATES = ("pending", "running", "success", "failed", "canceled", "skipped")
PAGED = ("page", "per_page")
DEPLOY_TOKEN_SCOPES = (
    "read_repository",
    "read_registry",
    "write_registry",
    "read_package_registry",
    "write_package_registry",
    "read_virtual_registry",
    "write_virtual_registry",
)


@dataclass(frozen=True)
class P:
    """One parameter: ``kind`` is string, integer, boolean, float, id (integer or path),
    datetime (ISO 8601) or array (of strings; ``enum`` applies to each)."""

    kind: str = "string"
    required: bool = False
    enum: tuple[str, ...] = ()
    max_len: int | None = None


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    handler: str
    params: dict[str, P] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        parts = self.template.strip("/").split("/")
        if method != self.method or len(parts) != len(segments):
            return None
        found: dict[str, str] = {}
        for part, seg in zip(parts, segments, strict=True):
            if part.startswith(":"):
                if not seg:
                    return None
                found[part[1:]] = unquote(seg)
            elif part != seg:
                return None
        return found


class ParamError(Exception):
    """A parameter GitLab would refuse: ``body`` is GitLab's JSON answer (400)."""

    def __init__(self, body: dict[str, Any], detail: str) -> None:
        super().__init__(detail)
        self.body = body
        self.detail = detail


def _p(kind: str = "string", **kw: Any) -> P:
    return P(kind, **kw)


_PROJECT = {"id": _p("id", required=True)}
_MR = {**_PROJECT, "merge_request_iid": _p("integer", required=True)}
_NOTE = {**_MR, "note_id": _p("integer", required=True)}
_PAGES = {name: _p("integer") for name in PAGED}
_MRS = "/projects/:id/merge_requests/:merge_request_iid"

ENDPOINTS: tuple[Endpoint, ...] = (
    # 1. commit statuses
    Endpoint(
        "POST",
        "/projects/:id/statuses/:sha",
        "create_status",
        {
            **_PROJECT,
            "sha": _p(required=True),
            "state": _p(required=True, enum=STATES),
            "name": _p(),
            "context": _p(),
            "target_url": _p(max_len=255),
            "description": _p(max_len=255),
            "coverage": _p("float"),
            "pipeline_id": _p("integer"),
            "ref": _p(max_len=255),
        },
    ),
    Endpoint(
        "GET",
        "/projects/:id/repository/commits/:sha/statuses",
        "list_statuses",
        {
            **_PROJECT,
            **_PAGES,
            "sha": _p(required=True),
            "ref": _p(),
            "stage": _p(),
            "name": _p(),
            "pipeline_id": _p("integer"),
            "all": _p("boolean"),
            "order_by": _p(enum=("id", "pipeline_id")),
            "sort": _p(enum=("asc", "desc")),
        },
    ),
    # 2. MR notes
    Endpoint(
        "GET",
        f"{_MRS}/notes",
        "list_notes",
        {
            **_MR,
            **_PAGES,
            "sort": _p(enum=("asc", "desc")),
            "order_by": _p(enum=("created_at", "updated_at")),
        },
    ),
    Endpoint("GET", f"{_MRS}/notes/:note_id", "get_note", dict(_NOTE)),
    Endpoint(
        "POST",
        f"{_MRS}/notes",
        "create_note",
        {
            **_MR,
            "body": _p(required=True, max_len=1_000_000),
            "created_at": _p(),
            "merge_request_diff_head_sha": _p(),
        },
    ),
    Endpoint(
        "PUT",
        f"{_MRS}/notes/:note_id",
        "edit_note",
        {**_NOTE, "body": _p(required=True, max_len=1_000_000), "confidential": _p("boolean")},
    ),
    Endpoint("DELETE", f"{_MRS}/notes/:note_id", "delete_note", dict(_NOTE)),
    # 3. repository files
    Endpoint(
        "GET",
        "/projects/:id/repository/files/:file_path/raw",
        "raw_file",
        {**_PROJECT, "file_path": _p(required=True), "ref": _p(), "lfs": _p("boolean")},
    ),
    Endpoint(
        "HEAD",
        "/projects/:id/repository/files/:file_path/raw",
        "raw_file",
        {**_PROJECT, "file_path": _p(required=True), "ref": _p(), "lfs": _p("boolean")},
    ),
    Endpoint(
        "GET",
        "/projects/:id/repository/files/:file_path",
        "file_json",
        {**_PROJECT, "file_path": _p(required=True), "ref": _p(required=True)},
    ),
    # 4. members, including inherited
    Endpoint(
        "GET",
        "/projects/:id/members/all/:user_id",
        "member_all",
        {**_PROJECT, "user_id": _p("integer", required=True)},
    ),
    # 5. emoji reactions, on the MR and on its notes
    Endpoint("GET", f"{_MRS}/award_emoji", "list_awards", {**_MR, **_PAGES}),
    Endpoint(
        "GET",
        f"{_MRS}/award_emoji/:award_id",
        "get_award",
        {**_MR, "award_id": _p("integer", required=True)},
    ),
    Endpoint("POST", f"{_MRS}/award_emoji", "create_award", {**_MR, "name": _p(required=True)}),
    Endpoint(
        "DELETE",
        f"{_MRS}/award_emoji/:award_id",
        "delete_award",
        {**_MR, "award_id": _p("integer", required=True)},
    ),
    Endpoint("GET", f"{_MRS}/notes/:note_id/award_emoji", "list_awards", {**_NOTE, **_PAGES}),
    Endpoint(
        "POST",
        f"{_MRS}/notes/:note_id/award_emoji",
        "create_award",
        {**_NOTE, "name": _p(required=True)},
    ),
    Endpoint(
        "GET",
        f"{_MRS}/notes/:note_id/award_emoji/:award_id",
        "get_award",
        {**_NOTE, "award_id": _p("integer", required=True)},
    ),
    Endpoint(
        "DELETE",
        f"{_MRS}/notes/:note_id/award_emoji/:award_id",
        "delete_award",
        {**_NOTE, "award_id": _p("integer", required=True)},
    ),
    # 6. merge requests
    Endpoint(
        "GET",
        _MRS,
        "get_mr",
        {
            **_MR,
            "include_diverged_commits_count": _p("boolean"),
            "include_rebase_in_progress": _p("boolean"),
            "render_html": _p("boolean"),
        },
    ),
    Endpoint("GET", f"{_MRS}/diffs", "mr_diffs", {**_MR, **_PAGES, "unidiff": _p("boolean")}),
    Endpoint(
        "GET",
        f"{_MRS}/changes",
        "mr_changes",
        {**_MR, "access_raw_diffs": _p("boolean"), "unidiff": _p("boolean")},
    ),
    Endpoint("GET", f"{_MRS}/raw_diffs", "mr_raw_diffs", dict(_MR)),
    # 10. compare (added section)
    Endpoint(
        "GET",
        "/projects/:id/repository/compare",
        "compare",
        {
            **_PROJECT,
            "from": _p(required=True),
            "to": _p(required=True),
            "from_project_id": _p("integer"),
            "straight": _p("boolean"),
            "unidiff": _p("boolean"),
        },
    ),
    # 13. the calling token (added section)
    Endpoint("GET", "/personal_access_tokens/self", "token_self", {}),
    # 14. project deploy tokens (added section)
    Endpoint(
        "POST",
        "/projects/:id/deploy_tokens",
        "create_deploy_token",
        {
            **_PROJECT,
            "name": _p(required=True),
            "scopes": _p("array", required=True, enum=DEPLOY_TOKEN_SCOPES),
            "expires_at": _p("datetime"),
            "username": _p(),
        },
    ),
    Endpoint(
        "DELETE",
        "/projects/:id/deploy_tokens/:token_id",
        "delete_deploy_token",
        {**_PROJECT, "token_id": _p("integer", required=True)},
    ),
    # 11. users by username (added section)
    Endpoint(
        "GET",
        "/users",
        "find_users",
        {
            **_PAGES,
            "username": _p(),
            "search": _p(),
            "active": _p("boolean"),
            "external": _p("boolean"),
            "blocked": _p("boolean"),
            "humans": _p("boolean"),
        },
    ),
)


def find_endpoint(method: str, raw_path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The endpoint for ``method`` and a raw (still %-encoded) path below ``/api/v4``."""
    segments = raw_path.strip("/").split("/")
    for endpoint in ENDPOINTS:
        found = endpoint.match(method, segments)
        if found is not None:
            return endpoint, found
    return None


def _coerce(name: str, spec: P, value: Any) -> Any:
    """``value`` as GitLab would read it, or ParamError (``<name> is invalid``)."""
    invalid = ParamError({"error": f"{name} is invalid"}, f"{name}={value!r}: not a {spec.kind}")
    if spec.kind in ("integer", "id"):
        if isinstance(value, bool):
            raise invalid
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        if spec.kind == "id" and isinstance(value, str) and value:
            return value  # a namespace/path
        raise invalid
    if spec.kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise invalid
    if spec.kind == "array":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid
        return value
    if spec.kind == "datetime":
        if not isinstance(value, str):
            raise invalid
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise invalid from None
        return value
    if spec.kind == "float":
        if isinstance(value, bool):
            raise invalid
        try:
            return float(value)
        except (TypeError, ValueError):
            raise invalid from None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid
    return str(value)


def check(endpoint: Endpoint, given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validated parameters, and the names the contract does not know; or ParamError."""
    values: dict[str, Any] = {}
    for name, spec in endpoint.params.items():
        if name not in given or given[name] is None:
            if spec.required:
                raise ParamError({"error": f"{name} is missing"}, f"{name} is required")
            continue
        value = _coerce(name, spec, given[name])
        if spec.kind == "array" and spec.enum:
            if not value or any(v not in spec.enum for v in value):
                raise ParamError(
                    {"error": f"{name} does not have a valid value"},
                    f"{name}={value!r}: each must be one of {', '.join(spec.enum)}",
                )
        elif spec.enum and value not in spec.enum:
            raise ParamError(
                {"error": f"{name} does not have a valid value"},
                f"{name}={value!r} not in {', '.join(spec.enum)}",
            )
        if spec.max_len is not None and isinstance(value, str) and len(value) > spec.max_len:
            raise ParamError(
                {"message": {name: [f"is too long (maximum is {spec.max_len} characters)"]}},
                f"{name} has {len(value)} characters, at most {spec.max_len} allowed",
            )
        values[name] = value
    unknown = sorted(set(given) - set(endpoint.params))
    return values, unknown
