"""A guarded YAML reader that keeps where every node came from.

PyYAML's own composer is recursive and its constructors lose positions, so this module
drives the (libyaml when available) event parser itself, with an explicit stack:

* every value gets the ``Mark`` of its node, every mapping entry the ``Mark`` of its key,
  stored by path (``("jobs", "unit", "steps", 0, "run")``);
* hostile input stops early with a clear error: more than ``MAX_NODES`` nodes (counting
  what aliases expand to, so "billion laughs" ends after a few thousand events), nesting
  deeper than ``MAX_DEPTH``, files over ``MAX_BYTES``, control characters, several
  documents, duplicate keys;
* scalars resolve as YAML 1.1 except booleans, which are only ``true`` / ``false`` (any
  case), as in YAML 1.2: ``on:``, ``yes``, ``no``, ``off`` stay strings;
* for non-string scalars the source text is kept, so that ``3.10`` can become the string
  ``"3.10"`` (not ``"3.1"``) where strings are wanted.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import events as ev
from yaml.nodes import ScalarNode

from app.core.config.errors import ConfigError
from app.core.config.model import Mark

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

Path = tuple[str | int, ...]

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")

_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAGS = {None, "!", "tag:yaml.org,2002:map"}
_SEQ_TAGS = {None, "!", "tag:yaml.org,2002:seq"}


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.1 implicit types, but booleans only for true/false (so ``on:`` is a key)."""

    yaml_implicit_resolvers: dict[Any, Any] = {
        ch: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
        for ch, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }


_Resolver.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("tTfF"))

_CONSTRUCTOR = yaml.constructor.SafeConstructor()

try:  # libyaml is ~10x faster; the pure-Python parser gives the same events.
    from yaml import CSafeLoader as _EventSource
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _EventSource  # type: ignore[assignment]


class YamlFatal(Exception):
    """Reading cannot go on; ``error`` says where and why."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class Document:
    """Plain data (dict/list/str/int/float/bool/None) plus where each part came from."""

    data: Any
    file: str
    # (line, column), 1-based, by path: of each value node, and of each mapping key
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    raw: dict[Path, str] = field(default_factory=dict)
    # (path, text) of every string holding "${{" (outside aliases)
    expressions: list[tuple[Path, str]] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)  # non-fatal (duplicate keys)

    def mark(self, path: Path) -> Mark:
        """The mark of the value at ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            lc = self.positions.get(p)
            if lc is not None:
                return Mark(self.file, *lc)
            p = p[:-1]
        return Mark(self.file, *self.positions.get((), (1, 1)))

    def key_mark(self, path: Path) -> Mark:
        """The mark of the key whose value is at ``path`` (falls back to the value's)."""
        lc = self.key_positions.get(tuple(path))
        return Mark(self.file, *lc) if lc is not None else self.mark(path)

    def text(self, path: Path, value: Any) -> str:
        """``value`` (a scalar at ``path``) as the user wrote it, for string contexts."""
        if isinstance(value, str):
            return value
        raw = self.raw.get(tuple(path))
        if raw is not None:
            return raw
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def _offset(text: str, m: Any) -> int:
    """The index in ``text`` of a mark (its line and column)."""
    lines = text.split("\n")
    line = min(max(int(m.line), 0), len(lines) - 1)
    return sum(len(x) + 1 for x in lines[:line]) + min(int(m.column), len(lines[line]))


def _expression_in_flow(file: str, exc: yaml.MarkedYAMLError, text: str) -> ConfigError | None:
    """``key: {a: x-${{ e }}}``: YAML reads ``{`` as the start of a mapping, so a ``${{ }}``
    in a flow collection (``{...}``, ``[...]``) must be in a quoted string. The error
    names the value to quote, where it starts."""
    if exc.context_mark is None or exc.problem_mark is None:
        return None
    start, end = _offset(text, exc.context_mark), _offset(text, exc.problem_mark)
    at = text.find("${{", start, max(end, start) + 3)
    if at < 0:
        return None
    begin = at  # back to where the plain value holding it starts
    while begin > start and text[begin - 1] not in ",[{\n" and text[begin - 2 : begin] != ": ":
        begin -= 1
    while text[begin] == " ":
        begin += 1
    close = text.find("}}", at)
    stop = close + 2 if close >= 0 else at + 3
    while stop < len(text) and text[stop] not in ",]}\n":
        stop += 1
    value = text[begin:stop].strip()
    line, col = _line_col(text, begin)
    kind = "mapping {...}" if "mapping" in (exc.context or "") else "sequence [...]"
    return ConfigError(
        file,
        line,
        col,
        f"YAML syntax error: ${{{{ }}}} inside a flow {kind} must be quoted: write "
        f"{_quoted(value)} (in YAML a bare {{ starts a mapping)",
    )


