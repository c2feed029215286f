"""`POST /webhooks/github`: verify, record in the inbox, answer; the work happens after.

Refused without storing anything: a missing or bad ``X-Hub-Signature-256`` (401), a
body over the cap (413), a body that is not a JSON object (400), a delivery without
``installation`` (400: PloyD must be installed as an App). ``ping`` is answered at once;
events PloyD does not handle get 202 and are not stored; a repeated
``X-GitHub-Delivery`` is acknowledged and does nothing.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from app.core.triggers import PR_TYPES
from app.core.webhooks import verify_github
from app.store import inbox
from app.web.common import GITHUB_WORKER, error, read_capped, refuse, services

routes = web.RouteTableDef()

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


@routes.post("/webhooks/github")
async def github_webhook(request: web.Request) -> web.Response:
    svc = services(request)
    config = svc.settings.github
    if config is None:
        return error(404, "GitHub is not configured on this PloyD (set PLOYD_GITHUB_APP_ID)")
    body = await read_capped(request, svc.settings.max_webhook_bytes)
    if body is None:
        return refuse(
            request,
            "github",
            "too_large",
            413,
            f"the body is larger than {svc.settings.max_webhook_bytes} bytes",
        )
    if not verify_github(body, request.headers.get("X-Hub-Signature-256"), config.webhook_secret):
        return refuse(request, "github", "bad_signature", 401, "missing or bad X-Hub-Signature-256")
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not event or not delivery or len(delivery) > 128:
        return refuse(
            request, "github", "malformed", 400, "X-GitHub-Event and X-GitHub-Delivery are required"
        )
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return refuse(request, "github", "malformed", 400, "the body is not JSON")
    if not isinstance(payload, dict):
        return refuse(request, "github", "malformed", 400, "the body must be a JSON object")
    if event == "ping":
        return web.json_response({"ok": True, "zen": payload.get("zen", "")})
    actions = HANDLED.get(event, frozenset())
    if actions is not None and payload.get("action") not in actions:
        return web.json_response(
            {"ignored": f"{event}.{payload.get('action')}" if "action" in payload else event},
            status=202,
        )
    if not isinstance(payload.get("installation"), dict):
        return refuse(
            request,
            "github",
            "no_installation",
            400,
            "this delivery has no 'installation': PloyD must be installed as a GitHub App "
            "(a plain repository webhook is not enough); see README, 'Connect GitHub'",
        )
    svc.metrics.webhooks.labels("github").inc()
    inbox_id, new = inbox.record(svc.db, "github", delivery, event, payload)
    if not new:
        return web.json_response({"duplicate": delivery}, status=200)
    request.app[GITHUB_WORKER].submit(inbox_id)
    return web.json_response({"accepted": delivery}, status=202)
