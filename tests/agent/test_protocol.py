"""app/protocol.py: every message round-trips, its JSON is pinned by literal dicts, bad
input gives one ProtocolError naming the field, and the server answers 400 with it."""

from __future__ import annotations

import ast
import copy
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.protocol import (
    Answer,
    ArtifactsPayload,
    CachePayload,
    Claim,
    ClaimRequest,
    CloneAuth,
    FinishAnswer,
    FinishReport,
    Heartbeat,
    ImagePayload,
    JobPayload,
    LogChunk,
    ProtocolError,
    RegistryCredentials,
    StepPayload,
    StepReport,
)

ROOT = Path(__file__).resolve().parents[2]

STEP_JSON = {
    "index": 0, "title": "Install", "run": "pip install -r requirements.txt",
    "env": {"PIP_NO_INPUT": "1"}, "timeout_s": 300, "continue_on_error": False,
}
CACHE_JSON = {
    "key": "pip-${{ hashFiles('requirements*.txt') }}", "paths": ["~/.cache/pip"],
    "restore_keys": ["pip-"], "read": True, "write": True,
}
ARTIFACTS_JSON = {"paths": ["out/**", "metrics.json"], "expire_in_s": 86400}
JOB_JSON: dict[str, Any] = {
    "pipeline_id": 3, "job_id": 7, "attempt_id": 12, "attempt_number": 1,
    "name": "unit (python=3.11)", "forge": "github", "repo": "acme/model",
    "clone_url": "https://github.com/acme/model.git",
    "sha": "0123456789abcdef0123456789abcdef01234567", "ref": "refs/heads/main",
    "workspace_key": "github-acme-model", "timeout_s": 1800, "fork": False,
    "env": {"PYTHONUNBUFFERED": "1", "PLOYD": "true"},
    "secrets": {"WANDB_API_KEY": "wandb-123"},
    "mask": [],
    "clone_auth": {"username": "x-access-token", "token": "ghs_token"},
    "steps": [STEP_JSON, {"index": 1, "title": "Test", "run": "pytest", "env": {},
                          "timeout_s": None, "continue_on_error": True}],
    "cache": CACHE_JSON,
    "artifacts": ARTIFACTS_JSON,
    "image": None,
    "gpus": 0,
}
CLAIM_JSON = {"attempt_id": 12, "job_token": "job-token-abc", "job": JOB_JSON}

JOB = JobPayload(
    pipeline_id=3, job_id=7, attempt_id=12, attempt_number=1,
    name="unit (python=3.11)", forge="github", repo="acme/model",
    clone_url="https://github.com/acme/model.git",
    sha="0123456789abcdef0123456789abcdef01234567", ref="refs/heads/main",
    workspace_key="github-acme-model", timeout_s=1800,
    env={"PYTHONUNBUFFERED": "1", "PLOYD": "true"},
    secrets={"WANDB_API_KEY": "wandb-123"},
    clone_auth=CloneAuth("x-access-token", "ghs_token"),
    steps=(
        StepPayload(0, "Install", "pip install -r requirements.txt", {"PIP_NO_INPUT": "1"}, 300),
        StepPayload(1, "Test", "pytest", continue_on_error=True),
    ),
    cache=CachePayload("pip-${{ hashFiles('requirements*.txt') }}", ("~/.cache/pip",), ("pip-",)),
    artifacts=ArtifactsPayload(("out/**", "metrics.json"), 86400),
)

