"""A compiled yes/no check of the JSON Schema, for the common case: a valid file.

``jsonschema`` is the reference validator and gives the detailed errors, but importing it
costs ~0.1 s and it walks a 500-job file in ~0.25 s. This module compiles the schema once
into plain closures that answer only "valid or not"; when the answer is "not", the loader
runs ``jsonschema`` for the errors. Only the keywords the schema uses are supported;
compiling a schema with any other assertion keyword raises ``ValueError`` (so a schema
change cannot silently weaken the check), and tests compare both validators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = {
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
    "errorMessage",
    "$comment",
    "default",
    "examples",
    "markdownDescription",
}
_SUPPORTED = {
    "type",
    "properties",
    "additionalProperties",
    "required",
    "enum",
    "const",
    "pattern",
    "minItems",
    "minProperties",
    "minLength",
    "minimum",
    "maximum",
    "items",
    "anyOf",
    "$ref",
    "propertyNames",
} | _ANNOTATIONS


def _is_type(value: Any, t: str) -> bool:
    if t == "string":
        return isinstance(value, str)
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if t == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float))
    raise ValueError(f"unsupported type {t!r}")


_PY_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "object": dict,
    "array": list,
    "boolean": bool,
    "null": type(None),
}


def _type_check(types: list[str]) -> Check:
    if all(t in _PY_TYPES for t in types):
        py: tuple[type, ...] = tuple(_PY_TYPES[t] for t in types)  # type: ignore[misc]
        return lambda v: isinstance(v, py)
    for t in types:
        _is_type(None, t)  # rejects unknown type names now
    return lambda v: any(_is_type(v, t) for t in types)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        if ref not in self.refs:
            if not ref.startswith("#/"):
                raise ValueError(f"unsupported $ref {ref!r}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            slot: list[Check] = []
            self.refs[ref] = lambda v: slot[0](v)  # forward reference, for recursive schemas
            compiled = self.compile(target)
            slot.append(compiled)
            self.refs[ref] = compiled
        return self.refs[ref]

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise ValueError(f"bad schema {schema!r}")
        unknown = set(schema) - _SUPPORTED
        if unknown:
            raise ValueError(f"fastcheck does not support {sorted(unknown)}")
        checks: list[Check] = []
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            checks.append(_type_check(types))
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        if "enum" in schema:
            choices = list(schema["enum"])
            checks.append(lambda v: any(_equal(v, c) for c in choices))
        if "const" in schema:
            const = schema["const"]
            checks.append(lambda v: _equal(v, const))
        if "pattern" in schema:
            rx = re.compile(schema["pattern"])
            checks.append(lambda v: not isinstance(v, str) or rx.search(v) is not None)
        if "minLength" in schema:
            n = schema["minLength"]
            checks.append(lambda v: not isinstance(v, str) or len(v) >= n)
        if "minimum" in schema or "maximum" in schema:
            lo, hi = schema.get("minimum"), schema.get("maximum")

            def num(v: Any) -> bool:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    return True
                return (lo is None or v >= lo) and (hi is None or v <= hi)

            checks.append(num)
        if "minItems" in schema:
            n_items = schema["minItems"]
            checks.append(lambda v: not isinstance(v, list) or len(v) >= n_items)
        if "items" in schema:
            item = self.compile(schema["items"])

            def items(v: Any) -> bool:
                if isinstance(v, list):
                    for x in v:
                        if not item(x):
                            return False
                return True

            checks.append(items)
        if any(
            k in schema
            for k in (
                "properties",
                "additionalProperties",
                "required",
                "propertyNames",
                "minProperties",
            )
        ):
            checks.append(self._object(schema))
        if "anyOf" in schema:
            branches = [self.compile(s) for s in schema["anyOf"]]

            def any_of(v: Any) -> bool:
                for b in branches:  # noqa: SIM110 - a plain loop is faster than any(genexpr)
                    if b(v):
                        return True
                return False

            checks.append(any_of)
        if not checks:
            return lambda v: True
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            first, second = checks
            return lambda v: first(v) and second(v)

        return lambda v: all(c(v) for c in checks)

    def _object(self, schema: dict[str, Any]) -> Check:
        props = {k: self.compile(s) for k, s in schema.get("properties", {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        extra: Check | None = None if extra_schema is True else self.compile(extra_schema)
        required = list(schema.get("required", []))
        names = self.compile(schema["propertyNames"]) if "propertyNames" in schema else None
        min_props = schema.get("minProperties", 0)

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            if len(v) < min_props:
                return False
            for r in required:
                if r not in v:
                    return False
            for k, x in v.items():
                if names is not None and not names(k):
                    return False
                c = props.get(k)
                if c is not None:
                    if not c(x):
                        return False
                elif extra is not None and not extra(x):
                    return False
            return True

        return check


def compile_schema(schema: dict[str, Any]) -> Check:
    """A function telling whether an instance is valid under ``schema``."""
    return _Compiler(schema).compile(schema)
