"""Where notifications may go (``app.core.netguard``): the class of every address a
request from PloyD's server must not reach on its own, IPv6 forms of IPv4 addresses,
IP-literal hosts in odd forms, and the operator's allowed networks."""

from __future__ import annotations

import pytest

from app.core.netguard import host_refusal, parse_allow_nets, refusal


@pytest.mark.parametrize(
    ("address", "cls"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("169.254.169.254", "link-local"),  # the cloud's metadata service
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.20", "private"),
        ("fd00::1", "private"),
        ("fc00::1", "private"),
        ("100.64.0.1", "private"),  # shared address space (carrier-grade NAT)
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),  # "this network"
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "reserved"),  # documentation
        ("198.18.0.1", "reserved"),  # benchmarking
    ],
)
def test_addresses_off_the_public_internet_are_refused_with_their_class(
    address: str, cls: str
) -> None:
    why = refusal(address)
    assert why is not None
    assert why.startswith(f"{address} is a") and f" {cls} address" in why
    assert "PLOYD_NOTIFY_ALLOW_NETS" in why


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(address) is None


def test_the_operators_networks_are_allowed_and_only_they() -> None:
    allow = parse_allow_nets("127.0.0.0/8, fd00::/8")
    assert refusal("127.0.0.1", allow) is None
    assert refusal("::ffff:127.0.0.1", allow) is None  # the IPv4 address it reaches
    assert refusal("fd12::3", allow) is None
    assert refusal("::1", allow) is not None  # not listed
    assert refusal("10.0.0.1", allow) is not None
    assert refusal("169.254.169.254", allow) is not None
    assert parse_allow_nets("") == ()
    with pytest.raises(ValueError, match=r"'10\.0\.0\.5/8' is not a network"):
        parse_allow_nets("10.0.0.5/8")


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("[::ffff:7f00:1]", "loopback"),
        ("169.254.169.254", "link-local"),
        # forms the C library reads as 127.0.0.1: not an address PloyD guesses at
        ("2130706433", "usual form"),
        ("127.1", "usual form"),
        ("0177.0.0.1", "usual form"),
        ("127.0.0.1.", "usual form"),
        ("93.184.216.34", None),
        ("hooks.slack.com", None),  # a name: checked when it is resolved
        ("0x7f.1", None),  # a name to aiohttp too: its resolved address is checked
    ],
)
def test_ip_literal_hosts(host: str, refused: str | None) -> None:
    why = host_refusal(host)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why
