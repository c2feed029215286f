"""IAM covers every AWS call the service makes, and no more: the boto3 calls in app/
(``tests.infra.awscalls``, an AST scan) against the task role's policy document in
infra/terraform/iam.tf, both ways."""

from __future__ import annotations

from typing import Any

from tests.infra.awscalls import Call, server_calls
from tests.infra.tfparse import Module, as_list, statements

# Actions the service needs that no call in app/ names: what AWS checks on the caller
# when a call it makes does something on its behalf.
IMPLIED = {
    "ec2:CreateTags": "RunInstances' TagSpecifications tag the instance and its volumes",
    "iam:PassRole": "the launch templates carry the runners' instance profile",
    "kms:CreateGrant": "EC2 encrypts the runners' volumes with the CMK (kms:ViaService ec2)",
    "kms:DescribeKey": "EC2 encrypts the runners' volumes with the CMK",
    "kms:GenerateDataKeyWithoutPlaintext": "EC2 encrypts the runners' volumes with the CMK",
    "kms:ReEncryptFrom": "EC2 encrypts the runners' volumes with the CMK",
    "kms:ReEncryptTo": "EC2 encrypts the runners' volumes with the CMK",
    "kms:Decrypt": "S3 (SSE-KMS), EC2 (volumes), Secrets Manager and SSM (references) decrypt",
    "kms:GenerateDataKey": "S3 encrypts the objects the service puts with the CMK",
    "s3:ListBucket": "without it S3 answers a read of a missing key 403, not 404",
    "ssm:GetParameters": "RunInstances resolves an ImageId of resolve:ssm:PARAMETER",
}
# Actions granted now for calls that the other issue-17 branches add (the lead merges
# them together): nothing else may be in the policy without a call.
PENDING = {
    "ec2:DescribeInstanceTypeOfferings": "ec2a: skip type/AZ pairs that do not exist",
    "ssm:GetParameter": "ec2b: resolve:ssm AMI parameters (also aws-ssm: references)",
    "ec2:DescribeImages": "ec2b: the AMI's snapshot size",
    "pricing:GetProducts": "ec2d: on-demand prices per region",
    "ec2:DescribeSpotPriceHistory": "ec2d: spot prices per region",
}
# Calls the service makes only with a setting the Terraform deployment does not set.
NEEDS_SETTING = {"app/secrets/crypto.py": "PLOYD_KMS_KEY_ID"}


def _task(root: Module) -> list[dict[str, Any]]:
    (doc,) = [d for d in root.data_of_type("aws_iam_policy_document") if d.name == "task"]
    return [st for st in statements(doc) if st.get("effect", "Allow") == "Allow"]


def _granted(sts: list[dict[str, Any]], action: str, *, direct: bool) -> bool:
    """Some statement allows ``action``; ``direct``: for the service's own call (not
    only through another service, kms:ViaService)."""
    for st in sts:
        if action not in as_list(st.get("actions")):
            continue
        via = any("kms:ViaService" in c["variable"] for c in as_list(st.get("condition")))
        if not (direct and via):
            return True
    return False


def _made(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.path not in NEEDS_SETTING]


def test_the_scan_finds_the_calls_it_should() -> None:
    actions = {c.action for c in server_calls()}
    # one of each shape: EC2's _call("Operation"), an S3 client method, a presigned URL,
    # clients("service").method(...)
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances"} <= actions
    assert {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"} <= actions
    assert {"secretsmanager:GetSecretValue", "ssm:GetParameter"} <= actions
    assert {"kms:GenerateDataKey", "kms:Decrypt"} <= actions
    # and transport.call(client, "Operation", ...): resolve:ssm: AMIs
    assert any(
        c.action == "ssm:GetParameter" and c.path.startswith("app/adapters/ec2/")
        for c in server_calls()
    )


def test_every_aws_call_of_the_service_is_allowed(root: Module) -> None:
    sts = _task(root)
    missing = [str(c) for c in _made(server_calls()) if not _granted(sts, c.action, direct=True)]
    assert not missing, f"the task role may not: {missing}"


def test_calls_behind_a_setting_are_off_in_the_deployment_or_allowed(root: Module) -> None:
    env = " ".join(root.locals["environment"].split())
    sts = _task(root)
    for call in server_calls():
        setting = NEEDS_SETTING.get(call.path)
        if setting is None:
            continue
        if setting in env:
            assert _granted(sts, call.action, direct=True), f"{setting} is set: grant {call}"


def test_the_policy_grants_nothing_the_service_does_not_use(root: Module) -> None:
    used = {c.action for c in _made(server_calls())}
    granted = {a for st in _task(root) for a in as_list(st.get("actions"))}
    unused = granted - used - set(IMPLIED) - set(PENDING)
    assert not unused, f"the task role may do what no call needs: {sorted(unused)}"
    # and each allowance without a call is still in the policy (no stale entries here)
    assert set(IMPLIED) | set(PENDING) <= granted | used, (set(IMPLIED) | set(PENDING)) - granted


def test_references_are_read_only_under_their_prefix(root: Module) -> None:
    sts = {st.get("sid"): st for st in _task(root)}
    sm = sts["ReadSecretReferences"]
    assert as_list(sm["resources"]) == [
        "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:"
        "secret:${local.secret_reference_prefix}*"
    ]
    ssm = sts["ReadParameterReferences"]
    assert as_list(ssm["resources"]) == [
        "arn:${local.partition}:ssm:${local.region}:${local.account_id}:"
        "parameter/${local.secret_reference_prefix}*"
    ]
    assert root.locals["secret_reference_prefix"] == (
        '${coalesce(var.secret_reference_prefix, "${var.name}/jobs/")}'
    )