# (message, its JSON as today's server and agent send it)
PINNED: list[tuple[Any, dict[str, Any]]] = [
    (ClaimRequest("local-1", 25), {"agent_id": "local-1", "wait": 25}),
    (ClaimRequest("local-1", 2.5), {"agent_id": "local-1", "wait": 2.5}),
    (Claim(12, "job-token-abc", JOB), CLAIM_JSON),
    (JOB, JOB_JSON),
    (
        JobPayload(1, 2, 3, 1, "t", "local", "r", "file:///r", "a" * 40, "refs/heads/main",
                   "local-r", 60),
        {"pipeline_id": 1, "job_id": 2, "attempt_id": 3, "attempt_number": 1, "name": "t",
         "forge": "local", "repo": "r", "clone_url": "file:///r", "sha": "a" * 40,
         "ref": "refs/heads/main", "workspace_key": "local-r", "timeout_s": 60, "env": {},
         "secrets": {}, "mask": [], "clone_auth": None, "steps": [], "cache": None,
         "artifacts": None,
         "image": None, "gpus": 0, "fork": False},
    ),
    (
        JobPayload(1, 2, 3, 1, "t", "local", "r", "file:///r", "a" * 40, "refs/heads/main",
                   "local-r", 60, mask=("pw",), gpus=2,
                   image=ImagePayload("ghcr.io/acme/train:3", {"shm_size": "2g"},
                                      RegistryCredentials("bot", "pw"))),
        {"pipeline_id": 1, "job_id": 2, "attempt_id": 3, "attempt_number": 1, "name": "t",
         "forge": "local", "repo": "r", "clone_url": "file:///r", "sha": "a" * 40,
         "ref": "refs/heads/main", "workspace_key": "local-r", "timeout_s": 60, "env": {},
         "secrets": {}, "mask": ["pw"], "clone_auth": None, "steps": [], "cache": None,
         "artifacts": None,
         "image": {"name": "ghcr.io/acme/train:3", "options": {"shm_size": "2g"},
                   "credentials": {"username": "bot", "password": "pw"}},
         "gpus": 2, "fork": False},
    ),
    (JOB.steps[0], STEP_JSON),
    (JOB.cache, CACHE_JSON),
    (CachePayload("k", read=False, write=False),
     {"key": "k", "paths": [], "restore_keys": [], "read": False, "write": False}),
    (JOB.artifacts, ARTIFACTS_JSON),
    (ArtifactsPayload(("a",)), {"paths": ["a"], "expire_in_s": None}),
    (LogChunk(0, "text...\n"), {"seq": 0, "data": "text...\n"}),
    (StepReport(0, "running"), {"index": 0, "state": "running"}),
    (StepReport(0, "succeeded", 0), {"index": 0, "state": "succeeded", "exit_code": 0}),
    (StepReport(2, "failed", -9), {"index": 2, "state": "failed", "exit_code": -9}),
    (Heartbeat(10), {"wait": 10}),
    (Answer(False), {"cancel": False}),
    (Answer(True), {"cancel": True}),
    (
        FinishReport("failed", exit_code=1, failed_step=0, reason="script_failure"),
        {"result": "failed", "exit_code": 1, "failed_step": 0, "reason": "script_failure",
         "error": None},
    ),
    (
        FinishReport("succeeded", exit_code=0),
        {"result": "succeeded", "exit_code": 0, "failed_step": None, "reason": None,
         "error": None},
    ),
    (
        FinishReport("failed", reason="infrastructure", error="git fetch failed"),
        {"result": "failed", "exit_code": None, "failed_step": None,
         "reason": "infrastructure", "error": "git fetch failed"},
    ),
    (FinishAnswer(), {"ok": True}),
]


@pytest.mark.parametrize(("message", "pinned"), PINNED, ids=lambda v: type(v).__name__)
def test_json_is_pinned_and_round_trips(message: Any, pinned: dict[str, Any]) -> None:
    assert message.to_json() == pinned
    wire = json.loads(json.dumps(message.to_json()))  # what actually crosses the network
    assert type(message).from_json(wire) == message
    assert type(message).from_json(wire).to_json() == pinned


