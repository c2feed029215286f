"""References to secrets kept in AWS, resolved when a job is dispatched.

- ``aws-sm:NAME_OR_ARN`` — a Secrets Manager secret's ``SecretString``;
  ``aws-sm:NAME_OR_ARN#key`` — one key of a JSON ``SecretString``;
- ``aws-ssm:/path/to/param`` — an SSM Parameter Store parameter (decrypted).

PloyD stores only the reference; the value is fetched for each job that declares it,
with the server's own AWS credentials, and never stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFIXES = ("aws-sm:", "aws-ssm:")


class ReferenceError(ValueError):
    """A reference that is malformed or that AWS cannot resolve."""


@dataclass(frozen=True)
class Reference:
    service: str  # "aws-sm" | "aws-ssm"
    name: str
    json_key: str | None = None

    def __str__(self) -> str:
        key = f"#{self.json_key}" if self.json_key else ""
        return f"{self.service}:{self.name}{key}"


def is_reference(text: str) -> bool:
    return text.startswith(PREFIXES)


def parse(text: str) -> Reference:
    """``aws-sm:NAME[#key]`` or ``aws-ssm:/path`` -> Reference; ReferenceError otherwise."""
    text = text.strip()
    if text.startswith("aws-sm:"):
        rest = text[len("aws-sm:") :]
        name, _, key = rest.partition("#")
        if not name:
            raise ReferenceError(f"{text!r}: write aws-sm:NAME_OR_ARN or aws-sm:NAME#json-key")
        if "#" in rest and not key:
            raise ReferenceError(f"{text!r}: the JSON key after '#' is empty")
        return Reference("aws-sm", name, key or None)
    if text.startswith("aws-ssm:"):
        path = text[len("aws-ssm:") :]
        if not path.startswith("/") or path == "/" or "#" in path:
            raise ReferenceError(f"{text!r}: write aws-ssm:/path/to/parameter")
        return Reference("aws-ssm", path)
    raise ReferenceError(
        f"{text!r} is not a reference: write aws-sm:NAME_OR_ARN[#json-key] or aws-ssm:/path"
    )


ClientFactory = Callable[[str], Any]  # service name ("secretsmanager", "ssm") -> boto3 client


# A job's claim waits on these calls: a shorter read timeout and fewer tries than the
# shared defaults.
READ_TIMEOUT_S = 10.0
ATTEMPTS = 2


def boto_clients(region: str, endpoint_url: str | None = None) -> ClientFactory:
    """boto3 clients for ``region`` (``endpoint_url``: moto or LocalStack), one per
    service, built on first use."""
    cache: dict[str, Any] = {}

    def make(service: str) -> Any:
        if service not in cache:
            from app.adapters import aws

            cache[service] = aws.client(
                service,
                region=region,
                endpoint_url=endpoint_url,
                read_timeout=READ_TIMEOUT_S,
                attempts=ATTEMPTS,
            )
        return cache[service]

    return make


class Resolver:
    """Fetches a reference's value from AWS."""

    def __init__(self, clients: ClientFactory) -> None:
        self.clients = clients

    def resolve(self, ref: Reference) -> str:
        try:
            if ref.service == "aws-sm":
                got = self.clients("secretsmanager").get_secret_value(SecretId=ref.name)
                value = got.get("SecretString")
                if value is None:
                    raise ReferenceError(f"{ref}: the secret has no string value")
                if ref.json_key is None:
                    return str(value)
                try:
                    data = json.loads(value)
                except ValueError:
                    raise ReferenceError(f"{ref}: the secret is not JSON") from None
                if not isinstance(data, dict) or ref.json_key not in data:
                    raise ReferenceError(f"{ref}: the secret's JSON has no key {ref.json_key!r}")
                return str(data[ref.json_key])
            got = self.clients("ssm").get_parameter(Name=ref.name, WithDecryption=True)
            return str(got["Parameter"]["Value"])
        except ReferenceError:
            raise
        except Exception as e:  # botocore errors: not found, access denied, network
            code = getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__
            raise ReferenceError(f"{ref} could not be read from AWS ({code})") from None
