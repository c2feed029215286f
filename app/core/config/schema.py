"""JSON Schema validation of a parsed `.ployd.yml`, with errors in words a person reads.

The schema (``schemas/ployd.schema.json``) is read and its validator compiled once per
process; ``jsonschema`` itself is imported on first use, not when this module is imported
(``ployd run`` imports the loader and has a tight start-up budget).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.config.errors import ConfigError
from app.core.config.yamlload import Document
from app.core.config.yamlload import Path as NodePath

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "ployd.schema.json"

_TYPE_WORDS = {
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The JSON Schema of the language (parsed once)."""
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return data


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # lazy: ~0.1 s

    return Draft202012Validator(load_schema())


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word``, if any is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    s = suggest(word, choices)
    return f" (did you mean '{s}'?)" if s else ""


def kind_of(value: Any) -> str:
    if value is None:
        return "empty"
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
        return "a mapping"
    return type(value).__name__


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


def subject(path: Sequence[str | int]) -> str:
    """How to name the node at ``path`` in a message."""
    p = list(path)
    if not p:
        return "the file"
    if p[0] == "jobs" and len(p) >= 2:
        if len(p) == 2:
            return f"job '{p[1]}'"
        return f"job '{p[1]}': '{dotted(p[2:])}'"
    if p[0] == "defaults" and len(p) >= 2:
        return f"defaults: '{dotted(p[1:])}'"
    return f"'{dotted(p)}'"


def _same_kind(inst: Any, choices: Any) -> bool:
    return bool(set(_json_types([inst])) & set(_json_types(choices)))


def _json_types(values: Any) -> list[str]:
    out: list[str] = []
    for v in values if isinstance(values, list) else [values]:
        if isinstance(v, bool):
            t = "boolean"
        elif isinstance(v, (int, float)):
            t = "number"
        elif isinstance(v, str):
            t = "string"
        elif isinstance(v, list):
            t = "array"
        elif isinstance(v, dict):
            t = "object"
        else:
            t = "null"
        if t not in out:
            out.append(t)
    return out


def _expected(types: Any) -> str:
    if isinstance(types, str):
        types = [types]
    words = [_TYPE_WORDS.get(t, t) for t in types]
    if len(words) > 1:
        words = ["a boolean" if w == "true or false" else w for w in words]
    if "a number" in words and "an integer" in words:
        words.remove("an integer")
    if len(words) == 1:
        return str(words[0])
    return ", ".join(str(w) for w in words[:-1]) + " or " + str(words[-1])


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=1)
def _fast_check() -> Callable[[Any], bool]:
    from app.core.config.fastcheck import compile_schema

    return compile_schema(load_schema())


def is_valid(data: Any) -> bool:
    """Does ``data`` pass the schema? (compiled check; no ``jsonschema`` import)"""
    return _fast_check()(data)


def schema_errors(doc: Document) -> list[ConfigError]:
    """Every schema violation in ``doc``, translated, each at its node.

    A compiled yes/no check runs first; ``jsonschema`` (the reference, with its detailed
    errors) is imported and run only for a document that fails it."""
    if is_valid(doc.data):
        return []
    out: list[ConfigError] = []
    for err in _validator().iter_errors(doc.data):
        out.extend(_translate(err, doc))
    return out


def _at(doc: Document, path: NodePath, message: str, key: bool = False) -> ConfigError:
    m = doc.key_mark(path) if key else doc.mark(path)
    return ConfigError(doc.file, m.line, m.column, message)


def _branch(err: Any) -> Any:
    return err.relative_schema_path[0] if err.relative_schema_path else None