def test_from_json_fills_what_the_protocol_leaves_out() -> None:
    """Optional parts: a job without mask/cache/artifacts, a step with only index and
    run, a cache without restore keys or flags, answers without their flags."""
    left_out = ("mask", "clone_auth", "cache", "artifacts")
    job = {k: v for k, v in JOB_JSON.items() if k not in left_out}
    parsed = JobPayload.from_json(job)
    assert (parsed.mask, parsed.clone_auth, parsed.cache, parsed.artifacts) == (
        (), None, None, None
    )
    assert JobPayload.from_json({**job, "mask": None, "cache": None}).cache is None
    assert StepPayload.from_json({"index": 3, "run": "make"}) == StepPayload(3, "", "make")
    assert CachePayload.from_json({"key": "k", "paths": ["p"]}) == CachePayload("k", ("p",))
    assert StepReport.from_json({"index": 0, "state": "running", "exit_code": None}) == (
        StepReport(0, "running")
    )
    assert Answer.from_json({}) == Answer(False)
    assert Heartbeat.from_json({}) == Heartbeat(0)
    assert ClaimRequest.from_json({"agent_id": "a"}) == ClaimRequest("a", 0)
    assert FinishReport.from_json({"result": "cancelled"}) == FinishReport("cancelled")
    # Unknown reasons are kept (a newer agent may know more); unknown keys are ignored.
    assert FinishReport.from_json({"result": "failed", "reason": "oom", "x": 1}).reason == "oom"


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(key)


