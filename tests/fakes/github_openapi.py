"""GitHub's OpenAPI description, as the fake GitHub uses it: match, validate, synthesise.

Pure functions over ``tests/contracts/github-rest-openapi-subset.json`` (GitHub's official
REST description, dereferenced). No I/O beyond reading the file once.

* ``Spec.match(method, raw_path)``: which described operation a request is, with its
  path parameters (templating: ``{name}`` matches one segment; the last template segment
  takes the rest of the path, as GitHub does for ``contents/{path}`` and ``compare/{basehead}``).
* ``Operation.check_params`` / ``Operation.check_body``: the request against ``parameters``
  and ``requestBody`` (OpenAPI 3.0 JSON Schema: ``nullable`` is honoured, unknown keywords
  such as ``example`` are ignored).
* ``Operation.response_errors``: an answer against the described response schema.
* ``synthesize(schema)``: a minimal instance of a response schema (``example`` values where
  the spec gives them), which the fake overlays with its own state.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema

SPEC_PATH = Path(__file__).resolve().parents[1] / "contracts" / "github-rest-openapi-subset.json"
METHODS = ("get", "put", "post", "patch", "delete", "head")


def to_json_schema(schema: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema (draft 4): ``nullable: true`` admits null."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_json_schema(v) for k, v in schema.items() if k not in ("example", "examples")}
    if out.pop("nullable", False):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        for key in ("oneOf", "anyOf"):
            if key in out:
                out[key] = [*out[key], {"type": "null"}]
        if "allOf" in out:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


_VALIDATORS: dict[int, tuple[Any, jsonschema.Draft4Validator]] = {}


def _validator(schema: Any) -> jsonschema.Draft4Validator:
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:  # keep ``schema`` alive: ids stay unique
        cached = (schema, jsonschema.Draft4Validator(to_json_schema(schema)))
        _VALIDATORS[id(schema)] = cached
    return cached[1]


def schema_errors(schema: Any, instance: Any) -> list[str]:
    """Human-readable validation errors, empty when ``instance`` satisfies ``schema``."""
    errors = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    out = []
    for err in errors:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
    return out


_PLACEHOLDER_STRINGS = {
    "date-time": "2024-01-01T00:00:00Z",
    "uri": "https://github.com/",
    "email": "octocat@github.com",
}


def synthesize(schema: Any) -> Any:
    """A small instance of ``schema``: required fields only, examples where valid."""
    if not isinstance(schema, dict):
        return None
    if "example" in schema and not schema_errors(schema, schema["example"]):
        return copy.deepcopy(schema["example"])
    if schema.get("nullable"):
        return None
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return synthesize(schema[key][0])
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = synthesize(part)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: synthesize(props.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [synthesize(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return _PLACEHOLDER_STRINGS.get(schema.get("format", ""), "")
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def _object_view(schema: Any) -> dict[str, Any]:
    """The non-null, object-or-array alternative of ``schema`` (allOf merged)."""
    if not isinstance(schema, dict):
        return {}
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"]
            return _object_view(options[0]) if options else {}
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            view = _object_view(part)
            merged["properties"].update(view.get("properties", {}))
            merged["required"] += view.get("required", [])
        return merged
    return schema


def conform(schema: Any, overlay: Any) -> Any:
    """``overlay`` completed to an instance of ``schema``.

    Objects get the schema's required fields they lack (synthesised, see ``synthesize``),
    recursively, even where the schema is nullable and a bare ``synthesize`` gives null;
    arrays are conformed item by item; anything else is taken as is.
    """
    view = _object_view(schema)
    if isinstance(overlay, dict):
        props = view.get("properties", {})
        base = synthesize({**view, "nullable": False, "example": None} if view else {})
        base = base if isinstance(base, dict) else {}
        out = {k: v for k, v in base.items() if k not in overlay}
        for key, value in overlay.items():
            out[key] = conform(props.get(key, {}), value)
        return dict(sorted(out.items(), key=lambda kv: kv[0] not in overlay))
    if isinstance(overlay, list):
        items = view.get("items", {})
        return [conform(items, v) for v in overlay]
    return overlay


def _coerce(value: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    kind = schema.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            return None, f"{value!r} is not an integer"
        return int(value), None
    if kind == "boolean":
        if value not in ("true", "false"):
            return None, f"{value!r} is not a boolean"
        return value == "true", None
    return value, None


@dataclass
class Operation:
    method: str
    template: str
    raw: Mapping[str, Any]
    segments: list[str] = field(default_factory=list)

    @property
    def operation_id(self) -> str:
        return str(self.raw.get("operationId", ""))

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    def parameters(self, where: str) -> list[Mapping[str, Any]]:
        return [p for p in self.raw.get("parameters", []) if p.get("in") == where]

    def check_params(
        self, path_params: Mapping[str, str], query: Mapping[str, str]
    ) -> tuple[dict[str, Any], list[str]]:
        """Typed parameters and the errors, per the operation's ``parameters``."""
        values: dict[str, Any] = {}
        errors: list[str] = []
        for where, given in (("path", path_params), ("query", query)):
            described = {p["name"]: p for p in self.parameters(where)}
            for name in given:
                if name not in described:
                    errors.append(f"{where} parameter {name!r} is not described")
            for name, param in described.items():
                if name not in given:
                    if param.get("required"):
                        errors.append(f"{where} parameter {name!r} is required")
                    continue
                schema = param.get("schema", {})
                value, err = _coerce(given[name], schema)
                if err is None:
                    problems = schema_errors(schema, value)
                    err = "; ".join(problems) if problems else None
                if err:
                    errors.append(f"{where} parameter {name!r}: {err}")
                else:
                    values[name] = value
        return values, errors

    def body_schema(self) -> Mapping[str, Any] | None:
        body = self.raw.get("requestBody")
        if not body:
            return None
        schema: Mapping[str, Any] | None = (
            body.get("content", {}).get("application/json", {}).get("schema")
        )
        return schema

    def check_body(self, raw_body: bytes, content_type: str) -> tuple[Any, list[str]]:
        """The decoded JSON body and the errors, per ``requestBody``."""
        body = self.raw.get("requestBody")
        if not raw_body:
            if body and body.get("required"):
                return None, ["a request body is required"]
            return None, []
        if not content_type.startswith("application/json"):
            return None, [f"content-type {content_type!r}: expected application/json"]
        try:
            data = json.loads(raw_body)
        except ValueError as exc:
            return None, [f"body is not JSON: {exc}"]
        schema = self.body_schema()
        if schema is None:
            return data, [] if data in (None, {}) else ["this operation takes no request body"]
        return data, [f"body {e}" for e in schema_errors(schema, data)]

    def response_schema(self, status: int) -> Mapping[str, Any] | None:
        resp = self.raw.get("responses", {}).get(str(status))
        if not resp:
            return None
        schema: Mapping[str, Any] | None = (
            resp.get("content", {}).get("application/json", {}).get("schema")
        )
        return schema

    def response_errors(self, status: int, data: Any) -> list[str]:
        if str(status) not in self.raw.get("responses", {}):
            return [f"status {status} is not a described response"]
        schema = self.response_schema(status)
        if schema is None or data is None:
            return []
        return schema_errors(schema, data)

    def synthesize(self, status: int) -> Any:
        schema = self.response_schema(status)
        return synthesize(schema) if schema is not None else None


