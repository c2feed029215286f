"""The notifier's guarded HTTP session for real (``app.results.guard``): a receiver on
127.0.0.1, reached by name (``localhost``) and by address, gets nothing without the
operator's allowed networks and gets the message with them. The check is made on the
address aiohttp connects to: the resolver's answer, and each socket's destination."""

from __future__ import annotations

import aiohttp
import pytest

from app.core.netguard import parse_allow_nets
from app.core.results.notify import Message
from app.results import guard
from app.results.channels import send_slack, send_webhook
from tests.fakes.receivers import serve_receivers

MESSAGE = Message(
    event="failure",
    repo="acme/models",
    pipeline_id=1,
    state="failed",
    ref="refs/heads/main",
    sha="a" * 40,
    url="http://ployd.test/pipelines/1",
)
LOCAL = parse_allow_nets("127.0.0.0/8,::1/128")


async def test_a_name_that_resolves_to_loopback_is_refused_through_the_real_connector() -> None:
    async with serve_receivers() as r:
        port = r.base_url.rsplit(":", 1)[1]
        url = f"http://localhost:{port}/hook"
        async with guard.session(()) as http:
            out = await send_webhook(http, url, None, MESSAGE, 1)
        assert not out.ok and out.detail == {"refused": True}
        assert out.error == (
            f"the webhook {url} was not sent: localhost resolves to 127.0.0.1, a loopback "
            "address; PLOYD_NOTIFY_ALLOW_NETS allows such networks"
        )
        assert r.received == []

        async with guard.session(LOCAL) as http:  # the operator allows loopback
            out = await send_webhook(http, url, None, MESSAGE, 1, allow=LOCAL)
        assert out.ok, out.error
        assert len(r.at("/hook")) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "127.1", "2130706433"])
async def test_ip_literal_hosts_are_refused_before_connecting(host: str) -> None:
    async with serve_receivers() as r:
        port = r.base_url.rsplit(":", 1)[1]
        secret_url = f"http://{host}:{port}/slack/T0/B0/SECRETTOKEN"
        async with guard.session(()) as http:
            out = await send_slack(http, secret_url, MESSAGE)
        assert not out.ok and out.detail == {"refused": True}
        assert out.error.startswith("the Slack webhook was not sent: ")
        assert "SECRETTOKEN" not in out.error
        assert r.received == []


@pytest.mark.parametrize(
    ("host", "said"),
    [
        # the resolver's answer
        ("localhost", "localhost resolves to 127.0.0.1, a loopback address"),
        pytest.param(
            "127.0.0.1",  # no resolver for an address: the socket factory
            "127.0.0.1 is a loopback address",
            marks=pytest.mark.skipif(not guard.SOCKET_FACTORY, reason="aiohttp < 3.12"),
        ),
    ],
)
async def test_the_session_itself_connects_nowhere_refused(host: str, said: str) -> None:
    """Past the URL check (a caller that skips it), the session still connects nowhere
    refused: the address checked is the one connected to."""
    async with serve_receivers() as r:
        port = r.base_url.rsplit(":", 1)[1]
        async with guard.session(()) as http:
            with pytest.raises(aiohttp.ClientError) as e:
                await http.post(f"http://{host}:{port}/hook", data=b"{}")
        why = guard.refusal_in(e.value)
        assert why is not None and why.startswith(said), why
        assert r.received == []
