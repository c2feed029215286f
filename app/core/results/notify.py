"""Notifications, decided and written without I/O: which events a pipeline's change
gives (``failure``, ``fixed``, ``success``, ``started``), which channels want them (by
``on`` and ``branches``), the message (pipeline, failing jobs with their cause line,
links; never a secret), the bodies for Slack, a webhook and email, the webhook's
HMAC-SHA256 signature, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from app.core.config.model import DEFAULT_NOTIFY_ON, NOTIFY_EVENTS, NotifyChannel

MAX_TRIES = 5  # deliveries tried before a notification is given up
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
MAX_FAILING_SHOWN = 10
MAX_CAUSE = 300
SIGNATURE_HEADER = "X-PloyD-Signature"
EVENT_HEADER = "X-PloyD-Event"
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def pipeline_events(state: str, previous_final: str | None, *, announced_start: bool) -> list[str]:
    """The events a pipeline in ``state`` gives now. ``previous_final``: how the last
    finished pipeline of the same branch ended (for ``fixed``); ``announced_start``:
    ``started`` was already recorded."""
    out: list[str] = []
    if not announced_start:
        out.append("started")
    if state == "failed":
        out.append("failure")
    elif state == "succeeded":
        out.append("success")
        if previous_final == "failed":
            out.append("fixed")
    return out


def wants(channel: NotifyChannel, event: str, branch: str | None) -> bool:
    if event not in channel.on:
        return False
    if channel.branches is None:
        return True
    return branch is not None and any(fnmatchcase(branch, g) for g in channel.branches)


def channel_key(channel: NotifyChannel) -> str:
    """What identifies a channel (for one delivery per pipeline, event and channel)."""
    raw = f"{channel.kind}|{channel.target}|{channel.secret or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def channel_json(channel: NotifyChannel) -> dict[str, Any]:
    return {
        "kind": channel.kind,
        "target": channel.target,
        "secret": channel.secret,
        "on": sorted(channel.on),
        "branches": list(channel.branches) if channel.branches is not None else None,
    }


def channel_from_json(d: Mapping[str, Any]) -> NotifyChannel:
    branches = d.get("branches")
    return NotifyChannel(
        kind=str(d.get("kind") or ""),
        target=str(d.get("target") or ""),
        secret=str(d["secret"]) if d.get("secret") else None,
        on=frozenset(str(e) for e in d.get("on") or DEFAULT_NOTIFY_ON),
        branches=tuple(str(b) for b in branches) if branches is not None else None,
    )


def parse_channels(data: Any, where: str) -> tuple[NotifyChannel, ...]:
    """``notify:`` as plain data (the operator's policy): ValueError naming the field."""
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a list of channels ({{slack|webhook|email, on}})")
    out: list[NotifyChannel] = []
    for i, e in enumerate(data):
        at = f"{where}[{i}]"
        if not isinstance(e, dict):
            raise ValueError(f"{at}: expected a mapping with one of slack, webhook or email")
        # YAML 1.1 (the policy file's loader) reads the key `on` as true.
        e = {("on" if k is True else k): v for k, v in e.items()}
        known = {"slack", "webhook", "email", "secret", "on", "branches"}
        extra = sorted(str(k) for k in e if k not in known)
        if extra:
            raise ValueError(f"{at}: unknown key {extra[0]!r}; known: {', '.join(sorted(known))}")
        kinds = [k for k in ("slack", "webhook", "email") if k in e]
        if len(kinds) != 1:
            raise ValueError(f"{at}: give exactly one of slack, webhook or email")
        kind = kinds[0]
        on_raw = e.get("on", sorted(DEFAULT_NOTIFY_ON))
        if not isinstance(on_raw, list) or not on_raw:
            raise ValueError(f"{at}.on: expected a list of {', '.join(NOTIFY_EVENTS)}")
        for ev in on_raw:
            if ev not in NOTIFY_EVENTS:
                raise ValueError(f"{at}.on: {ev!r} is not one of {', '.join(NOTIFY_EVENTS)}")
        branches = e.get("branches")
        if branches is not None and (
            not isinstance(branches, list) or not all(isinstance(b, str) and b for b in branches)
        ):
            raise ValueError(f"{at}.branches: expected a list of branch globs")
        secret = e.get("secret")
        value = e[kind]
        if kind == "slack":
            if not isinstance(value, str) or not _SECRET_NAME.match(value):
                raise ValueError(f"{at}.slack: the name of the secret holding the webhook URL")
            target = value
        elif kind == "webhook":
            if not isinstance(value, str) or not re.match(r"^https?://", value):
                raise ValueError(f"{at}.webhook: expected an http(s) URL")
            target = value
        else:
            to = [value] if isinstance(value, str) else value
            if (
                not isinstance(to, list)
                or not to
                or not all(isinstance(a, str) and _EMAIL.match(a) for a in to)
            ):
                raise ValueError(f"{at}.email: expected an address or a list of addresses")
            target = ",".join(to)
        if secret is not None and (
            kind != "webhook" or not isinstance(secret, str) or not _SECRET_NAME.match(secret)
        ):
            raise ValueError(f"{at}.secret: the name of the secret holding a webhook's HMAC key")
        out.append(
            NotifyChannel(
                kind,
                target,
                secret=secret,
                on=frozenset(on_raw),
                branches=tuple(branches) if branches is not None else None,
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FailingJob:
    name: str
    state: str
    cause: str  # the cause line: the failing step, the first error line, the end reason
    url: str


@dataclass(frozen=True, slots=True)
class Message:
    """What a notification says (the same for every channel kind)."""

    event: str
    repo: str
    pipeline_id: int
    state: str
    ref: str
    sha: str
    url: str
    pr_number: int | None = None
    pr_url: str | None = None
    failing: tuple[FailingJob, ...] = ()
    note: str = ""  # a budget warning's text

    @property
    def title(self) -> str:
        what = {
            "failure": "failed",
            "fixed": "is fixed",
            "success": "succeeded",
            "started": "started",
            "budget": "budget warning",
        }.get(self.event, self.event)
        where = f"PR #{self.pr_number}" if self.pr_number is not None else _short_ref(self.ref)
        return f"PloyD: {self.repo} pipeline #{self.pipeline_id} {what} ({where} @ {self.sha[:7]})"

    def text(self) -> str:
        lines = [self.title, f"Pipeline: {self.url}"]
        if self.pr_url:
            lines.append(f"Pull request: {self.pr_url}")
        if self.note:
            lines.append(self.note)
        for job in self.failing[:MAX_FAILING_SHOWN]:
            lines.append(f"- {job.name} ({job.state.replace('_', ' ')}): {job.cause} {job.url}")
        if len(self.failing) > MAX_FAILING_SHOWN:
            lines.append(f"- ... and {len(self.failing) - MAX_FAILING_SHOWN} more")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "repo": self.repo,
            "pipeline": {
                "id": self.pipeline_id,
                "state": self.state,
                "ref": self.ref,
                "sha": self.sha,
                "url": self.url,
            },
            "pull_request": (
                {"number": self.pr_number, "url": self.pr_url}
                if self.pr_number is not None
                else None
            ),
            "failing_jobs": [
                {"name": j.name, "state": j.state, "cause": j.cause, "url": j.url}
                for j in self.failing
            ],
            "note": self.note or None,
            "title": self.title,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Message:
        p = d.get("pipeline") or {}
        pr = d.get("pull_request") or {}
        return cls(
            event=str(d.get("event") or ""),
            repo=str(d.get("repo") or ""),
            pipeline_id=int(p.get("id") or 0),
            state=str(p.get("state") or ""),
            ref=str(p.get("ref") or ""),
            sha=str(p.get("sha") or ""),
            url=str(p.get("url") or ""),
            pr_number=int(pr["number"]) if pr.get("number") is not None else None,
            pr_url=str(pr["url"]) if pr.get("url") else None,
            failing=tuple(
                FailingJob(str(j["name"]), str(j["state"]), str(j["cause"]), str(j["url"]))
                for j in d.get("failing_jobs") or ()
            ),
            note=str(d.get("note") or ""),
        )


def _short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def cause_line(failed_step: str | None, first_error: str | None, end_reason: str | None) -> str:
    """One line saying why a job failed."""
    parts = []
    if failed_step:
        parts.append(f"step '{failed_step}'")
    if first_error:
        parts.append(first_error.strip())
    elif end_reason:
        parts.append(end_reason.strip())
    text = ": ".join(parts) if parts else "failed"
    text = " ".join(text.split())
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 1] + "…"


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret value (4 characters or more) masked."""
    for s in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def slack_body(message: Message) -> dict[str, Any]:
    """A Slack incoming-webhook payload (mrkdwn text)."""
    emoji = {
        "failure": ":x:",
        "fixed": ":white_check_mark:",
        "success": ":white_check_mark:",
        "started": ":arrow_forward:",
        "budget": ":money_with_wings:",
    }.get(message.event, "")
    lines = [f"{emoji} <{message.url}|{_slack_escape(message.title)}>"]
    if message.pr_url:
        lines.append(f"<{message.pr_url}|pull request #{message.pr_number}>")
    if message.note:
        lines.append(_slack_escape(message.note))
    for job in message.failing[:MAX_FAILING_SHOWN]:
        lines.append(f"• <{job.url}|{_slack_escape(job.name)}>: {_slack_escape(job.cause)}")
    return {"text": "\n".join(lines)}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(message: Message) -> bytes:
    return json.dumps(message.to_json(), sort_keys=True).encode()


def sign(key: str, body: bytes) -> str:
    """The webhook signature header's value: ``sha256=`` + HMAC-SHA256 hex of the body."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def email_parts(message: Message) -> tuple[str, str]:
    """(subject, plain-text body)."""
    return message.title, message.text() + "\n"


def retry_after_s(tries: int) -> float | None:
    """Seconds before the next try after ``tries`` failed ones; None: give up."""
    if tries >= MAX_TRIES:
        return None
    return float(min(BACKOFF_BASE_S * 2 ** (tries - 1), BACKOFF_MAX_S))


@dataclass(frozen=True, slots=True)
class Outcome:
    """A delivery's result as recorded."""

    ok: bool
    error: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
