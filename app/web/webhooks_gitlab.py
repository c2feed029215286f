"""`POST /webhooks/gitlab`: check the token, record in the inbox, answer; work after.

GitLab disables a hook that fails or times out repeatedly, so this answers within
milliseconds and never with a 5xx for a delivery it took. Refused without storing
anything: a missing or wrong ``X-Gitlab-Token`` (401), a body over the cap (413), a body
that is not a JSON object (400). Events PloyD does not act on get 202 and are not stored.
A delivery PloyD acts on that lacks a field its handler reads, or has it of the wrong
type, is refused with a 400 naming the field (``app.core.receipts``). An accepted one is
answered only once the transaction holding it has committed (``InboxWriter``). A
repeated ``Idempotency-Key`` (or, from GitLab before 17.4, ``X-Gitlab-Event-UUID``) is
acknowledged and does nothing.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from app.core.receipts import gitlab_problem
from app.core.webhooks import verify_token
from app.store.inbox import Delivery
from app.web.common import (
    GITLAB_WORKER,
    INBOX_WRITER,
    error,
    parse_json,
    read_capped,
    refuse,
    services,
)

routes = web.RouteTableDef()

MR_ACTIONS = frozenset({"open", "reopen", "update", "close", "merge"})
PRINTABLE = re.compile(r"[\x21-\x7e]{1,128}")


def wanted(event: str, payload: dict[str, Any]) -> bool:
    """Whether PloyD acts on this delivery."""
    if event in ("Push Hook", "Tag Push Hook"):
        return True
    attrs = payload.get("object_attributes") or {}
    if not isinstance(attrs, dict):
        return True  # refused on receipt, naming the field (gitlab_problem)
    if event == "Merge Request Hook":
        action = attrs.get("action")
        if action == "update":
            return bool(attrs.get("oldrev"))  # new commits; not a title edit
        return action in MR_ACTIONS
    if event == "Note Hook":
        return attrs.get("noteable_type") == "MergeRequest" and attrs.get("action") in (
            None,
            "create",
        )
    return False


@routes.post("/webhooks/gitlab")
async def gitlab_webhook(request: web.Request) -> web.Response:
    svc = services(request)
    config = svc.settings.gitlab
    if config is None:
        return error(404, "GitLab is not configured on this PloyD (set PLOYD_GITLAB_TOKEN)")
    # The token is a header: checked before a byte of the body is read.
    if not verify_token(request.headers.get("X-Gitlab-Token"), config.webhook_secret):
        return refuse(request, "gitlab", "bad_token", 401, "missing or wrong X-Gitlab-Token")
    limit = svc.settings.max_webhook_bytes
    body = await read_capped(request, limit)
    if body is None:
        return refuse(request, "gitlab", "too_large", 413, f"the body is larger than {limit} bytes")
    event = request.headers.get("X-Gitlab-Event", "")
    try:
        payload: Any = parse_json(body)
    except ValueError as e:
        return refuse(
            request,
            "gitlab",
            "malformed",
            400,
            f"the body is not JSON (is a custom payload template set on the hook?): {e}",
        )
    if not isinstance(payload, dict):
        return refuse(request, "gitlab", "malformed", 400, "the body must be a JSON object")
    if not wanted(event, payload):
        return web.json_response({"ignored": (event or "no X-Gitlab-Event")[:200]}, status=202)
    problem = gitlab_problem(event, payload)
    if problem is not None:
        return refuse(request, "gitlab", "malformed", 400, f"{event}: {problem}")
    delivery = (
        request.headers.get("Idempotency-Key")
        or request.headers.get("X-Gitlab-Event-UUID")
        or f"no-id-{uuid.uuid4()}"
    )[:128]
    if not PRINTABLE.fullmatch(delivery):
        return refuse(
            request, "gitlab", "malformed", 400, "Idempotency-Key must be printable ASCII"
        )
    svc.metrics.webhooks.labels("gitlab").inc()
    record = Delivery("gitlab", delivery, event, body.decode())
    try:
        inbox_id, new = await request.app[INBOX_WRITER].record(record)
    except Exception:
        return error(503, "the delivery could not be recorded (database unavailable); retry")
    if not new:
        return web.json_response({"duplicate": delivery}, status=200)
    request.app[GITLAB_WORKER].submit(inbox_id)
    return web.json_response({"accepted": delivery}, status=202)