def _translate(err: Any, doc: Document) -> list[ConfigError]:
    path: NodePath = tuple(err.absolute_path)
    v = err.validator
    inst = err.instance
    schema = err.schema if isinstance(err.schema, dict) else {}

    if v in ("anyOf", "oneOf") and err.context:
        # Branches whose root type did not match tell us nothing but the expected types.
        mismatched: set[Any] = set()
        for sub in err.context:
            if tuple(sub.absolute_path) != path:
                continue
            if sub.validator == "type" or (
                sub.validator in ("enum", "const") and not _same_kind(inst, sub.validator_value)
            ):
                mismatched.add(_branch(sub))
        relevant = [s for s in err.context if _branch(s) not in mismatched]
        if not relevant:
            types: list[str] = []
            for sub in err.context:
                vv = sub.validator_value
                if sub.validator in ("enum", "const"):
                    vv = _json_types(vv if sub.validator == "enum" else [vv])
                for t in [vv] if isinstance(vv, str) else list(vv):
                    if t not in types:
                        types.append(t)
            return [
                _at(doc, path, f"{subject(path)} must be {_expected(types)}, not {kind_of(inst)}")
            ]
        from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

        best = best_match(relevant)
        branch = _branch(best)
        out: list[ConfigError] = []
        for sub in relevant:
            if _branch(sub) == branch:
                out.extend(_translate(sub, doc))
        return out

    if v == "additionalProperties" and isinstance(inst, dict):
        known = list(schema.get("properties", {}))
        pats = [re.compile(p) for p in schema.get("patternProperties", {})]
        out = []
        for k in inst:
            if k in known or any(p.search(k) for p in pats):
                continue
            hint = did_you_mean(k, known)
            tail = "" if hint else f"; known keys: {', '.join(known)}"
            if not path:
                msg = f"unknown top-level key '{k}'"
            elif path[0] == "jobs" and len(path) >= 2:
                msg = f"unknown key '{k}' in job '{path[1]}'"
                if len(path) > 2:
                    msg += f" at '{dotted(path[2:])}'"
            elif path[0] == "defaults":
                msg = f"unknown key '{k}' in defaults"
                if len(path) > 1:
                    msg += f" at '{dotted(path[1:])}'"
            else:
                msg = f"unknown key '{k}' in '{dotted(path)}'"
            out.append(_at(doc, (*path, k), f"{msg}{hint}{tail}", key=True))
        return out

    if "propertyNames" in err.relative_schema_path or "propertyNames" in err.absolute_schema_path:
        msg = schema.get("errorMessage") or "is not a valid name"
        return [_at(doc, (*path, str(inst)), f"'{inst}' {msg}", key=True)]

    if v == "required" and isinstance(inst, dict):
        out = []
        for k in err.validator_value:
            if k not in inst:
                if not path:
                    msg = f"the file is missing the required top-level key '{k}'"
                    out.append(ConfigError(doc.file, 1, 1, msg))
                    continue
                out.append(
                    _at(
                        doc,
                        path,
                        f"{subject(path)} is missing the required key '{k}'",
                        key=isinstance(path[-1], str),
                    )
                )
        return out

    if v == "type":
        return [
            _at(
                doc,
                path,
                f"{subject(path)} must be {_expected(err.validator_value)}, not {kind_of(inst)}",
            )
        ]

    if v == "enum":
        choices = [str(c) for c in err.validator_value]
        hint = did_you_mean(str(inst), choices) if isinstance(inst, str) else ""
        return [
            _at(
                doc,
                path,
                f"{subject(path)} must be one of {', '.join(choices)}, not {_short(inst)}{hint}",
            )
        ]

    if v == "const":
        return [
            _at(
                doc,
                path,
                f"{subject(path)} must be {_short(err.validator_value)}, not {_short(inst)}",
            )
        ]

    if v == "pattern":
        msg = schema.get("errorMessage") or f"must match {err.validator_value}"
        return [_at(doc, path, f"{subject(path)} {msg}, not {_short(inst)}")]

    if v in ("minItems", "minProperties", "minLength"):
        n = err.validator_value
        if n == 1:
            return [_at(doc, path, f"{subject(path)} must not be empty")]
        return [_at(doc, path, f"{subject(path)} needs at least {n} entries")]

    if v in ("minimum", "maximum"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and hi is not None:
            rng = f"between {lo} and {hi}"
        elif lo is not None:
            rng = f"at least {lo}"
        else:
            rng = f"at most {hi}"
        return [_at(doc, path, f"{subject(path)} must be {rng}, not {_short(inst)}")]

    return [_at(doc, path, f"{subject(path)}: {err.message}")]
