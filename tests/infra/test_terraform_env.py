"""The service the Terraform example deploys comes up: the ECS task's environment and
secrets, rendered as Terraform would for infra/terraform/examples/basic (its tfvars
example, the module's defaults), are accepted by ``Settings.from_env`` and the EC2
configuration, and every PLOYD_* variable set there is one the app reads.

The rendering is a small evaluator of the expressions the task's ``environment`` uses
(parsed with python-hcl2): each reference it knows stands for what Terraform would put
there (the example's inputs, a plausible id for a resource created by the apply); an
expression it does not know fails the test, naming it, so a new variable is looked at.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from app.adapters.ec2.config import EC2Config
from app.core.ec2_policy import EC2Policy
from app.settings import Settings
from tests.infra.tfparse import ROOT, TF_DIR, Module, _options, load_module

EXAMPLE = TF_DIR / "examples" / "basic"
ACCOUNT = "123456789012"
APP = ROOT / "app"
# Runner-side code: the agent's own environment and what user data writes for it.
NOT_SERVER = ("agent",)
NOT_SERVER_FILES = ("adapters/ec2/userdata.py",)


# ---- the example's inputs ------------------------------------------------------------


def _tfvars() -> dict[str, Any]:
    import hcl2

    with (EXAMPLE / "terraform.tfvars.example").open() as f:
        return dict(hcl2.load(f, serialization_options=_options()))


def _unwrap(v: Any) -> Any:
    return v[2:-1] if isinstance(v, str) and v.startswith("${") and v.endswith("}") else v


class Inputs:
    """The root module's variables as the example sets them (else their defaults)."""

    def __init__(self, root: Module, example: Module, tfvars: dict[str, Any]) -> None:
        (call,) = [m for m in example.modules if m.name == "ployd"]
        self.root, self.call, self.tfvars = root, call.body, tfvars

    def _resolve(self, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: self._resolve(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self._resolve(x) for x in v]
        inner = _unwrap(v)
        if isinstance(inner, str) and inner != v:
            m = re.fullmatch(r"var\.(\w+)", inner)
            if m:
                return self.tfvars[m[1]]
            if re.fullmatch(r"file\(var\.\w+\)", inner):
                return PEM
            raise KeyError(f"the example passes {v!r}: teach _resolve")
        return v

    def var(self, name: str) -> Any:
        if name in self.call:
            return self._resolve(self.call[name])
        body = self.root.variable(name).body
        assert "default" in body, f"the example must set {name}: it has no default"
        return body["default"]


# ---- a small evaluator ---------------------------------------------------------------


def _split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets and strings."""
    parts, depth, cur, quote = [], 0, "", False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur += ch
            if ch == "\\":
                cur += text[i + 1]
                i += 1
            elif ch == '"':
                quote = False
        elif ch == '"':
            quote, cur = True, cur + ch
        elif ch in "([{":
            depth, cur = depth + 1, cur + ch
        elif ch in ")]}":
            depth, cur = depth - 1, cur + ch
        elif ch == sep and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    if cur.strip():
        parts.append(cur.strip())
    return parts


class Render:
    """What Terraform would render for the expressions of ecs.tf's ``environment``."""

    def __init__(self, root: Module, inputs: Inputs, region: str) -> None:
        self.root, self.inputs, self.region = root, inputs, region
        self.name = inputs.var("name")
        self.classes = inputs.var("runner_classes")

    def launch_templates(self) -> dict[str, str]:
        assert _unwrap(self.root.locals["launch_templates"]) == (
            "merge({for k, lt in aws_launch_template.runner : k => lt.id}, "
            "{default = aws_launch_template.runner[local.default_runner_class].id})"
        )
        assert _unwrap(self.root.locals["default_runner_class"]) == (
            'contains(keys(var.runner_classes), "default") ? "default" : var.default_runner_class'
        )
        default = (
            "default" if "default" in self.classes else self.inputs.var("default_runner_class")
        )
        # ecs.tf's precondition refuses the plan otherwise
        assert default in self.classes, f"no launch template for default class {default!r}"
        ids = {k: f"lt-0{i:016x}" for i, k in enumerate(sorted(self.classes), start=1)}
        return {**ids, "default": ids[default]}

    def enabled(self, toggle: str) -> bool:
        expr = _unwrap(self.root.locals[toggle])
        if expr == "var.github_app_id != null":
            return self.inputs.var("github_app_id") is not None
        if expr == "var.gitlab_enabled":
            return bool(self.inputs.var("gitlab_enabled"))
        raise KeyError(f"local.{toggle} = {expr!r}: teach Render.enabled")

    def value(self, expr: str) -> str:
        expr = expr.strip()
        if expr.startswith('"'):
            text = ast.literal_eval(expr.replace("${", "\\x00{"))  # a string literal
            return re.sub(r"\x00\{([^}]*)\}", lambda m: self.value(m[1]), text)
        m = re.fullmatch(r"var\.(\w+)", expr)
        if m:
            return str(self.inputs.var(m[1]))
        known = {
            "local.public_url": lambda: "https://" + str(self.inputs.var("domain_name")),
            "local.region": lambda: self.region,
            "module.logs_bucket.id": lambda: f"{self.name}-logs-{ACCOUNT}-{self.region}",
            'join(",", local.runner_subnet_ids)': lambda: ",".join(
                self.inputs.var("runner_subnet_ids") or self.inputs.var("private_subnet_ids")
            ),
            "aws_security_group.runners.id": lambda: "sg-0a1b2c3d4e5f60718",
            "aws_iam_instance_profile.runner.arn": lambda: (
                f"arn:aws:iam::{ACCOUNT}:instance-profile/{self.name}-runner-2026120200000001"
            ),
            "jsonencode(local.launch_templates)": lambda: json.dumps(self.launch_templates()),
        }
        if expr not in known:
            raise KeyError(f"ecs.tf's environment uses {expr!r}: teach Render.value")
        return known[expr]()

    def map(self, text: str) -> dict[str, str]:
        assert text.startswith("{") and text.endswith("}"), text
        out = {}
        for entry in _split_top(text[1:-1]):
            key, _, expr = entry.partition("=")
            out[key.strip()] = self.value(expr)
        return out

    def environment(self) -> dict[str, str]:
        expr = _unwrap(self.root.locals["environment"])
        assert expr.startswith("merge(") and expr.endswith(")")
        env: dict[str, str] = {}
        for part in _split_top(expr[len("merge(") : -1]):
            m = re.fullmatch(r"local\.(\w+) \? (\{.*\}) : \{\}", part, re.S)
            if m:
                if self.enabled(m[1]):
                    env.update(self.map(m[2]))
            else:
                env.update(self.map(part))
        return env

    def secret_names(self) -> list[str]:
        expr = _unwrap(self.root.locals["secret_names"])
        m = re.fullmatch(r"toset\(concat\((.*)\)\)", expr, re.S)
        assert m, expr
        names: list[str] = []
        for part in _split_top(m[1]):
            cond = re.fullmatch(r"local\.(\w+) \? (\[.*\]) : \[\]", part, re.S)
            if cond:
                if self.enabled(cond[1]):
                    names.extend(ast.literal_eval(cond[2]))
            else:
                names.extend(ast.literal_eval(part))
        return names


PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
SECRET_VALUES = {
    "PLOYD_DATABASE_URL": "postgresql+psycopg://ployd:pw@db.internal:5432/ployd?sslmode=require",
    "PLOYD_ADMIN_TOKEN": "a" * 48,
    "PLOYD_SECRET_KEY": "k" * 64,
    "PLOYD_GITHUB_PRIVATE_KEY": PEM,
    "PLOYD_GITHUB_WEBHOOK_SECRET": "w" * 40,
    "PLOYD_GITLAB_TOKEN": "glpat-" + "t" * 20,
    "PLOYD_GITLAB_WEBHOOK_SECRET": "g" * 40,
}


@pytest.fixture(scope="module")
def rendered(root: Module) -> tuple[dict[str, str], list[str]]:
    example = load_module(EXAMPLE)
    tfvars = _tfvars()
    render = Render(root, Inputs(root, example, tfvars), tfvars["region"])
    return render.environment(), render.secret_names()


def _task_env(rendered: tuple[dict[str, str], list[str]]) -> dict[str, str]:
    env, secrets = rendered
    return {**env, **{k: SECRET_VALUES[k] for k in secrets}}


# ---- what the app reads --------------------------------------------------------------


def names_the_server_reads() -> set[str]:
    """PLOYD_* names the server's code reads: string constants passed to a call
    (``env.get("PLOYD_X")``, ``_int(env, "PLOYD_X", ...)``) or used as a subscript
    (``env["PLOYD_X"]``), anywhere in app/ but the agent and the user data it gets."""
    found: set[str] = set()
    for path in APP.rglob("*.py"):
        rel = path.relative_to(APP)
        if rel.parts[0] in NOT_SERVER or str(rel) in NOT_SERVER_FILES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            args: list[ast.expr] = []
            if isinstance(node, ast.Call):
                args = [*node.args, *(k.value for k in node.keywords)]
            elif isinstance(node, ast.Subscript):
                args = [node.slice]
            for a in args:
                if (
                    isinstance(a, ast.Constant)
                    and isinstance(a.value, str)
                    and re.fullmatch(r"PLOYD_[A-Z0-9_]+", a.value)
                ):
                    found.add(a.value)
    return found


# ---- the tests -----------------------------------------------------------------------


def test_the_reader_finds_what_settings_read() -> None:
    """The scan is not empty-handed: known reads of settings.py, the EC2 configuration
    and its policy are found, and names the app only writes (a job's environment) are not."""
    names = names_the_server_reads()
    assert {
        "PLOYD_HOST",
        "PLOYD_S3_BUCKET",
        "PLOYD_EC2_LAUNCH_TEMPLATES",
        "PLOYD_EC2_POOLS",
    } <= names
    assert {"PLOYD_GITHUB_APP_ID", "PLOYD_GITLAB_URL", "PLOYD_SMTP_HOST"} <= names
    assert "PLOYD_JOB" not in names and "PLOYD_PIPELINE_ID" not in names  # set for steps
    assert "PLOYD_S3_ARTIFACTS_BUCKET" not in names


def test_the_example_renders_an_environment_the_service_accepts(
    rendered: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env = _task_env(rendered)
    assert env["PLOYD_EXECUTOR"] == "ec2"
    templates = json.loads(env["PLOYD_EC2_LAUNCH_TEMPLATES"])
    assert set(templates) == {"cpu", "l4", "a100", "default"}
    assert templates["default"] == templates["cpu"]  # default_runner_class's default

    settings = Settings.from_env(env)  # what `ployd serve` does first: raises if refused
    settings.check_exposure()  # 0.0.0.0 needs the admin token: ECS injects it
    assert settings.ec2 is not None and settings.ec2_policy is not None
    config = EC2Config.from_env(env)
    assert config == settings.ec2
    assert config.region == "eu-west-1"
    assert config.subnets == ("subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2")
    assert config.image_for("l4").value == templates["l4"]
    assert config.image_for("h100").value == templates["cpu"]  # no h100 template: default
    EC2Policy.from_env(env)
    assert settings.s3_bucket == f"ployd-logs-{ACCOUNT}-eu-west-1"
    assert settings.artifact_expire_s == 30 * 86400 and settings.cache_unused_ttl_s == 14 * 86400
    assert settings.github is not None and settings.gitlab is None
    assert settings.deployment == "ployd"


def test_every_ployd_variable_the_task_gets_is_one_the_app_reads(
    rendered: tuple[dict[str, str], list[str]],
) -> None:
    env, secrets = rendered
    reads = names_the_server_reads()
    set_there = {k for k in [*env, *secrets] if k.startswith("PLOYD_")}
    assert set_there - reads == set(), "ECS sets variables PloyD never reads"
    others = {k for k in env if not k.startswith("PLOYD_")}
    assert others == {"AWS_REGION", "AWS_DEFAULT_REGION", "PYTHONUNBUFFERED"}


def test_without_a_default_class_the_plan_is_refused(root: Module) -> None:
    """runner_classes without "default" and without default_runner_class's class: the
    task definition's precondition stops the plan, before anything crash-loops."""
    example = load_module(EXAMPLE)
    tfvars = _tfvars()
    inputs = Inputs(root, example, tfvars)
    render = Render(root, inputs, tfvars["region"])
    render.classes = {"l4": {}, "a100": {}}
    with pytest.raises(AssertionError, match="no launch template for default class 'cpu'"):
        render.launch_templates()
    render.classes = {"l4": {}, "default": {}}  # its own "default" class serves the rest
    templates = render.launch_templates()
    assert set(templates) == {"l4", "default"} and templates["default"] != templates["l4"]
    td = root.one("aws_ecs_task_definition", "service").body
    conditions = [p["condition"] for p in td["lifecycle"][0]["precondition"]]
    assert "${contains(keys(var.runner_classes), local.default_runner_class)}" in conditions


def test_apply_waits_for_the_service_to_be_steady(root: Module) -> None:
    svc = root.one("aws_ecs_service", "main").body
    assert svc["wait_for_steady_state"] is True
    (breaker,) = svc["deployment_circuit_breaker"]
    assert breaker["enable"] is True and breaker["rollback"] is True
