"""The agent's side of docs/agent-protocol.md: one method per call, over kept-alive
connections (``app.agent.httpclient``, the standard library's ``http.client``).

Messages are ``app.protocol``'s dataclasses. Calls made with the job token are retried on
network errors, timeouts and 5xx answers (the server dedupes log chunks on ``seq`` and
step reports are idempotent); 401, 403 and 409 mean the attempt is no longer ours, raised
as ``AttemptGone``; an answer the protocol does not allow is ``BadAnswer``; a 5xx that is
not retried (the claim, the heartbeat) is ``ServerError``. A claim answered 426 (the
server runs another version of the agent) raises ``MustUpdate`` with the instruction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from app.agent.httpclient import TRANSPORT_ERRORS, Http, HTTPStatusError
from app.protocol import (
    Answer,
    BootFailure,
    Claim,
    ClaimRequest,
    FinishReport,
    Hardware,
    Heartbeat,
    LogChunk,
    ProtocolError,
    Registered,
    Registration,
    StepReport,
    UpdateRequired,
)

log = logging.getLogger("ployd.agent")

API = "/api/v1/agent"


class BadAnswer(Exception):
    """The server answered something the protocol does not allow here."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:500]}")
        self.status = status


class AttemptGone(BadAnswer):
    """401, 403 or 409 on a job-token call: stop working on this attempt."""


class ServerError(HTTPStatusError):
    """A 5xx answer: the server is in trouble; calls with the job token retry it."""


class Unavailable(Exception):
    """The server could not be reached (after retries)."""


class MustUpdate(Exception):
    """The server answered a claim with an update instruction (426): this agent is not
    its version and gets no job until it runs the server's."""

    def __init__(self, update: UpdateRequired) -> None:
        super().__init__(f"the server runs agent {update.version}")
        self.update = update


# What a retried call retries, with backoff: no answer, or a 5xx one.
RETRY_ON: tuple[type[BaseException], ...] = (ServerError, *TRANSPORT_ERRORS)


class AgentClient:
    def __init__(
        self,
        server: str,
        agent_token: str,
        *,
        http: Http | None = None,
        retries: int = 4,
        backoff_s: float = 0.2,
        version: str = "",
    ) -> None:
        self.http = http if http is not None else Http()
        self.server = server.rstrip("/")
        self.agent_token = agent_token
        self.version = version  # sent with each claim (empty: not sent)
        self.retries = retries
        self.backoff_s = backoff_s

    async def _post(
        self,
        path: str,
        token: str,
        body: Mapping[str, Any],
        timeout_s: float,
        also: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        """One POST; (status, JSON body or None: 204 or an empty body). ``also``: more
        statuses of 300 and up that are answers, not errors."""
        resp = await self.http.request(
            "POST",
            self.server + API + path,
            body=json.dumps(dict(body)).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout_s,
        )
        if resp.status == 204:
            return 204, None
        text = resp.text()
        if resp.status in (401, 403, 409):
            raise AttemptGone(resp.status, text)
        if resp.status >= 500:
            raise ServerError(resp.status, text[:200])
        if resp.status >= 300 and resp.status not in also:
            raise BadAnswer(resp.status, text)
        if not text.strip():
            return resp.status, None
        try:
            return resp.status, json.loads(text)
        except ValueError as e:
            raise BadAnswer(resp.status, f"not JSON: {text}") from e

    async def _post_retry(
        self,
        path: str,
        token: str,
        body: Mapping[str, Any],
        *,
        timeout_s: float = 30.0,
        retries: int | None = None,
    ) -> tuple[int, Any]:
        tries = (self.retries if retries is None else retries) + 1
        for i in range(tries):
            try:
                return await self._post(path, token, body, timeout_s)
            except RETRY_ON as e:
                if i == tries - 1:
                    raise Unavailable(f"POST {path}: {e!r}") from e
                delay = self.backoff_s * 2**i
                log.warning("POST %s failed (%r); retrying in %.1fs", path, e, delay)
                await asyncio.sleep(delay)  # backoff between retries
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.http.close()

    @staticmethod
    def _cancel(status: int, data: Any) -> bool:
        """Whether an answer to a log chunk, a step report or a heartbeat says cancel."""
        try:
            return Answer.from_json(data).cancel
        except ProtocolError as e:
            raise BadAnswer(status, f"{e}: {data!r}") from None

    async def register(self, registration: Registration) -> Registered:
        """Exchange the registration token this client holds for the agent's own
        credential, which the client uses from then on (the token is forgotten). Raises
        ``AttemptGone`` when the server refuses the token (401: unknown, used already,
        expired; 409: the name is another pool's agent's)."""
        status, data = await self._post("/register", self.agent_token, registration.to_json(), 30.0)
        try:
            registered = Registered.from_json(data)
        except ProtocolError as e:
            raise BadAnswer(status, f"registration answer: {e}") from None
        self.agent_token = registered.credential
        return registered

    async def report_not_ready(self, reason: str) -> None:
        """Before registering: tell the server, with the registration token this client
        still holds, that this machine cannot take jobs and why (``POST
        /bootstrap-failed``, as a failed bootstrap does): its attempt is retried on
        another machine and this one is terminated."""
        await self._post_retry("/bootstrap-failed", self.agent_token, BootFailure(reason).to_json())

    async def claim(
        self, agent_id: str, wait: float, hardware: Hardware | None = None
    ) -> Claim | None:
        """Long-poll for a job (one this machine's ``hardware`` can run, when given): the
        claim answer, or None when none came within ``wait``. Raises ``AttemptGone``
        (401) for a bad agent token, ``MustUpdate`` when the server wants this agent to
        run its version first."""
        request = ClaimRequest(
            agent_id=agent_id, wait=wait, version=self.version, hardware=hardware
        )
        status, data = await self._post(
            "/claim", self.agent_token, request.to_json(), wait + 15, also=(426,)
        )
        if status == 426:
            try:
                update = UpdateRequired.from_json(data)
            except ProtocolError as e:
                raise BadAnswer(status, f"update instruction: {e}") from None
            raise MustUpdate(update)
        if status == 204 or data is None:
            return None
        try:
            return Claim.from_json(data)
        except ProtocolError as e:
            raise BadAnswer(status, f"claim answer: {e}") from None

    async def log(self, attempt_id: int, token: str, chunk: LogChunk) -> bool:
        """Send a log chunk; True when the server asks to cancel."""
        status, resp = await self._post_retry(f"/attempts/{attempt_id}/log", token, chunk.to_json())
        return self._cancel(status, resp)

    async def step(self, attempt_id: int, token: str, report: StepReport) -> bool:
        """Report a step state; True when the server asks to cancel."""
        status, resp = await self._post_retry(
            f"/attempts/{attempt_id}/steps", token, report.to_json()
        )
        return self._cancel(status, resp)

    async def heartbeat(self, attempt_id: int, token: str, wait: float) -> bool:
        """Held by the server up to ``wait`` seconds; True when the job is cancelled."""
        status, resp = await self._post(
            f"/attempts/{attempt_id}/heartbeat", token, Heartbeat(wait).to_json(), wait + 15
        )
        return self._cancel(status, resp)

    async def finish(self, attempt_id: int, token: str, report: FinishReport) -> None:
        await self._post_retry(f"/attempts/{attempt_id}/finish", token, report.to_json(), retries=8)
