"""Webhook deliveries as GitLab sends them: documented payloads and delivery headers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab" / "webhooks"
GITLAB_VERSION = "17.8.0"


def load_fixture(name: str) -> dict[str, Any]:
    """A documented webhook payload, e.g. ``load_fixture("merge_request.open")``."""
    path = FIXTURES / (name if name.endswith(".json") else f"{name}.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def fixture_event(name: str) -> str:
    """The ``X-Gitlab-Event`` header GitLab sends with fixture ``name`` (from index.json)."""
    file = name if name.endswith(".json") else f"{name}.json"
    index = json.loads((FIXTURES / "index.json").read_text(encoding="utf-8"))
    return str(next(entry["x_gitlab_event"] for entry in index if entry["file"] == file))


def delivery_headers(
    event_header: str,
    token: str | None,
    idempotency_key: str | None = None,
    uuid_: str | None = None,
    *,
    instance: str = "https://gitlab.example.com",
    webhook_uuid: str = "7d3c2c4e-5a0b-4d7e-9c51-1b2f0b8f7a10",
    **kw: str,
) -> dict[str, str]:
    """The headers GitLab sends with a webhook delivery (section 7 of the contract).

    ``token`` None leaves out ``X-Gitlab-Token`` (no secret configured). ``uuid_`` (alias
    ``uuid=``) is the ``X-Gitlab-Event-UUID``; ``idempotency_key`` stays the same across
    retries of one delivery. Both default to fresh UUIDs.
    """
    event_uuid = kw.pop("uuid", None) or uuid_ or str(uuid.uuid4())
    if kw:
        raise TypeError(f"unexpected arguments: {sorted(kw)}")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"GitLab/{GITLAB_VERSION}",
        "X-Gitlab-Event": event_header,
        "X-Gitlab-Instance": instance,
        "X-Gitlab-Webhook-UUID": webhook_uuid,
        "X-Gitlab-Event-UUID": event_uuid,
        "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers
