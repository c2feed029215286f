"""The errors the EC2 adapter raises, and which EC2 error codes mean what.

``ForgeError`` (``app.adapters.errors``) does not fit: it is keyed by an HTTP status and
named after forges, while EC2 answers with string codes (``InsufficientInstanceCapacity``)
whose HTTP status is a uniform 400/503. Cloud adapters get their own base, ``CloudError``.

* ``CapacityError``: this instance type, market or subnet cannot be had *now*; the caller
  moves to its next candidate at once (``kind``: no_capacity, limit, price, unsupported).
* ``EC2Error``: anything else EC2 refused (bad parameters, permissions, unknown ids), or a
  throttle/outage that outlasted the retry budget (``transient`` is then True).
"""

from __future__ import annotations

from typing import Literal

CapacityKind = Literal["no_capacity", "limit", "price", "unsupported"]

# RunInstances codes that mean "try another candidate", by kind. Sources: EC2 API
# "Error codes" reference; aws-parallelcluster-node's fast fail-over list.
CAPACITY_CODES: dict[str, CapacityKind] = {
    "InsufficientInstanceCapacity": "no_capacity",
    "InsufficientFreeAddressesInSubnet": "no_capacity",
    "InsufficientCapacity": "no_capacity",
    "UnfulfillableCapacity": "no_capacity",
    "InstanceLimitExceeded": "limit",
    "VcpuLimitExceeded": "limit",
    "MaxSpotInstanceCountExceeded": "limit",
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
    kind = CAPACITY_CODES.get(code) if operation == "RunInstances" else None
    if kind is not None:
        return CapacityError(kind, message, code=code, operation=operation)
    transient = code in THROTTLE_CODES or code in UNAVAILABLE_CODES or not code
    return EC2Error(code, message, operation=operation, transient=transient)