def _quoted(value: str) -> str:
    """``value`` as a YAML string in quotes (double unless it has ``"`` or ``\\``)."""
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"


def _syntax_error(file: str, exc: yaml.YAMLError, text: str) -> ConfigError:
    if isinstance(exc, yaml.MarkedYAMLError):
        m = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if "nesting depth" in problem:
            line, col = _lc(m)
            return ConfigError(file, line, col, f"file is nested more than {MAX_DEPTH} levels deep")
        context = exc.context or ""
        if context.startswith("while parsing a flow"):
            quoted = _expression_in_flow(file, exc, text)
            if quoted is not None:
                return quoted
        if exc.context_mark is not None and context.startswith("while scanning a quoted"):
            # reported where the string opens, not where the file ends
            line, col = _lc(exc.context_mark)
            row = text.split("\n")[line - 1] if line <= text.count("\n") + 1 else ""
            quote = row[col - 1 : col] or '"'
            end_line, _ = _lc(exc.problem_mark)
            return ConfigError(
                file,
                line,
                col,
                f"YAML syntax error: this {quote}-quoted string is never closed "
                f"(no closing {quote} before line {end_line}): {problem}",
            )
        if exc.context_mark is not None and context.startswith("while parsing a flow"):
            cl, cc = _lc(exc.context_mark)
            pl, pc = _lc(exc.problem_mark)
            if cl != pl or "end of stream" in problem:
                opener = "[" if "sequence" in context else "{"
                return ConfigError(
                    file,
                    cl,
                    cc,
                    f"YAML syntax error: the {opener} opened here is not closed: "
                    f"{problem} (line {pl}, column {pc})",
                )
        msg = f"YAML syntax error: {problem}"
        if exc.context:
            msg = f"YAML syntax error: {problem} ({exc.context})"
        line, col = _lc(m)
        lines = text.splitlines()
        here = lines[line - 1][col - 1 : col] if 0 < line <= len(lines) else ""
        if "\t" in problem or here == "\t":
            msg += "; tabs are not allowed for indentation in YAML, use spaces"
        elif "mapping values are not allowed" in problem and 0 < line <= len(lines):
            # at the value that holds the ': ', not at the ': ' inside it
            row = lines[line - 1]
            first = row.find(": ")
            if 0 <= first < col - 1:
                col = first + 3 + len(row[first + 2 :]) - len(row[first + 2 :].lstrip(" "))
            msg += " (a value holding ': ' must be quoted, or written as a block: run: |)"
        return ConfigError(file, line, col, msg)
    return ConfigError(file, 1, 1, f"YAML error: {exc}")


def _lc(m: Any) -> tuple[int, int]:
    if m is None:
        return 1, 1
    return int(m.line) + 1, int(m.column) + 1


_IMPLICIT: dict[Any, Any] = _Resolver.yaml_implicit_resolvers


def _scalar(event: Any) -> tuple[Any, bool]:
    """(value, is_plain_string) for a scalar event."""
    tag = event.tag
    value = event.value
    if tag is None or tag == "!":
        if tag is None and event.implicit[0]:  # plain: try the implicit types
            tag = _STR_TAG
            for t, rx in _IMPLICIT.get(value[:1] if value else "", ()):
                if rx.match(value):
                    tag = t
                    break
        else:
            tag = _STR_TAG
    if tag == _STR_TAG:
        return value, True
    if tag == _NULL_TAG:
        return None, False
    if tag == _BOOL_TAG:
        return value.lower() == "true", False
    if tag == _INT_TAG:
        return _CONSTRUCTOR.construct_yaml_int(ScalarNode(tag, value)), False
    if tag == _FLOAT_TAG:
        return _CONSTRUCTOR.construct_yaml_float(ScalarNode(tag, value)), False
    if tag == _MERGE_TAG:
        return _MERGE, False
    if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"):
        return value, True  # dates stay as written
    raise ValueError(f"unsupported YAML tag {tag!r}")


class _MergeKey:
    def __repr__(self) -> str:
        return "<<"


_MERGE = _MergeKey()


