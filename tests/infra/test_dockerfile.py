"""The top-level Dockerfile, parsed (no Docker engine here): a non-root image on
python:3.11-slim with git, PloyD installed with its PostgreSQL extra, port 8080, whose
entry point is `ployd serve`."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from tests.infra.tfparse import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments
    dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    return ins[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_runtime_image_is_python_311_slim() -> None:
    (_from, image) = final_stage()[0]
    assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
    for w, args in instructions():
        if w == "FROM":
            assert args.split()[0].startswith("python:3.11-slim"), args


def test_entry_point_is_ployd_serve() -> None:
    stage = final_stage()
    entry = [exec_form(a) for w, a in stage if w == "ENTRYPOINT"]
    cmd = [exec_form(a) for w, a in stage if w == "CMD"]
    assert entry, "ENTRYPOINT in exec form"
    argv = entry[-1] + (cmd[-1] if cmd else [])
    assert argv == ["ployd", "serve"], argv
    # `ployd` is PloyD's console script and `serve` one of its commands.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["ployd"] == "app.cli:main"
    from app.cli import COMMANDS

    assert "serve" in COMMANDS


def test_runs_as_non_root() -> None:
    stage = final_stage()
    users = [(i, a) for i, (w, a) in enumerate(stage) if w == "USER"]
    assert users, "no USER: the image would run as root"
    index, user = users[-1]
    assert user.split(":")[0] not in ("root", "0"), user
    entry_index = max(i for i, (w, _) in enumerate(stage) if w == "ENTRYPOINT")
    assert index < entry_index


def test_installs_git_and_ployd_with_postgres_and_exposes_8080() -> None:
    ins = instructions()
    runs = " ".join(a for w, a in ins if w == "RUN")
    assert re.search(r"apt-get install\b[^&;]*\bgit\b", runs), "git is not installed"
    assert "rm -rf /var/lib/apt/lists" in runs
    assert re.search(r"pip install [^&;]*[\"']?\.\[postgres\][\"']?", runs), runs
    assert ("EXPOSE", "8080") in final_stage()


def test_healthcheck_hits_healthz() -> None:
    checks = [a for w, a in final_stage() if w == "HEALTHCHECK"]
    if not checks:
        pytest.skip("no HEALTHCHECK (optional)")
    assert "/healthz" in checks[-1] and "8080" in checks[-1]


def test_dockerignore_keeps_what_the_build_needs() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = " ".join(a for w, a in instructions() if w == "COPY" and "--from" not in a)
    for needed in ("pyproject.toml", "README.md", "app"):
        assert needed in copied
        assert needed not in ignored
    for secret in (".git", ".venv", ".ployd-data", "**/*.tfstate*"):
        assert secret in ignored
