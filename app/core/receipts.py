"""What a webhook delivery must hold to be accepted: one schema per event PloyD acts on.

Each schema lists the fields the handlers read, with their types, so that a delivery
that would fail in the worker (a missing ``repository``, a ``pull_request.number`` that
is a string, a NUL byte in a ``ref``) is refused on receipt with a 400 naming the field,
instead of being answered 202 and failing later with a traceback. Fields the handlers
do not read are not looked at. Pure: no I/O.

Rules common to every field: a string holds no NUL byte (no store column takes one); an
integer is a JSON integer (not a boolean) in ``0 .. 2**63 - 1`` (a database BIGINT).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_INT = (1 << 63) - 1


@dataclass(frozen=True)
class Field:
    kind: str  # "str" | "int" | "bool" | "obj" | "list" | "any"
    required: bool = True
    nullable: bool = False
    fields: Mapping[str, Field] = field(default_factory=dict)  # for "obj"
    items: Field | None = None  # for "list"
    nonempty: bool = False  # for "str"
    slash: bool = False  # for "str": ``owner/name`` (at least one "/" between names)


def s(*, nonempty: bool = True, slash: bool = False) -> Field:
    return Field("str", nonempty=nonempty, slash=slash)


def i() -> Field:
    return Field("int")


def o(**fields: Field) -> Field:
    return Field("obj", fields=fields)


def opt(f: Field, *, null: bool = True) -> Field:
    """``f`` may be absent (and, unless ``null=False``, null)."""
    return Field(
        f.kind,
        required=False,
        nullable=null,
        fields=f.fields,
        items=f.items,
        nonempty=f.nonempty,
        slash=f.slash,
    )


def lst(item: Field) -> Field:
    return Field("list", items=item)


ANY = Field("any", required=False, nullable=True)

_KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    "obj": "an object",
    "list": "a list",
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check(spec: Field, value: Any, path: str) -> str | None:
    if value is None:
        if spec.nullable or spec.kind == "any":
            return None
        return f"field '{path}' must be {_KIND_NAMES[spec.kind]}, not null"
    kind = spec.kind
    if kind == "any":
        return None
    if kind == "str":
        if not isinstance(value, str):
            return f"field '{path}' must be a string, not {_type_name(value)}"
        if "\x00" in value:
            return f"field '{path}' must not contain a NUL byte"
        if spec.nonempty and not value:
            return f"field '{path}' must not be empty"
        if spec.slash:
            owner, _, name = value.partition("/")
            if not owner or not name or name.endswith("/"):
                return f"field '{path}' must be 'owner/name', not {value[:100]!r}"
        return None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"field '{path}' must be an integer, not {_type_name(value)}"
        if not 0 <= value <= MAX_INT:
            return f"field '{path}' must be between 0 and {MAX_INT}"
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            return f"field '{path}' must be true or false, not {_type_name(value)}"
        return None
    if kind == "obj":
        if not isinstance(value, dict):
            return f"field '{path}' must be an object, not {_type_name(value)}"
        return check_fields(spec.fields, value, path)
    if kind == "list":
        if not isinstance(value, list):
            return f"field '{path}' must be a list, not {_type_name(value)}"
        assert spec.items is not None
        for n, item in enumerate(value):
            problem = _check(spec.items, item, f"{path}[{n}]")
            if problem:
                return problem
        return None
    raise AssertionError(kind)


def check_fields(
    fields: Mapping[str, Field], payload: Mapping[str, Any], prefix: str = ""
) -> str | None:
    """The first problem with ``payload`` against ``fields`` (a message naming the
    field), or None when it holds what they say."""
    for name, spec in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in payload:
            if spec.required:
                return f"field '{path}' is required"
            continue
        problem = _check(spec, payload[name], path)
        if problem:
            return problem
    return None


# ---------------------------------------------------------------------------- GitHub

_login = opt(o(login=opt(s(nonempty=False))))
_sender = opt(o(login=opt(s(), null=False), type=opt(s(nonempty=False))), null=False)
_installation = o(id=i(), account=_login)
_repository = o(
    full_name=s(slash=True),
    default_branch=opt(s()),
    owner=_login,
)
_repo_ref = opt(o(full_name=opt(s(slash=True), null=False)))
_repos = opt(lst(o(full_name=s(slash=True))))

GITHUB: dict[str, dict[str, Field]] = {
    "push": {
        "installation": _installation,
        "repository": _repository,
        "ref": s(),
        "after": opt(s(nonempty=False)),
        "before": opt(s(nonempty=False)),
        "deleted": opt(Field("bool")),
        "pusher": opt(o(name=opt(s(nonempty=False)))),
        "sender": _sender,
    },
    "pull_request": {
        "installation": _installation,
        "repository": _repository,
        "action": s(),
        "number": i(),
        "pull_request": o(
            number=i(),
            user=o(login=s()),
            head=o(sha=s(), repo=_repo_ref),
            base=o(ref=s(), repo=_repo_ref),
        ),
        "sender": _sender,
    },
    "check_suite": {
        "installation": _installation,
        "repository": _repository,
        "check_suite": o(head_sha=s(), head_branch=opt(s()), before=opt(s(nonempty=False))),
        "sender": _sender,
    },
    "check_run": {
        "installation": _installation,
        "repository": _repository,
        "check_run": o(external_id=opt(s(nonempty=False))),
        "requested_action": opt(o(identifier=opt(s(), null=False))),
        "sender": o(login=s()),
    },
    "merge_group": {
        "installation": _installation,
        "repository": _repository,
        "merge_group": o(head_ref=s(), head_sha=s(), base_ref=s()),
        "sender": _sender,
    },
    "issue_comment": {
        "installation": _installation,
        "repository": _repository,
        "issue": o(number=i(), pull_request=ANY),
        "comment": o(
            id=i(),
            user=o(login=s(), type=opt(s(nonempty=False))),
            body=opt(s(nonempty=False)),
        ),
        "sender": o(login=opt(s(), null=False), type=opt(s(nonempty=False))),
    },
    "installation": {
        "installation": _installation,
        "action": s(),
        "repositories": _repos,
        "sender": _sender,
    },
    "installation_repositories": {
        "installation": _installation,
        "action": s(),
        "repositories_added": _repos,
        "repositories_removed": _repos,
        "sender": _sender,
    },
}

# ---------------------------------------------------------------------------- GitLab

_project = o(
    path_with_namespace=s(slash=True),
    default_branch=opt(s()),
    git_http_url=opt(s()),
    http_url=opt(s()),
)
_push = {
    "project": _project,
    "ref": s(),
    "after": opt(s(nonempty=False)),
    "before": opt(s(nonempty=False)),
    "user_username": opt(s(nonempty=False)),
    "user_name": opt(s(nonempty=False)),
}

GITLAB: dict[str, dict[str, Field]] = {
    "Push Hook": _push,
    "Tag Push Hook": _push,
    "Merge Request Hook": {
        "project": _project,
        "object_attributes": o(
            action=opt(s(nonempty=False)),
            iid=i(),
            target_branch=s(),
            last_commit=opt(o(id=opt(s()))),
            oldrev=opt(s(nonempty=False)),
        ),
        "user": opt(o(username=opt(s(), null=False))),
    },
    "Note Hook": {
        "project": _project,
        "object_attributes": o(
            id=i(),
            note=opt(s(nonempty=False)),
            system=opt(Field("bool")),
            noteable_type=opt(s(nonempty=False)),
            action=opt(s(nonempty=False)),
        ),
        "merge_request": o(iid=i()),
        "user": o(username=s()),
    },
}


def github_problem(event: str, payload: Mapping[str, Any]) -> str | None:
    """Why PloyD cannot act on this GitHub delivery (None: it can, or it is not one of
    the events PloyD acts on)."""
    fields = GITHUB.get(event)
    return None if fields is None else check_fields(fields, payload)


def gitlab_problem(event: str, payload: Mapping[str, Any]) -> str | None:
    """Why PloyD cannot act on this GitLab delivery (None: it can)."""
    fields = GITLAB.get(event)
    return None if fields is None else check_fields(fields, payload)
