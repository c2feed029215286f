"""The errors the EC2 adapter raises, and which EC2 error codes mean what.

``ForgeError`` (``app.adapters.errors``) does not fit: it is keyed by an HTTP status and
named after forges, while EC2 answers with string codes (``InsufficientInstanceCapacity``)
whose HTTP status is a uniform 400/503. Cloud adapters get their own base, ``CloudError``.

* ``CapacityError``: this instance type, market or subnet cannot be had *now*; the caller
  moves to its next candidate at once (``kind``: no_capacity, limit, price, unsupported).
* ``SpotUnavailableError``: spot cannot be used in this account or for this type at all
  (``AuthFailure.ServiceLinkedRoleCreationNotPermitted``, spot unsupported): on-demand next.
* ``QuotaError``: an account quota is used up (``VcpuLimitExceeded``...): ``quota`` names
  it (and its Service Quotas code); the same quota's other candidates are skipped.
* ``BadRequestError``: the operator's configuration is wrong (a bad AMI, subnet, mapping,
  permissions): ``setting`` names what to fix; retrying changes nothing.
* ``EC2Error``: anything else EC2 refused, or a throttle/outage that outlasted the retry
  budget (``transient`` is then True).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CapacityKind = Literal["no_capacity", "limit", "price", "unsupported"]

# RunInstances codes that mean "try another candidate", by kind. Sources: EC2 API
# "Error codes" reference; aws-parallelcluster-node's fast fail-over list.
CAPACITY_CODES: dict[str, CapacityKind] = {
    "InsufficientInstanceCapacity": "no_capacity",
    "InsufficientFreeAddressesInSubnet": "no_capacity",
    "InsufficientCapacity": "no_capacity",
    "UnfulfillableCapacity": "no_capacity",
    # the targeted capacity reservation / Capacity Block has no free instance
    "ReservationCapacityExceeded": "no_capacity",
    "SpotMaxPriceTooLow": "price",
    "Unsupported": "unsupported",
}

# Worth the same call again after a backoff.
THROTTLE_CODES = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled"}
)
UNAVAILABLE_CODES = frozenset({"InternalError", "ServiceUnavailable", "Unavailable"})

# "This id is unknown": for terminate and state, an answer rather than a failure.
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound"})


class CloudError(Exception):
    """A cloud provider refused a call, or could not be reached.

    ``code`` is the provider's error code ("" when there was no answer), ``message`` its
    own words, ``transient`` whether the same call may succeed later unchanged.
    """

    cloud = "cloud"

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        self.code = code
        self.message = message
        self.transient = transient
        super().__init__(f"{self.cloud} {code or 'unreachable'}: {message}")


class EC2Error(CloudError):
    """EC2 refused ``operation`` (e.g. RunInstances) with ``code``."""

    cloud = "EC2"

    def __init__(
        self, code: str, message: str, *, operation: str = "", transient: bool = False
    ) -> None:
        self.operation = operation
        super().__init__(code, message, transient=transient)


class CapacityError(EC2Error):
    """No capacity, a quota, a price cap or an unsupported type/AZ: try the next candidate.

    Subclasses ``EC2Error``, so catch it first: ``except CapacityError`` then
    ``except EC2Error``.
    """

    def __init__(
        self, kind: CapacityKind, message: str, *, code: str = "", operation: str = ""
    ) -> None:
        self.kind: CapacityKind = kind
        super().__init__(code or kind, message, operation=operation)


def classify(code: str, message: str, operation: str = "") -> EC2Error:
    """The error to raise for EC2's ``code`` (no retry decided here).

    Capacity codes count as such only on RunInstances (``Unsupported`` elsewhere means an
    unsupported request, not "this type is not offered here").
    """
    if operation == "RunInstances":
        special = _launch_error(code, message)
        if special is not None:
            return special
    kind = CAPACITY_CODES.get(code) if operation == "RunInstances" else None
    if kind is not None:
        return CapacityError(kind, message, code=code, operation=operation)
    transient = code in THROTTLE_CODES or code in UNAVAILABLE_CODES or not code
    return EC2Error(code, message, operation=operation, transient=transient)


# -- RunInstances refusals that are not about capacity --------------------------------

QUOTA_CODES = frozenset(
    {"VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded"}
)
SPOT_UNAVAILABLE_CODES = frozenset({"AuthFailure.ServiceLinkedRoleCreationNotPermitted"})

# The operator's setting behind each "bad request" code (prefix match for ``X.*``).
BAD_REQUEST_SETTINGS: dict[str, str] = {
    "InvalidAMIID.": "PLOYD_EC2_AMIS (the AMI of this hardware class)",
    "InvalidLaunchTemplateId.": "PLOYD_EC2_LAUNCH_TEMPLATES",
    "InvalidLaunchTemplateName.": "PLOYD_EC2_LAUNCH_TEMPLATES",
    "InvalidSubnetID.": "PLOYD_EC2_SUBNETS",
    "InvalidSubnet": "PLOYD_EC2_SUBNETS",
    "InvalidGroup.": "PLOYD_EC2_SECURITY_GROUP",
    "InvalidGroupId.": "PLOYD_EC2_SECURITY_GROUP",
    "InvalidKeyPair.": "PLOYD_EC2_KEY_NAME",
    "InvalidBlockDeviceMapping": (
        "PLOYD_EC2_ROOT_GB or the job's resources.disk (at least the AMI snapshot's size)"
    ),
    "UnauthorizedOperation": (
        "the IAM policy of PloyD's role (ec2:RunInstances, ec2:CreateTags, iam:PassRole "
        "on PLOYD_EC2_INSTANCE_PROFILE's role)"
    ),
    "InvalidParameterValue": "the EC2 settings (PLOYD_EC2_*)",
    "InvalidParameterCombination": "the EC2 settings (PLOYD_EC2_*)",
    "InvalidParameter": "the EC2 settings (PLOYD_EC2_*)",
    "MissingParameter": "the EC2 settings (PLOYD_EC2_*)",
}


@dataclass(frozen=True)
class Quota:
    """An EC2 service quota: its name in Service Quotas and its code (``L-...``; empty
    when PloyD does not know it)."""

    name: str
    code: str = ""

    def where(self, region: str) -> str:
        """Where to raise it."""
        if not self.code:
            return f"raise it in Service Quotas > Amazon EC2 ({region})"
        return (
            f"raise it in Service Quotas > Amazon EC2 ({region}): "
            f"https://{region}.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/"
            f"{self.code}, or `aws service-quotas request-service-quota-increase "
            f"--service-code ec2 --quota-code {self.code} --desired-value N --region {region}`"
        )


# Instance family prefix -> (on-demand quota, spot quota): the vCPU-based quotas.
_QUOTAS: list[tuple[tuple[str, ...], Quota, Quota]] = [
    (
        ("g", "vt"),
        Quota("Running On-Demand G and VT instances", "L-DB2E81BA"),
        Quota("All G and VT Spot Instance Requests", "L-3819A6DF"),
    ),
    (
        ("p",),
        Quota("Running On-Demand P instances", "L-417A185B"),
        Quota("All P Spot Instance Requests", "L-7212CCBC"),
    ),
    (
        ("inf",),
        Quota("Running On-Demand Inf instances", "L-1945791B"),
        Quota("All Inf Spot Instance Requests", "L-B5D1601B"),
    ),
    (
        ("trn",),
        Quota("Running On-Demand Trn instances", "L-2C3B7624"),
        Quota("All Trn Spot Instance Requests", "L-6B0D517C"),
    ),
    (
        ("dl",),
        Quota("Running On-Demand DL instances", "L-6E869C2A"),
        Quota("All DL Spot Instance Requests", "L-85EED4F7"),
    ),
    (
        ("f",),
        Quota("Running On-Demand F instances", "L-74FC7D96"),
        Quota("All F Spot Instance Requests", "L-88CF9481"),
    ),
    (
        ("x",),
        Quota("Running On-Demand X instances", "L-7295265B"),
        Quota("All X Spot Instance Requests", "L-E3A00192"),
    ),
    (
        ("a", "c", "d", "h", "i", "m", "r", "t", "z"),
        Quota("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "L-1216C47A"),
        Quota("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-34B43A08"),
    ),
]


_OWN_QUOTAS = frozenset({"hpc", "mac", "u", "inf", "trn", "dl", "vt"})


def quota_for(instance_type: str, market: str) -> Quota:
    """The quota a launch of ``instance_type`` on ``market`` counts against."""
    family = instance_type.split(".", 1)[0].lower()
    lead = ""  # the family's leading letters: "g6e" -> "g", "inf2" -> "inf"
    for ch in family:
        if not ch.isalpha():
            break
        lead += ch
    for prefixes, on_demand, spot in _QUOTAS:
        standard = len(prefixes) > 2 and lead[:1] in prefixes and lead not in _OWN_QUOTAS
        if lead in prefixes or standard:
            return spot if market == "spot" else on_demand
    kind = "Spot Instance Requests" if market == "spot" else "On-Demand instances"
    return Quota(f"EC2 {kind} of the {family} family")


class QuotaError(EC2Error):
    """An account quota is used up; ``quota`` is filled in by the caller (it knows the
    instance type and market), see ``quota_for``."""


class SpotUnavailableError(EC2Error):
    """Spot cannot be used here (this account, or this type): on-demand instead."""


class BadRequestError(EC2Error):
    """The request is wrong whatever the candidate: ``setting`` is what to fix."""

    def __init__(self, code: str, message: str, *, setting: str, operation: str = "") -> None:
        self.setting = setting
        super().__init__(code, message, operation=operation)


def _launch_error(code: str, message: str) -> EC2Error | None:
    op = "RunInstances"
    if code in QUOTA_CODES:
        return QuotaError(code, message, operation=op)
    if code in SPOT_UNAVAILABLE_CODES:
        return SpotUnavailableError(code, message, operation=op)
    if code in ("Unsupported", "UnsupportedOperation") and "spot" in message.lower():
        return SpotUnavailableError(code, message, operation=op)
    for prefix, setting in BAD_REQUEST_SETTINGS.items():
        if code == prefix or (prefix.endswith(".") and code.startswith(prefix)):
            if code.startswith("InvalidParameter") and "iaminstanceprofile" in message.lower():
                setting = "PLOYD_EC2_INSTANCE_PROFILE"
            return BadRequestError(code, message, setting=setting, operation=op)
    return None
