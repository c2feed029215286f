"""Sending one notification: a Slack incoming webhook, a signed generic webhook (aiohttp)
or an email (``smtplib``, in a thread: never on the event loop). Each returns an
``Outcome``; nothing raises. Errors name the channel, never a secret (a Slack URL is
one).

HTTP destinations are guarded (``app.results.guard``): an IP-literal host outside the
public internet and ``allow`` is refused here, a name resolving there by the session's
resolver; a refused delivery is an ``Outcome`` with ``detail["refused"]``, not worth a
retry. Email goes to the operator's own SMTP server (``PLOYD_SMTP_HOST``): not guarded."""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

import aiohttp

from app.core.netguard import Network
from app.core.results.notify import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Message,
    Outcome,
    email_parts,
    sign,
    slack_body,
    webhook_body,
)
from app.results.guard import check_url, refusal_in

HTTP_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    sender: str = "ployd@localhost"
    user: str = ""
    password: str = ""
    starttls: bool = False


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    what: str,
    timeout_s: float,
    allow: Sequence[Network],
) -> Outcome:
    why = check_url(url, allow)
    if why is not None:
        return _refused(what, why)
    try:
        async with http.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as resp:
            if 200 <= resp.status < 300:
                return Outcome(True, detail={"status": resp.status})
            return Outcome(False, f"{what} answered HTTP {resp.status}", {"status": resp.status})
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
        why = refusal_in(e)
        if why is not None:
            return _refused(what, why)
        return Outcome(False, f"{what} could not be reached ({type(e).__name__})")


def _refused(what: str, why: str) -> Outcome:
    return Outcome(False, f"{what} was not sent: {why}", {"refused": True})


async def send_slack(
    http: aiohttp.ClientSession,
    url: str,
    message: Message,
    timeout_s: float = HTTP_TIMEOUT_S,
    allow: Sequence[Network] = (),
) -> Outcome:
    body = json.dumps(slack_body(message)).encode()
    headers = {"Content-Type": "application/json"}
    return await _post(http, url, body, headers, "the Slack webhook", timeout_s, allow)


async def send_webhook(
    http: aiohttp.ClientSession,
    url: str,
    key: str | None,
    message: Message,
    delivery: int,
    timeout_s: float = HTTP_TIMEOUT_S,
    allow: Sequence[Network] = (),
) -> Outcome:
    body = webhook_body(message)
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: message.event,
        "X-PloyD-Delivery": str(delivery),
    }
    if key:
        headers[SIGNATURE_HEADER] = sign(key, body)
    what = f"the webhook {url.split('?')[0]}"
    return await _post(http, url, body, headers, what, timeout_s, allow)


def _send_email(cfg: SmtpConfig, to: list[str], message: Message) -> Outcome:
    subject, text = email_parts(message)
    mail = EmailMessage()
    mail["From"] = cfg.sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = subject
    mail.set_content(text)
    try:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=SMTP_TIMEOUT_S) as smtp:
            if cfg.starttls:
                smtp.starttls()
            if cfg.user:
                smtp.login(cfg.user, cfg.password)
            refused = smtp.send_message(mail)
    except (smtplib.SMTPException, OSError) as e:
        return Outcome(False, f"the SMTP server {cfg.host}:{cfg.port} failed ({type(e).__name__})")
    if refused:
        return Outcome(False, f"the SMTP server refused {', '.join(sorted(refused))}")
    return Outcome(True)


async def send_email(cfg: SmtpConfig | None, to: list[str], message: Message) -> Outcome:
    if cfg is None or not cfg.host:
        return Outcome(False, "email is not configured on this server (PLOYD_SMTP_HOST)")
    return await asyncio.to_thread(_send_email, cfg, to, message)