class Spec:
    """The described operations, matched by method and path."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.operations: list[Operation] = []
        for template, item in document["paths"].items():
            for method, raw in item.items():
                if method in METHODS:
                    op = Operation(method.upper(), template, raw, template.strip("/").split("/"))
                    self.operations.append(op)
        # Literal segments win over templated ones (as in any router).
        self.operations.sort(key=lambda o: sum(s.startswith("{") for s in o.segments))

    def by_key(self, method: str, template: str) -> Operation:
        for op in self.operations:
            if op.method == method.upper() and op.template == template:
                return op
        raise KeyError(f"{method} {template}")

    def match(self, method: str, raw_path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation ``method raw_path`` is, with its (decoded) path parameters.

        Exact segment counts first; then a trailing ``{param}`` may take several segments
        (``contents/{path}`` with ``a/b.yml``, ``compare/{basehead}`` with ``main...x/y``).
        """
        parts = raw_path.strip("/").split("/")
        for greedy in (False, True):
            for op in self.operations:
                if op.method != method.upper():
                    continue
                params = _match_segments(op.segments, parts, greedy)
                if params is not None:
                    return op, params
        return None


def _match_segments(template: list[str], parts: list[str], greedy: bool) -> dict[str, str] | None:
    if len(parts) < len(template) or (len(parts) > len(template) and not greedy):
        return None
    if len(parts) > len(template) and not template[-1].startswith("{"):
        return None
    params: dict[str, str] = {}
    for i, seg in enumerate(template):
        if seg.startswith("{") and seg.endswith("}"):
            value = "/".join(parts[i:]) if i == len(template) - 1 else parts[i]
            if not value:
                return None
            params[seg[1:-1]] = unquote(value)
        elif seg != parts[i]:
            return None
    return params


@functools.cache
def load_spec(path: str = str(SPEC_PATH)) -> Spec:
    with open(path, encoding="utf-8") as fh:
        return Spec(json.load(fh))
