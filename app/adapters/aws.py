"""AWS clients: the one place the server builds a boto3 client for S3 (logs, artifacts,
caches) and for the secrets' services (Secrets Manager, SSM, KMS), with one retry and
timeout policy.

Building a client blocks (botocore loads its service models): do it off the event loop,
once, and keep the client. Each client gets its own ``boto3`` session, so clients may be
built from several threads at once (boto3's default session is not thread-safe).
"""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
# Tries per call, the first included: botocore's "standard" retry mode (throttling,
# 5xx, network errors) with 3 retries.
ATTEMPTS = 4
USER_AGENT = "ployd"


def client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    attempts: int = ATTEMPTS,
) -> Any:
    """A boto3 client for ``service`` in ``region`` (None: the environment's);
    ``endpoint_url`` points it elsewhere than AWS (moto, LocalStack, MinIO). S3 clients
    sign with SigV4 (presigned URLs) and address buckets by path when ``endpoint_url`` is
    set (what those endpoints serve)."""
    import boto3
    from botocore.config import Config

    extra: dict[str, Any] = {}
    if service == "s3":
        extra = {
            "signature_version": "s3v4",
            "s3": {"addressing_style": "path" if endpoint_url else "auto"},
        }
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        user_agent_extra=USER_AGENT,
        **extra,
    )
    session = boto3.session.Session(region_name=region)
    return session.client(service, endpoint_url=endpoint_url, config=config)
