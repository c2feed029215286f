"""Parse the Terraform under infra/terraform with python-hcl2, for tests/infra.

`Module` flattens every ``.tf`` file of one directory into resources, data sources,
variables, locals, outputs and module calls, with string literals unquoted and
expressions kept as ``${...}`` text (python-hcl2 8 with ``strip_string_quotes``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "infra" / "terraform"


def _hcl2() -> Any:
    return pytest.importorskip(
        "hcl2", reason="python-hcl2 is in the dev extra: pip install -e '.[dev]'"
    )


def _options() -> Any:
    from hcl2.utils import SerializationOptions

    return SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )


@dataclass
class Block:
    """One resource/data/module/variable/output block: its labels, body and file."""

    kind: str
    type: str
    name: str
    body: dict[str, Any]
    path: Path

    @property
    def address(self) -> str:
        rel = self.path.relative_to(TF_DIR)
        prefix = "" if self.kind == "resource" else f"{self.kind}."
        return f"{rel}:{prefix}{self.type + '.' if self.type else ''}{self.name}"


@dataclass
class Module:
    directory: Path
    resources: list[Block] = field(default_factory=list)
    data: list[Block] = field(default_factory=list)
    modules: list[Block] = field(default_factory=list)
    variables: list[Block] = field(default_factory=list)
    outputs: list[Block] = field(default_factory=list)
    locals: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Block]:
        return [b for b in self.resources if b.type == type_]

    def one(self, type_: str, name: str) -> Block:
        found = [b for b in self.resources if b.type == type_ and b.name == name]
        assert len(found) == 1, f"expected one {type_}.{name}, found {len(found)}"
        return found[0]

    def data_of_type(self, type_: str) -> list[Block]:
        return [b for b in self.data if b.type == type_]

    def variable(self, name: str) -> Block:
        found = [b for b in self.variables if b.name == name]
        assert found, f"no variable {name!r}"
        return found[0]

    def output(self, name: str) -> Block:
        found = [b for b in self.outputs if b.name == name]
        assert found, f"no output {name!r}"
        return found[0]


def load_module(directory: Path) -> Module:
    hcl2 = _hcl2()
    mod = Module(directory)
    for path in sorted(directory.glob("*.tf")):
        with path.open() as f:
            doc = hcl2.load(f, serialization_options=_options())
        for entry in doc.get("resource", []):
            for type_, by_name in entry.items():
                for name, body in by_name.items():
                    mod.resources.append(Block("resource", type_, name, body, path))
        for entry in doc.get("data", []):
            for type_, by_name in entry.items():
                for name, body in by_name.items():
                    mod.data.append(Block("data", type_, name, body, path))
        for kind, target in (
            ("module", mod.modules),
            ("variable", mod.variables),
            ("output", mod.outputs),
        ):
            for entry in doc.get(kind, []):
                for name, body in entry.items():
                    target.append(Block(kind, "", name, body, path))
        for entry in doc.get("locals", []):
            mod.locals.update(entry)
    return mod


def module_dirs() -> list[Path]:
    """The root module, its submodules and the examples: every directory with .tf files."""
    return sorted({p.parent for p in TF_DIR.rglob("*.tf") if ".terraform" not in p.parts})


def statements(doc: Block) -> Iterator[dict[str, Any]]:
    """The statements of an aws_iam_policy_document, including `dynamic "statement"`."""
    yield from doc.body.get("statement", [])
    for dyn in doc.body.get("dynamic", []):
        for label, body in dyn.items():
            if label == "statement":
                yield from body.get("content", [])


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
