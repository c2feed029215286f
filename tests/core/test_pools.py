"""What an operator types for a pool's registration token, checked with messages that say
what would work; which tenants a pool serves; an agent's hardware in one word."""

from __future__ import annotations

import pytest

from app.core.pools import (
    PoolError,
    check_agent_name,
    check_pool,
    hardware_summary,
    labels_text,
    parse_expires,
    parse_labels,
    parse_tenants,
    serves,
)


@pytest.mark.parametrize("name", ["lab", "lab-gpus", "a100.rack_2", "x" * 48])
def test_pool_names(name: str) -> None:
    assert check_pool(name) == name


@pytest.mark.parametrize("name", ["", "Lab", "-lab", "lab gpus", "lab/1", "x" * 49])
def test_bad_pool_names(name: str) -> None:
    with pytest.raises(PoolError, match="lower-case letters"):
        check_pool(name)


@pytest.mark.parametrize(
    ("given", "want"),
    [
        (["*"], ("*",)),
        ([" * "], ("*",)),
        (["github:acme"], ("github:acme",)),
        (["github:acme", "gitlab:ml/team", "github:acme"], ("github:acme", "gitlab:ml/team")),
        (["local:local", "github:12345"], ("local:local", "github:12345")),
    ],
)
def test_tenants(given: list[str], want: tuple[str, ...]) -> None:
    assert parse_tenants(given) == want


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([], "say which tenants this pool serves"),
        (["*", "github:acme"], "'\\*' already means every tenant"),
        (["acme"], "name a tenant as forge:id or forge:name"),
        (["bitbucket:acme"], "forge one of github, gitlab, local"),
        (["github:"], "name a tenant as forge:id"),
        (["github:a b"], "name a tenant as forge:id"),
        ([7], "tenants must be strings"),
        ([f"github:t{i}" for i in range(101)], "at most 100 tenants"),
    ],
)
def test_bad_tenants(given: list[str], message: str) -> None:
    with pytest.raises(PoolError, match=message):
        parse_tenants(given)


@pytest.mark.parametrize(
    ("given", "want"),
    [
        (None, {}),
        ("", {}),
        ("gpu=h100", {"gpu": "h100"}),
        ("gpu=h100, rack=b2 ,zone=", {"gpu": "h100", "rack": "b2", "zone": ""}),
        ("team/owner=ml-infra,cuda=12.4", {"team/owner": "ml-infra", "cuda": "12.4"}),
        ({"gpu": "h100"}, {"gpu": "h100"}),
    ],
)
def test_labels(given: str | dict[str, str] | None, want: dict[str, str]) -> None:
    assert parse_labels(given) == want


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("gpu", "write it as key=value"),
        ("gpu=h100,,rack=1", "an empty label"),
        ("=h100", "label key ''"),
        ("g pu=h100", "label key 'g pu'"),
        ("gpu=h 100", "a value is letters"),
        ("gpu=a,gpu=b", "given twice"),
        ({"gpu": 1}, "a value is letters"),
        (["gpu=h100"], "labels must be k=v"),
        (",".join(f"k{i}=v" for i in range(65)), "at most 64 labels"),
    ],
)
def test_bad_labels(given: object, message: str) -> None:
    with pytest.raises(PoolError, match=message):
        parse_labels(given)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(None, 7 * 86400), ("7d", 7 * 86400), ("12h", 43200), ("1h30m", 5400), ("365d", 365 * 86400)],
)
def test_expires(given: str | None, seconds: int) -> None:
    assert parse_expires(given) == seconds


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("soon", "'soon' is not a duration like 90s"),
        ("7 days", "is not a duration"),
        ("0s", "from 1s to 365d"),
        ("366d", "from 1s to 365d"),
        (7, "expires must be a duration"),
    ],
)
def test_bad_expires(given: object, message: str) -> None:
    with pytest.raises(PoolError, match=message):
        parse_expires(given)  # type: ignore[arg-type]


def test_which_tenants_a_pool_serves() -> None:
    assert serves(("*",), "gitlab", "9", "anyone")
    assert serves(("github:acme",), "github", "12345", "acme")
    assert serves(("github:12345",), "github", "12345", "acme")
    assert not serves(("github:acme",), "github", "777", "other")
    assert not serves(("github:acme",), "gitlab", "1", "acme")  # another forge's acme
    assert not serves((), "local", "local", "local")


def test_hardware_summary_and_labels_text() -> None:
    h100 = {"model": "h100", "name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559}
    assert hardware_summary({"cpus": 192, "gpus": [h100] * 8}) == "h100:8"
    assert hardware_summary({"cpus": 16, "gpus": [], "containers": "podman"}) == "cpu:16 podman"
    assert hardware_summary({"cpus": 8, "gpus": [{"model": "l4"}, {"model": "t4"}]}) == "l4:1+t4:1"
    assert hardware_summary({"cpus": 8, "gpus": [{"name": "RTX A6000", "model": ""}]}) == (
        "gpu:1 (RTX A6000)")
    assert hardware_summary({"cpus": 16, "memory_mb": 64000, "gpus": []}) == "cpu:16"
    assert hardware_summary({}) == "-"
    assert labels_text({"rack": "b2", "gpu": "h100"}) == "gpu=h100,rack=b2"
    assert labels_text({}) == "-"


def test_agent_names() -> None:
    assert check_agent_name("gpu-box_1.lab") == "gpu-box_1.lab"
    for bad in ("", "-x", "a b", "a/b", "x" * 129, "<b>"):
        with pytest.raises(PoolError, match="--agent-id NAME"):
            check_agent_name(bad)
