"""Every YAML example in README.md and docs/*.md is valid, read by the real loaders: each
fenced ```yaml block, and each inline example of a key with a flow value
(`cache: {key: ..., paths: [...]}`).

A fragment (a job's keys, a trigger, ``defaults:``) is checked inside the smallest
.ployd.yml that holds it; a block with ``tenants:`` is a policy file
(``PLOYD_POLICY_FILE``) and goes through the policy parser."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.config.errors import ConfigInvalid
from app.core.config.loader import load_config
from app.core.hardware import Catalog
from app.policy.model import parse_file

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SCHEMA = json.loads((ROOT / "schemas" / "ployd.schema.json").read_text())
TOP_KEYS = set(_SCHEMA["properties"])
JOB_KEYS = set(_SCHEMA["$defs"]["job"]["properties"])
TRIGGERS = {"push", "pull_request", "merge_request"}


@dataclass(frozen=True)
class Example:
    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _blank(m: re.Match[str]) -> str:
    return "\n" * m.group(0).count("\n")


def examples() -> list[Example]:
    found: list[Example] = []
    for path in DOCS:
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        for m in re.finditer(r"^```(ya?ml)\n(.*?)^```", text, re.S | re.M):
            found.append(Example(name, text[: m.start(2)].count("\n") + 1, m.group(2)))
        prose = re.sub(r"^```.*?^```", _blank, text, flags=re.S | re.M)
        offset = 0
        # inline code spans, paragraph by paragraph (a span may wrap onto the next line)
        for part in re.split(r"(\n\s*\n|\n(?=\s*[*|-] ))", prose):
            for m in re.finditer(r"`([^`]+)`", part):
                span = m.group(1)
                key = re.match(r"^([a-z_-]+): *[\[{]", span)
                if key and key.group(1) in TOP_KEYS | JOB_KEYS | TRIGGERS:
                    line = prose[: offset + m.start()].count("\n") + 1
                    found.append(Example(name, line, span + "\n"))
            offset += len(part)
    return found


STEPS = "steps:\n  - run: 'true'\n"


def as_config(fragment: str) -> str:
    """The smallest .ployd.yml holding ``fragment``."""
    keys = set(re.findall(r"^([A-Za-z_-]+):", fragment, re.M))
    if "version" in keys:
        return fragment
    if keys & TRIGGERS:
        return "version: 1\non:\n" + textwrap.indent(fragment, "  ") + "jobs:\n  t:\n" + (
            textwrap.indent(STEPS, "    ")
        )
    if keys <= TOP_KEYS:
        jobs = "" if "jobs" in keys else "jobs:\n  t:\n" + textwrap.indent(STEPS, "    ")
        return "version: 1\n" + fragment + jobs
    job = fragment if "steps" in keys else fragment + STEPS
    axes = sorted(set(re.findall(r"matrix\.([A-Za-z_][\w-]*)", fragment)))
    if axes and "matrix" not in keys:
        job += "matrix:\n" + "".join(f"  {a}: ['1']\n" for a in axes)
    return "version: 1\njobs:\n  example:\n" + textwrap.indent(job, "    ")


ALL = examples()


def test_the_docs_have_examples() -> None:
    where = {str(e) for e in ALL}
    assert len(ALL) >= 8, where
    assert any(e.file == "README.md" and e.text.startswith("cache:") for e in ALL)
    assert any(e.file == "docs/configuration.md" and "version: 1" in e.text for e in ALL)


@pytest.mark.parametrize("example", ALL, ids=str)
def test_example_is_valid(example: Example) -> None:
    if re.search(r"^tenants:", example.text, re.M):
        import yaml

        parse_file(yaml.safe_load(example.text), str(example), Catalog.default().classes())
        return
    try:
        load_config(as_config(example.text), str(example))
    except ConfigInvalid as e:
        pytest.fail(f"{example}: " + "; ".join(x.message for x in e.errors))