class _Discard:
    """The key of a duplicate entry: its value is read (for errors) and dropped."""

    __slots__ = ()


class _Frame:
    __slots__ = (
        "anchor",
        "depth",
        "is_map",
        "key",
        "key_mark",
        "mark",
        "merges",
        "nodes",
        "path",
        "value",
    )

    def __init__(self, is_map: bool, path: Path, mark: tuple[int, int], anchor: str | None) -> None:
        self.anchor = anchor
        self.is_map = is_map
        self.value: Any = {} if is_map else []
        self.path = path
        self.mark = mark
        self.depth = 0  # how deep the tree below this node goes
        self.nodes = 1
        self.key: Any = None  # pending key (mappings)
        self.key_mark: tuple[int, int] | None = None
        self.merges: list[tuple[Any, tuple[int, int]]] = []


def load_yaml(text: str, file: str = ".ployd.yml") -> Document:
    """Parse ``text`` into a ``Document``; raises ``YamlFatal`` for unreadable input."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlFatal(
            ConfigError(
                file,
                1,
                1,
                f"file is larger than {MAX_BYTES // (1024 * 1024)} MB; "
                "a .ployd.yml should be a few kilobytes",
            )
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    bad = _CONTROL_RE.search(text)
    if bad is not None:
        line, col = _line_col(text, bad.start())
        raise YamlFatal(
            ConfigError(
                file,
                line,
                col,
                f"control character U+{ord(bad.group()):04X} in the file; "
                "is it a binary file? A .ployd.yml must be UTF-8 text",
            )
        )
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise YamlFatal(
            ConfigError(file, 1, 1, "file is empty; it needs at least 'version: 1' and 'jobs:'")
        )
    gc_was_enabled = gc.isenabled()
    gc.disable()  # building allocates many small containers and no cycles
    try:
        return _build(text, file)
    except yaml.YAMLError as exc:
        raise YamlFatal(_syntax_error(file, exc, text)) from None
    except RecursionError:  # pragma: no cover - the explicit stack should prevent this
        raise YamlFatal(ConfigError(file, 1, 1, "file is nested too deeply")) from None
    finally:
        if gc_was_enabled:
            gc.enable()


def _build(text: str, file: str) -> Document:
    source = _EventSource(text)
    doc = Document(data=None, file=file)
    anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, node count, depth)
    stack: list[_Frame] = []
    total = 0
    documents = 0
    result: Any = None
    have_result = False
    get_event: Callable[[], Any] = source.get_event
    ScalarEvent, MappingStartEvent, SequenceStartEvent = (
        ev.ScalarEvent,
        ev.MappingStartEvent,
        ev.SequenceStartEvent,
    )
    MappingEndEvent, SequenceEndEvent, AliasEvent = (
        ev.MappingEndEvent,
        ev.SequenceEndEvent,
        ev.AliasEvent,
    )

    def fatal(lc: tuple[int, int], message: str) -> YamlFatal:
        return YamlFatal(ConfigError(file, lc[0], lc[1], message))

    def child_path() -> Path:
        top = stack[-1]
        if top.is_map:
            return (*top.path, top.key)
        return (*top.path, len(top.value))

    def attach(value: Any, m: tuple[int, int], nodes: int, depth: int, anchor: str | None) -> None:
        nonlocal result, have_result
        if anchor is not None:
            anchors[anchor] = (value, nodes, depth)
        if not stack:
            result = value
            have_result = True
            return
        top = stack[-1]
        top.nodes += nodes
        if depth + 1 > top.depth:
            top.depth = depth + 1
        if top.is_map:
            key = top.key
            top.key = None
            if key is _MERGE:
                top.merges.append((value, m))
                return
            if isinstance(key, _Discard):
                return
            top.value[key] = value
        else:
            top.value.append(value)

    while True:
        event = get_event()
        cls = type(event)
        if cls is ScalarEvent:
            sm = event.start_mark
            lc = (sm.line + 1, sm.column + 1)
            value = event.value
            if event.tag is None and (not event.implicit[0] or value[:1] not in _IMPLICIT):
                plain = True  # a string: quoted, block, or no implicit type starts so
            else:
                try:
                    value, plain = _scalar(event)
                except ValueError as exc:
                    raise fatal(lc, str(exc)) from None
            top = stack[-1] if stack else None
            if top is not None and top.is_map and top.key is None:
                key = value if (plain or value is _MERGE) else event.value
                top.key_mark = lc
                if key is not _MERGE:
                    if key in top.value:
                        first = doc.key_positions.get((*top.path, key))
                        where = f" (first defined on line {first[0]})" if first else ""
                        doc.errors.append(
                            ConfigError(file, lc[0], lc[1], f"duplicate key '{key}'{where}")
                        )
                        key = _Discard()
                    else:
                        doc.key_positions[(*top.path, key)] = lc
                top.key = key
                continue
            total += 1
            if total > MAX_NODES:
                raise fatal(lc, f"file has more than {MAX_NODES} YAML nodes; refusing to read it")
            if top is None:
                path: Path = ()
            elif top.is_map:
                path = (*top.path, top.key)
            else:
                path = (*top.path, len(top.value))
            doc.positions[path] = lc
            if plain:
                if "${{" in value:
                    doc.expressions.append((path, value))
            elif value is not _MERGE:
                doc.raw[path] = event.value
            if top is not None and event.anchor is None:
                top.nodes += 1
                if top.depth < 1:
                    top.depth = 1
                if top.is_map:
                    key = top.key
                    top.key = None
                    if key is _MERGE:
                        top.merges.append((value, lc))
                    elif not isinstance(key, _Discard):
                        top.value[key] = value
                else:
                    top.value.append(value)
            else:
                attach(value, lc, 1, 0, event.anchor)
        elif cls is MappingStartEvent or cls is SequenceStartEvent:
            sm = event.start_mark
            lc = (sm.line + 1, sm.column + 1)
            if stack and stack[-1].is_map and stack[-1].key is None:
                raise fatal(lc, "a mapping key must be a plain value, not a list or mapping")
            is_map = cls is MappingStartEvent
            if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                raise fatal(lc, f"unsupported YAML tag {event.tag!r}")
            total += 1
            if total > MAX_NODES:
                raise fatal(lc, f"file has more than {MAX_NODES} YAML nodes; refusing to read it")
            if len(stack) >= MAX_DEPTH:
                raise fatal(lc, f"file is nested more than {MAX_DEPTH} levels deep")
            path = child_path() if stack else ()
            doc.positions[path] = lc
            stack.append(_Frame(is_map, path, lc, event.anchor))
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            frame = stack.pop()
            if frame.is_map and frame.merges:
                _apply_merges(frame, fatal)
            attach(frame.value, frame.mark, frame.nodes, frame.depth, frame.anchor)
        elif cls is AliasEvent:
            sm = event.start_mark
            lc = (sm.line + 1, sm.column + 1)
            if stack and stack[-1].is_map and stack[-1].key is None:
                raise fatal(lc, "an alias cannot be used as a mapping key")
            target = anchors.get(event.anchor)
            if target is None:
                raise fatal(
                    lc,
                    f"alias *{event.anchor} refers to no anchor defined before it "
                    "(or to the node that contains it)",
                )
            value, nodes, depth = target
            total += nodes
            if total > MAX_NODES:
                raise fatal(
                    lc,
                    f"aliases expand to more than {MAX_NODES} YAML nodes; "
                    "refusing to read the file",
                )
            if len(stack) + depth >= MAX_DEPTH + 1:
                raise fatal(lc, f"file is nested more than {MAX_DEPTH} levels deep")
            path = child_path() if stack else ()
            doc.positions[path] = lc
            attach(value, lc, nodes, depth, None)
        elif cls is ev.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise fatal(
                    _lc(event.start_mark),
                    "the file holds several YAML documents ('---'); a .ployd.yml holds one",
                )
            anchors.clear()
        elif cls is ev.StreamEndEvent:
            break
    if not have_result or result is None:
        raise YamlFatal(
            ConfigError(file, 1, 1, "file is empty; it needs at least 'version: 1' and 'jobs:'")
        )
    doc.data = result
    return doc


def _apply_merges(frame: _Frame, fatal: Callable[[tuple[int, int], str], YamlFatal]) -> None:
    """``<<: *base`` / ``<<: [*a, *b]``: keys not set explicitly come from the merged maps."""
    merged: dict[Any, Any] = {}
    for value, lc in frame.merges:
        sources = value if isinstance(value, list) else [value]
        for src in sources:
            if not isinstance(src, dict):
                raise fatal(lc, "'<<' merges a mapping (or a list of mappings) into this one")
            for k, v in src.items():
                merged.setdefault(k, v)
    for k, v in frame.value.items():
        merged[k] = v
    frame.value = merged
