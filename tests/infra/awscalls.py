"""The AWS calls PloyD's server makes, found in the source of app/ (an AST scan, no import),
as IAM actions, for tests/infra/test_terraform_iam.py.

A call is found in one of three shapes:

- ``<client>.<operation>(...)`` where ``<client>`` is named like a boto3 client
  (``client``, ``kms``, ``s3``, ``ssm``, ``ec2``, ``pricing``, ...) or is
  ``clients("SERVICE")`` (``app.secrets.references``) and ``<operation>`` is one of
  that service's operations in botocore's own models (snake_case);
- ``<client>.generate_presigned_url("OPERATION", ...)``: the URL is signed with the
  server's credentials, so the operation is the server's to be allowed;
- ``._call("Operation", ...)`` and ``call(client, "Operation", params, ...)``
  (``app.adapters.ec2``'s entry points, for EC2 and SSM): an operation in CamelCase of
  the one service (EC2, Pricing, SSM, ...) that has it.

The agent (``app/agent``, runs on the machines, with the instance role) is not scanned.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
SERVICES = ("ec2", "s3", "kms", "secretsmanager", "ssm", "pricing")
# The IAM prefix of a service, where it is not its botocore name.
IAM_PREFIX = {"secretsmanager": "secretsmanager"}
CLIENT_NAMES = {"client", "_client", "boto", "kms", "s3", "ssm", "ec2", "pricing", "sm"}
# S3 operations whose IAM action has another name.
S3_ACTIONS = {
    "HeadObject": "GetObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "DeleteObjects": "DeleteObject",
}


@dataclass(frozen=True)
class Call:
    action: str  # ec2:RunInstances
    path: str  # app/adapters/ec2/client.py
    line: int

    def __str__(self) -> str:
        return f"{self.action} ({self.path}:{self.line})"


@cache
def operations(service: str) -> dict[str, str]:
    """snake_case method -> CamelCase operation, from botocore's model of ``service``."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def _action(service: str, operation: str) -> str:
    if service == "s3":
        operation = S3_ACTIONS.get(operation, operation)
    return f"{IAM_PREFIX.get(service, service)}:{operation}"


def _receiver(node: ast.expr) -> tuple[str | None, str | None]:
    """(client-like name, explicit service) of a call's receiver."""
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        service = node.args[0].value
        if isinstance(service, str) and service in SERVICES:
            return None, service  # clients("ssm").get_parameter(...)
    if isinstance(node, ast.Attribute):
        return node.attr, None
    if isinstance(node, ast.Name):
        return node.id, None
    return None, None


def _service_of(method: str, name: str | None) -> str | None:
    having = [s for s in SERVICES if method in operations(s)]
    if name in SERVICES and name in having:
        return name
    if len(having) == 1:
        return having[0]
    return None


def _operation_argument(node: ast.Call) -> str | None:
    """The IAM action of a ``_call("Operation", ...)`` / ``call(client, "Operation", ...)``:
    the first CamelCase string argument that is an operation of exactly one service."""
    for arg in node.args[:2]:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            continue
        having = [s for s in SERVICES if arg.value in operations(s).values()]
        if having:
            where = f"line {node.lineno}"
            assert len(having) == 1, f"{where}: which service's {arg.value}? {having}"
            return _action(having[0], arg.value)
    return None  # not an AWS operation (the forges' clients have a _call too)


def _calls_in(path: Path) -> list[Call]:
    rel = str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text(), str(path))
    out: list[Call] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "call":
            op = _operation_argument(node)  # transport.call(client, "Operation", params)
            if op is not None:
                out.append(Call(op, rel, node.lineno))
            continue
        if not isinstance(node.func, ast.Attribute):
            continue
        method = node.func.attr
        first = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
        op = _operation_argument(node)
        if method == "_call" and op is not None:
            out.append(Call(op, rel, node.lineno))
            continue
        name, service = _receiver(node.func.value)
        if service is None and name not in CLIENT_NAMES:
            continue
        if method == "generate_presigned_url" and isinstance(first, str):
            method = first
        service = service or _service_of(method, name)
        if service is None or method not in operations(service):
            continue
        out.append(Call(_action(service, operations(service)[method]), rel, node.lineno))
    return out


def server_calls() -> list[Call]:
    """Every AWS call in app/ outside the agent."""
    found: list[Call] = []
    for path in sorted(APP.rglob("*.py")):
        if "agent" in path.relative_to(APP).parts[:1]:
            continue
        found.extend(_calls_in(path))
    return found