def _job(mutate: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda claim: mutate(claim["job"])


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``a.b[2].c`` (relative to the claim answer) to ``value``."""

    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.replace("]", "").replace("[", ".").split(".")
        node: Any = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


HUGE = 10**30
CLAIM_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing job", _without("job"), "job is missing"),
    ("missing token", _without("job_token"), "job_token is missing"),
    ("empty token", _set("job_token", ""), "job_token must be a non-empty string"),
    ("attempt id a string", _set("attempt_id", "12"), "attempt_id must be an integer from 0"),
    ("attempt id a bool", _set("attempt_id", True), "attempt_id must be an integer from 0"),
    ("attempt id huge", _set("attempt_id", HUGE), "attempt_id must be an integer from 0 to"),
    ("attempt id negative", _set("attempt_id", -1), "attempt_id must be an integer from 0"),
    ("job not an object", _set("job", [1, 2]), "job must be an object"),
    ("missing clone_url", _job(_without("clone_url")), "job.clone_url is missing"),
    ("missing forge", _job(_without("forge")), "job.forge is missing"),
    ("sha not a string", _set("job.sha", 123), "job.sha must be a string"),
    ("name null", _set("job.name", None), "job.name must be a string"),
    ("job id a float", _set("job.job_id", 7.0), "job.job_id must be an integer"),
    ("timeout huge", _set("job.timeout_s", HUGE), "job.timeout_s must be an integer from 0"),
    ("steps not a list", _set("job.steps", {"0": STEP_JSON}), "job.steps must be a list"),
    ("steps missing", _job(_without("steps")), "job.steps is missing"),
    ("step not an object", _set("job.steps[1]", "run: true"), "job.steps[1] must be an object"),
    ("step run a list", _set("job.steps[1].run", ["pytest"]), "job.steps[1].run must be a string"),
    ("step without run", _set("job.steps[0]", {"index": 0}), "job.steps[0].run is missing"),
    ("step index huge", _set("job.steps[0].index", HUGE), "job.steps[0].index must be an integer"),
    ("step timeout text", _set("job.steps[1].timeout_s", "5m"),
     "job.steps[1].timeout_s must be an integer from 0 to 2147483647, or null"),
    ("step flag a string", _set("job.steps[1].continue_on_error", "yes"),
     "job.steps[1].continue_on_error must be true or false"),
    ("step env nested", _set("job.steps[0].env", {"A": {"B": [1]}}),
     "job.steps[0].env.A must be a string"),
    ("env a list", _set("job.env", ["A=1"]), "job.env must be an object of strings"),
    ("env value a number", _set("job.env.PLOYD", 1), "job.env.PLOYD must be a string"),
    ("secrets nested", _set("job.secrets", {"K": {"v": "x"}}), "job.secrets.K must be a string"),
    ("mask a string", _set("job.mask", "ghs_token"), "job.mask must be a list of strings"),
    ("mask holds null", _set("job.mask", ["a", None]), "job.mask[1] must be a string"),
    ("clone_auth a string", _set("job.clone_auth", "x:y"), "job.clone_auth must be an object"),
    ("clone_auth without token", _set("job.clone_auth", {"username": "u"}),
     "job.clone_auth.token is missing"),
    ("clone_auth user with colon", _set("job.clone_auth.username", "a:b"),
     "job.clone_auth.username must be a non-empty printable string without ':'"),
    ("clone_auth empty user", _set("job.clone_auth.username", ""),
     "job.clone_auth.username must be a non-empty printable string without ':'"),
    ("clone_auth token a number", _set("job.clone_auth.token", 12),
     "job.clone_auth.token must be a string"),
    ("clone_auth token with a newline", _set("job.clone_auth.token", "t\r\nX-Evil: 1"),
     "job.clone_auth.token must be a non-empty printable string"),
    ("cache a string", _set("job.cache", "pip"), "job.cache must be an object"),
    ("cache without key", _set("job.cache", {"paths": []}), "job.cache.key is missing"),
    ("cache paths nested", _set("job.cache.paths", [["~/.cache"]]),
     "job.cache.paths[0] must be a string"),
    ("cache read a number", _set("job.cache.read", 1), "job.cache.read must be true or false"),
    ("artifacts a list", _set("job.artifacts", ["out/**"]), "job.artifacts must be an object"),
    ("artifacts expiry text", _set("job.artifacts.expire_in_s", "1d"),
     "job.artifacts.expire_in_s must be an integer"),
    ("image a string", _set("job.image", "python:3.12"), "job.image must be an object"),
    ("image without name", _set("job.image", {"options": {}}), "job.image.name is missing"),
    ("image name empty", _set("job.image", {"name": ""}), "job.image.name must be a non-empty"),
    ("image option unknown", _set("job.image", {"name": "x", "options": {"privileged": "1"}}),
     "job.image.options: unknown option 'privileged'; known: user, entrypoint, shm_size"),
    ("image credentials no password",
     _set("job.image", {"name": "x", "credentials": {"username": "u"}}),
     "job.image.credentials.password is missing"),
    ("gpus negative", _set("job.gpus", -1), "job.gpus must be an integer from 0 to 64"),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in CLAIM_CASES],
                         ids=[c[0] for c in CLAIM_CASES])
def test_a_bad_claim_answer_names_the_field(
    mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    claim = copy.deepcopy(CLAIM_JSON)
    mutate(claim)
    with pytest.raises(ProtocolError) as e:
        Claim.from_json(claim)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


BODY_CASES: list[tuple[Any, object, str]] = [
    (LogChunk, {"data": "x"}, "seq is missing"),
    (LogChunk, {"seq": -1, "data": "x"}, "seq must be an integer from 0 to 2147483647"),
    (LogChunk, {"seq": HUGE, "data": "x"}, "seq must be an integer from 0 to 2147483647"),
    (LogChunk, {"seq": "0", "data": "x"}, "seq must be an integer"),
    (LogChunk, {"seq": 0, "data": 5}, "data must be a string"),
    (LogChunk, {"seq": 0, "data": {"text": "x"}}, "data must be a string"),
    (LogChunk, [0, "x"], "a log chunk must be an object"),
    (StepReport, {"index": 0}, "state is missing"),
    (StepReport, {"index": 0, "state": "exploded"}, "state must be one of running, succeeded"),
    (StepReport, {"index": 0, "state": ["running"]}, "state must be one of"),
    (StepReport, {"index": 1.5, "state": "running"}, "index must be an integer"),
    (StepReport, {"index": 0, "state": "failed", "exit_code": "1"},
     "exit_code must be an integer from -2147483648 to 2147483647, or null"),
    (StepReport, {"index": 0, "state": "failed", "exit_code": HUGE}, "exit_code must be an"),
    (StepReport, None, "a step report must be an object"),
    (FinishReport, {}, "result is missing"),
    (FinishReport, {"result": "exploded"},
     "result must be one of succeeded, failed, timed_out, cancelled, interrupted"),
    (FinishReport, {"result": "failed", "exit_code": 1.0}, "exit_code must be an integer"),
    (FinishReport, {"result": "failed", "exit_code": -HUGE}, "exit_code must be an integer"),
    (FinishReport, {"result": "failed", "failed_step": False}, "failed_step must be an integer"),
    (FinishReport, {"result": "failed", "failed_step": -1}, "failed_step must be an integer"),
    (FinishReport, {"result": "failed", "reason": 5}, "reason must be a string or null"),
    (FinishReport, {"result": "failed", "error": {"msg": "x"}}, "error must be a string or null"),
    (FinishReport, "failed", "a finish report must be an object"),
    (Heartbeat, {"wait": "10"}, "wait must be a finite number"),
    (Heartbeat, {"wait": float("nan")}, "wait must be a finite number"),
    (Heartbeat, {"wait": 10**400}, "wait must be a finite number"),
    (ClaimRequest, {}, "agent_id is missing"),
    (ClaimRequest, {"agent_id": ""}, "agent_id must be a non-empty string of at most 128"),
    (ClaimRequest, {"agent_id": "a" * 129}, "agent_id must be a non-empty string"),
    (ClaimRequest, {"agent_id": "a", "wait": True}, "wait must be a finite number"),
    (ClaimRequest, {"agent_id": "a", "hardware": {"cpus": 1, "containers": "lxc"}},
     "hardware.containers must be one of podman, docker, or empty"),
    (Answer, {"cancel": "false"}, "cancel must be true or false"),
    (Answer, None, "an answer must be an object"),
    (FinishAnswer, {"ok": 1}, "ok must be true or false"),
]


@pytest.mark.parametrize(("cls", "body", "message"), BODY_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(BODY_CASES)])
def test_a_bad_body_names_the_field(cls: Any, body: object, message: str) -> None:
    with pytest.raises(ProtocolError) as e:
        cls.from_json(body)
    assert message in str(e.value)


def test_the_clone_token_is_kept_out_of_repr_and_masked_with_its_header_form() -> None:
    auth = CloneAuth("x-access-token", "ghs_secret")
    assert "ghs_secret" not in repr(auth) and "ghs_secret" not in repr(JOB)
    assert auth.mask == ("ghs_secret", "x-access-token:ghs_secret")


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        JOB.clone_url = "https://elsewhere"  # type: ignore[misc]


def test_protocol_is_stdlib_only_and_python_3_9() -> None:
    """app/protocol.py ships inside the agent: standard library only, 3.9 syntax, and no
    dataclass options 3.9 refuses at import time."""
    src = (ROOT / "app" / "protocol.py").read_text()
    tree = ast.parse(src, feature_version=(3, 9))
    imported = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert {m.split(".")[0] for m in imported} <= set(sys.stdlib_module_names) | {"__future__"}
    for path in [ROOT / "app" / "protocol.py", *sorted((ROOT / "app" / "agent").glob("*.py"))]:
        text = path.read_text()
        ast.parse(text, filename=str(path), feature_version=(3, 9))
        assert "slots=True" not in text and "kw_only" not in text, path


# Names of the standard library that Python 3.9 does not have (3.10 and 3.11 ones).
NEWER_THAN_3_9 = {
    "asyncio": {"TaskGroup", "timeout", "timeout_at", "Runner", "Barrier"},
    "datetime": {"UTC"},
    "typing": {
        "Self", "TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "LiteralString", "Never",
        "Required", "NotRequired", "assert_never", "assert_type", "reveal_type", "Unpack",
        "TypeVarTuple", "dataclass_transform", "override", "is_typeddict",
    },
    "itertools": {"pairwise", "batched"},
    "contextlib": {"aclosing", "chdir"},
    "enum": {"StrEnum", "verify"},
    "sys": {"stdlib_module_names", "orig_argv"},
    "inspect": {"get_annotations"},
}
NEWER_MODULES = {"tomllib", "wsgiref.types"}
NEWER_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup", "aiter", "anext", "EncodingWarning"}
TYPE_NAMES = {"int", "str", "float", "bytes", "bool", "dict", "list", "tuple", "set", "type"}


def _runtime_union(node: ast.expr) -> bool:
    """``X | Y`` of types outside an annotation: a TypeError on 3.9."""
    def typeish(n: ast.expr) -> bool:
        return (
            (isinstance(n, ast.Constant) and n.value is None)
            or (isinstance(n, ast.Name) and n.id in TYPE_NAMES)
            or isinstance(n, ast.Subscript)
            or (isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) and _runtime_union(n))
        )
    return (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.BitOr)
        and (typeish(node.left) or typeish(node.right))
    )


def newer_than_3_9(source: str) -> list[str]:
    """What in ``source`` needs a Python newer than 3.9 (line: what)."""
    tree = ast.parse(source)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name
                if a.name in NEWER_MODULES:
                    found.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEWER_MODULES:
                found.append(f"{node.lineno}: from {node.module}")
            for a in node.names:
                if a.name in NEWER_THAN_3_9.get(node.module, ()):
                    found.append(f"{node.lineno}: from {node.module} import {a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id, node.value.id)
            if node.attr in NEWER_THAN_3_9.get(module, ()):
                found.append(f"{node.lineno}: {module}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in NEWER_BUILTINS:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, (getattr(ast, "Match", ()), getattr(ast, "TryStar", ()))):
            found.append(f"{node.lineno}: {type(node).__name__}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            keywords = {k.arg for k in node.keywords}
            if node.func.id == "zip" and "strict" in keywords:
                found.append(f"{node.lineno}: zip(strict=)")
            if node.func.id == "dataclass" and keywords & {"slots", "kw_only", "match_args"}:
                found.append(f"{node.lineno}: dataclass({', '.join(sorted(keywords))})")
            is_check = node.func.id in ("isinstance", "issubclass") and len(node.args) == 2
            if is_check and _runtime_union(node.args[1]):
                found.append(f"{node.lineno}: {node.func.id}(x, X | Y)")
    for stmt in tree.body:  # values evaluated at import time: aliases, defaults
        values = [stmt.value] if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else []
        for value in values:
            if value is None:
                continue
            for n in ast.walk(value):
                if isinstance(n, ast.expr) and _runtime_union(n):
                    found.append(f"{n.lineno}: X | Y evaluated at runtime")
                    break
    return found


def test_the_3_9_check_finds_what_3_9_lacks() -> None:
    sample = (
        "import asyncio\nimport datetime as dt\nimport tomllib\n"
        "from typing import Self\n"
        "Alias = int | None\n"
        "async def f(x):\n"
        "    async with asyncio.timeout(1):\n"
        "        pass\n"
        "    async with asyncio.TaskGroup() as tg:\n"
        "        pass\n"
        "    isinstance(x, int | str)\n"
        "    zip([], [], strict=True)\n"
        "    now = dt.datetime.now(dt.UTC)\n"
        "    raise ExceptionGroup('x', [])\n"
        "    match x:\n"
        "        case 1:\n"
        "            pass\n"
        "flags = A | B\n"  # not types: fine
    )
    assert sorted(newer_than_3_9(sample), key=lambda s: int(s.split(":")[0])) == [
        "3: import tomllib", "4: from typing import Self", "5: X | Y evaluated at runtime",
        "7: asyncio.timeout", "9: asyncio.TaskGroup", "11: isinstance(x, X | Y)",
        "12: zip(strict=)", "13: datetime.UTC", "14: ExceptionGroup", "15: Match",
    ]


def test_the_agent_uses_nothing_newer_than_python_3_9() -> None:
    """Beyond syntax: no 3.10/3.11-only names of the standard library, no runtime unions."""
    paths = [ROOT / "app" / "protocol.py", *sorted((ROOT / "app" / "agent").glob("*.py"))]
    found = {
        str(path.relative_to(ROOT)): hits
        for path in paths
        if (hits := newer_than_3_9(path.read_text()))
    }
    assert found == {}


# ---- the server answers 400 with the message -----------------------------------------


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[Any]:
    from app.server import start_server
    from app.settings import Settings

    settings = Settings(
        host="127.0.0.1", port=0, data_dir=tmp_path / "data", database_url=db_url,
        local_agents=0,
    )
    srv = await start_server(settings)
    try:
        yield srv
    finally:
        await srv.stop()


async def test_the_agent_api_speaks_the_pinned_json_and_answers_400_naming_the_field(
    server: Any, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    from app.core.hardware import Catalog
    from app.handlers.pipelines import start_local

    engine = server.services.engine
    config = """version: 1
jobs:
  unit:
    env: {A: "1"}
    cache: {key: "pip-${{ hashFiles('requirements.txt') }}", paths: [~/.cache/pip],
            restore-keys: [pip-]}
    artifacts: {paths: ["out/**"], expire_in: 1d}
    steps:
      - {name: Install, run: echo hi, env: {B: "2"}, timeout: 5m, continue-on-error: true}
      - run: "true"
"""
    repo, sha = make_repo({".ployd.yml": config})
    pid = start_local(engine, Catalog.default(), str(repo)).pipeline_id
    agent_token = engine.new_agent_token()
    api = server.url + "/api/v1/agent"
    async with aiohttp.ClientSession() as http:

        async def post(path: str, token: str, body: Any) -> tuple[int, Any]:
            async with http.post(
                api + path, json=body, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                return r.status, await r.json() if r.status != 204 else None

        assert await post("/claim", agent_token, {"agent_id": ""}) == (
            400, {"error": "agent_id must be a non-empty string of at most 128 characters"})
        status, claim = await post("/claim", agent_token, {"agent_id": "a-1", "wait": 0})
        assert status == 200
        attempt, job_id = claim["attempt_id"], claim["job"]["job_id"]
        path = str(Path(repo).resolve())
        assert claim == {
            "attempt_id": attempt,
            "job_token": claim["job_token"],
            "job": {
                "pipeline_id": pid, "job_id": job_id, "attempt_id": attempt,
                "attempt_number": 1, "name": "unit", "forge": "local", "repo": path,
                "clone_url": f"file://{path}", "sha": sha, "ref": "refs/heads/main",
                "workspace_key": "local-" + path.replace("/", "-"), "timeout_s": 1800,
                "fork": False,
                "env": {
                    "CI": "true", "PLOYD": "true", "PLOYD_PIPELINE_ID": str(pid),
                    "PLOYD_JOB": "unit", "PLOYD_JOB_ID": str(job_id), "PLOYD_ATTEMPT": "1",
                    "PLOYD_SHA": sha, "PLOYD_REF": "refs/heads/main",
                    "PLOYD_REPOSITORY": path, "A": "1",
                },
                "secrets": {},
                "mask": [],
                "clone_auth": None,
                "steps": [
                    {"index": 0, "title": "Install", "run": "echo hi", "env": {"B": "2"},
                     "timeout_s": 300, "continue_on_error": True},
                    {"index": 1, "title": "true", "run": "true", "env": {},
                     "timeout_s": None, "continue_on_error": False},
                ],
                "cache": {"key": "pip-${{ hashFiles('requirements.txt') }}",
                          "paths": ["~/.cache/pip"], "restore_keys": ["pip-"],
                          "read": True, "write": True},
                "artifacts": {"paths": ["out/**"], "expire_in_s": 86400},
                "image": None,
                "gpus": 0,
            },
        }
        assert Claim.from_json(claim).to_json() == claim
        token, at = claim["job_token"], f"/attempts/{attempt}"

        bad = [
            ("/log", {"seq": -1, "data": "x"}, "seq must be an integer from 0 to 2147483647"),
            ("/log", {"seq": 0, "data": 5}, "data must be a string"),
            ("/log", {"seq": 10**30, "data": "x"}, "seq must be an integer from 0 to 2147483647"),
            ("/steps", {"index": 0, "state": "exploded"},
             "state must be one of running, succeeded, failed, timed_out, cancelled, skipped"),
            ("/steps", {"index": 0, "state": "failed", "exit_code": 10**30},
             "exit_code must be an integer from -2147483648 to 2147483647, or null"),
            ("/steps", {"index": [0], "state": "running"},
             "index must be an integer from 0 to 2147483647"),
            ("/finish", {"result": "exploded"},
             "result must be one of succeeded, failed, timed_out, cancelled, interrupted"),
            ("/finish", {"result": "failed", "failed_step": "0"},
             "failed_step must be an integer from 0 to 2147483647, or null"),
            ("/finish", {"result": "failed", "reason": {"nested": ["garbage"]}},
             "reason must be a string or null"),
            ("/finish", {}, "result is missing"),
            ("/heartbeat", {"wait": "soon"}, "wait must be a finite number"),
        ]
        for call, body, message in bad:
            assert await post(at + call, token, body) == (400, {"error": message}), call
            # The caller is checked before the body is read: a wrong token is 401 first.
            status, _ = await post(at + call, "wrong-token", body)
            assert status == 401, call

        # Garbage nested deeper than the JSON parser goes is a bad body too, not a 500.
        async with http.post(api + at + "/finish", data=b"[" * 200_000,
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 400
            assert (await r.json())["error"].startswith("the body is not JSON: ")

        # The attempt took none of it; good messages still work, answered with to_json.
        assert await post(at + "/steps", token, {"index": 0, "state": "running"}) == (
            200, {"cancel": False})
        assert await post(at + "/log", token, {"seq": 0, "data": "hi\n"}) == (
            200, {"cancel": False})
        assert await post(at + "/heartbeat", token, {"wait": 0}) == (200, {"cancel": False})
        assert await post(at + "/finish", token, {"result": "succeeded", "exit_code": 0}) == (
            200, {"ok": True})
        assert await post(at + "/finish", token, {"result": "succeeded"}) == (
            409, {"error": f"attempt {attempt} has already ended (succeeded)"})


# ---- hardware and registration ---------------------------------------------------------

H100S = {
    "cpus": 96,
    "memory_mb": 2_000_000,
    "disk_gb": 3500,
    "gpus": [{"name": "NVIDIA H100 80GB HBM3", "model": "h100", "memory_mb": 81559}] * 8,
}


def test_claim_request_without_the_new_fields_is_the_old_json() -> None:
    from app.protocol import ClaimRequest

    assert ClaimRequest("a-1", 5).to_json() == {"agent_id": "a-1", "wait": 5}
    assert ClaimRequest.from_json({"agent_id": "a-1"}) == ClaimRequest("a-1", 0)


def test_claim_request_and_registration_carry_version_and_hardware() -> None:
    from app.protocol import ClaimRequest, Hardware, Registered, Registration

    hw = Hardware.from_json(H100S)
    assert len(hw.gpus) == 8 and hw.gpus[0].model == "h100" and hw.to_json() == H100S
    req = ClaimRequest("lab-1", 30, version="0.1.0", hardware=hw)
    assert ClaimRequest.from_json(req.to_json()) == req
    reg = Registration("lab-1", "0.1.0", hw, {"rack": "b7"})
    assert Registration.from_json(reg.to_json()) == reg
    assert Registered.from_json({"agent_id": "lab-1", "credential": "c"}).credential == "c"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "hardware": {"cpus": "8"}}, "hardware.cpus must be an integer"),
        ({"name": "x", "hardware": {"cpus": 8, "gpus": {}}}, "hardware.gpus must be a list"),
        ({"name": "x", "hardware": {"cpus": 8, "gpus": [{"model": "h100"}]}},
         "hardware.gpus[0].name is missing"),
        ({"name": "", "hardware": {"cpus": 8}}, "name must be a non-empty string"),
        ({"name": "x"}, "hardware is missing"),
        ({"name": "x", "hardware": {"cpus": 8}, "labels": {"a": 1}}, "labels.a must be a string"),
        ({"name": "x", "hardware": {"cpus": 8, "gpus": [H100S["gpus"][0]] * 65}},
         "at most 64"),
    ],
)
def test_bad_registrations_name_the_field(body: dict[str, Any], message: str) -> None:
    from app.protocol import ProtocolError, Registration

    with pytest.raises(ProtocolError, match=re.escape(message)):
        Registration.from_json(body)
