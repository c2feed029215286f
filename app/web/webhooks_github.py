"""`POST /webhooks/github`: verify, record in the inbox, answer; the work happens after.

The body is read whole (up to ``PLOYD_WEBHOOK_MAX_BYTES``, GitHub's 25 MB by default),
its signature checked over the raw bytes, and it is parsed once (orjson). Refused
without storing anything: a missing or bad ``X-Hub-Signature-256`` (401), a body over
the cap (413), a body that is not a JSON object (400), a delivery without
``installation`` (400: PloyD must be installed as an App), a delivery of an event PloyD
acts on that lacks a field its handler reads or has it of the wrong type (400 naming
the field: ``app.core.receipts``). ``ping`` is answered at once; events and actions PloyD
does not handle get 202 "ignored" and are not stored. An accepted delivery is answered
202 only once the transaction holding it has committed (``InboxWriter``: group commit
off the event loop); a repeated ``X-GitHub-Delivery`` is acknowledged (200) and does
nothing.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from app.core.receipts import github_problem
from app.core.triggers import PR_TYPES
from app.core.webhooks import verify_github
from app.store.inbox import Delivery
from app.web.common import (
    GITHUB_WORKER,
    INBOX_WRITER,
    error,
    parse_json,
    read_capped,
    refuse,
    services,
)

routes = web.RouteTableDef()

DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII: GitHub sends a UUID

# event -> the actions PloyD acts on (None: every action)
HANDLED: dict[str, frozenset[str] | None] = {
    "push": None,
    "pull_request": frozenset(PR_TYPES),  # every action `on.pull_request.types` names
    "check_suite": frozenset({"requested", "rerequested"}),
    "check_run": frozenset({"rerequested", "requested_action"}),
    "merge_group": frozenset({"checks_requested"}),
    "issue_comment": frozenset({"created"}),
    "installation": None,
    "installation_repositories": None,
}


def _ignored(event: str, payload: dict[str, Any]) -> web.Response:
    action = payload.get("action")
    what = f"{event}.{action}" if isinstance(action, str) else event
    return web.json_response({"ignored": what[:200]}, status=202)


@routes.post("/webhooks/github")
async def github_webhook(request: web.Request) -> web.Response:
    svc = services(request)
    config = svc.settings.github
    if config is None:
        return error(404, "GitHub is not configured on this PloyD (set PLOYD_GITHUB_APP_ID)")
    limit = svc.settings.max_webhook_bytes
    body = await read_capped(request, limit)
    if body is None:
        return refuse(request, "github", "too_large", 413, f"the body is larger than {limit} bytes")
    if not verify_github(body, request.headers.get("X-Hub-Signature-256"), config.webhook_secret):
        return refuse(request, "github", "bad_signature", 401, "missing or bad X-Hub-Signature-256")
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not event or not DELIVERY_ID.fullmatch(delivery):
        return refuse(
            request,
            "github",
            "malformed",
            400,
            "X-GitHub-Event and X-GitHub-Delivery (printable ASCII, at most 128) are required",
        )
    try:
        payload: Any = parse_json(body)
    except ValueError as e:
        return refuse(request, "github", "malformed", 400, f"the body is not JSON: {e}")
    if not isinstance(payload, dict):
        return refuse(request, "github", "malformed", 400, "the body must be a JSON object")
    if event == "ping":
        zen = payload.get("zen")
        return web.json_response({"ok": True, "zen": zen if isinstance(zen, str) else ""})
    if event not in HANDLED:
        return _ignored(event, payload)
    actions = HANDLED[event]
    if actions is not None:
        action = payload.get("action")
        if "action" in payload and not isinstance(action, str):
            return refuse(request, "github", "malformed", 400, "field 'action' must be a string")
        if action not in actions:
            return _ignored(event, payload)
    if not isinstance(payload.get("installation"), dict):
        return refuse(
            request,
            "github",
            "no_installation",
            400,
            "this delivery has no 'installation': PloyD must be installed as a GitHub App "
            "(a plain repository webhook is not enough); see README, 'Connect GitHub'",
        )
    problem = github_problem(event, payload)
    if problem is not None:
        return refuse(request, "github", "malformed", 400, f"{event}: {problem}")
    svc.metrics.webhooks.labels("github").inc()
    # orjson checked the body is UTF-8: stored as it came, not encoded again.
    record = Delivery("github", delivery, event, body.decode())
    try:
        inbox_id, new = await request.app[INBOX_WRITER].record(record)
    except Exception:
        return error(503, "the delivery could not be recorded (database unavailable); retry")
    if not new:
        return web.json_response({"duplicate": delivery}, status=200)
    request.app[GITHUB_WORKER].submit(inbox_id)
    return web.json_response({"accepted": delivery}, status=202)
