"""An ECR registry login from the machine's instance role, on the standard library.

For an image in ECR (``ACCOUNT.dkr.ecr.REGION.amazonaws.com/...``) that names no
credentials, the agent asks ECR for an authorization token itself:

1. the instance role's temporary credentials from the instance metadata (IMDSv2: a
   session token, then ``iam/security-credentials/ROLE``);
2. ``ecr:GetAuthorizationToken`` (the JSON 1.1 protocol), signed with Signature
   Version 4 (``sign``), at ``AWS_ENDPOINT_URL_ECR`` / ``AWS_ENDPOINT_URL`` when set (a
   VPC endpoint; tests' moto), else ``https://api.ecr.REGION.amazonaws.com``;
3. the token is base64 of ``AWS:PASSWORD``: the login for ``podman/docker login``.

The role needs ``ecr:GetAuthorizationToken`` (and ``ecr:BatchGetImage``,
``ecr:GetDownloadUrlForLayer`` on the repository for the pull itself).

Standard library only, Python 3.9 syntax: this module ships with the agent.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from app.agent.httpclient import TRANSPORT_ERRORS, Http
from app.protocol import RegistryCredentials

IMDS_URL = "http://169.254.169.254"
IMDS_TIMEOUT_S = 5.0
ECR_TIMEOUT_S = 30.0
TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"


class EcrError(Exception):
    """No ECR login could be had; the text says which part failed."""


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    token: str = field(default="", repr=False)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    *,
    region: str,
    service: str,
    credentials: AwsCredentials,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """The request's headers with the Signature Version 4 ones added (``Host``,
    ``X-Amz-Date``, ``X-Amz-Security-Token`` for temporary credentials, and
    ``Authorization``). Every header given is signed."""
    parts = urlsplit(url)
    when = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    out = dict(headers or {})
    out["Host"] = parts.netloc
    out["X-Amz-Date"] = amz_date
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    canon = {k.lower(): " ".join(str(v).split()) for k, v in out.items()}
    signed = ";".join(sorted(canon))
    query = "&".join(
        sorted(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
        )
    )
    canonical = "\n".join(
        [
            method.upper(),
            quote(parts.path or "/", safe="/-_.~"),
            query,
            "".join(f"{k}:{canon[k]}\n" for k in sorted(canon)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + credentials.secret_access_key).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return out


async def instance_credentials(http: Http, base_url: str = IMDS_URL) -> AwsCredentials:
    """The instance role's temporary credentials, from IMDSv2."""
    base = base_url.rstrip("/")
    try:
        r = await http.request(
            "PUT",
            f"{base}/latest/api/token",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
            timeout=IMDS_TIMEOUT_S,
        )
        if r.status != 200:
            raise EcrError(f"the instance metadata refused a session token (HTTP {r.status})")
        auth = {"X-aws-ec2-metadata-token": r.text()}
        path = f"{base}/latest/meta-data/iam/security-credentials/"
        r = await http.request("GET", path, headers=auth, timeout=IMDS_TIMEOUT_S)
        roles = r.text().split() if r.status == 200 else []
        if not roles:
            raise EcrError("this machine has no instance role (no IAM security credentials)")
        r = await http.request("GET", path + roles[0], headers=auth, timeout=IMDS_TIMEOUT_S)
    except TRANSPORT_ERRORS as e:
        raise EcrError(
            f"the instance metadata cannot be reached ({e or type(e).__name__})"
        ) from None
    try:
        doc = json.loads(r.text())
        return AwsCredentials(
            access_key_id=str(doc["AccessKeyId"]),
            secret_access_key=str(doc["SecretAccessKey"]),
            token=str(doc.get("Token") or ""),
        )
    except (ValueError, KeyError, TypeError):
        raise EcrError(
            f"the instance role's credentials are not readable (HTTP {r.status})"
        ) from None


def endpoint_for(region: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (
        env.get("AWS_ENDPOINT_URL_ECR")
        or env.get("AWS_ENDPOINT_URL")
        or f"https://api.ecr.{region}.amazonaws.com/"
    )


async def authorization_token(
    http: Http, region: str, credentials: AwsCredentials, endpoint: str
) -> RegistryCredentials:
    """``ecr:GetAuthorizationToken``: the registry login it gives."""
    body = b"{}"
    headers = sign(
        "POST",
        endpoint,
        region=region,
        service="ecr",
        credentials=credentials,
        body=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET},
    )
    try:
        r = await http.request("POST", endpoint, body=body, headers=headers, timeout=ECR_TIMEOUT_S)
    except TRANSPORT_ERRORS as e:
        raise EcrError(f"ECR cannot be reached at {endpoint} ({e or type(e).__name__})") from None
    if r.status != 200:
        raise EcrError(f"ECR refused GetAuthorizationToken (HTTP {r.status}): {r.text()[:300]}")
    try:
        data = json.loads(r.text())["authorizationData"][0]
        user, sep, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    except (ValueError, KeyError, IndexError, TypeError):
        raise EcrError("ECR's answer holds no authorization token") from None
    if not sep:
        raise EcrError("ECR's authorization token is not USER:PASSWORD")
    return RegistryCredentials(username=user, password=password)


async def login(
    region: str, *, imds_url: str | None = None, endpoint: str | None = None
) -> RegistryCredentials:
    """The registry login for ECR in ``region``, through the machine's instance role."""
    http = Http()
    try:
        creds = await instance_credentials(http, imds_url or IMDS_URL)
        return await authorization_token(http, region, creds, endpoint or endpoint_for(region))
    finally:
        http.close()
