"""`ployd plan` across regions: the regions of PLOYD_EC2_SUBNETS (or --regions), the
capacity reservations of PLOYD_EC2_CAPACITY_RESERVATIONS (each job's first candidate
when its type fits), and prices per region (the catalog's, or the Pricing API's with
``--prices aws``: here a fake Pricing endpoint, one region of it refusing)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from app.cli import main
from tests.fakes.ec2_proxy import EC2Proxy
from tests.fakes.pricing import FakePricing

CONFIG = textwrap.dedent("""\
    version: 1
    jobs:
      gpu:
        hardware: l4
        spot: never
        steps: [{run: pytest}]
      train:
        hardware: h100:8
        workload: train
        steps: [{run: python train.py}]
    """)
RESERVATIONS = [
    {"id": "cr-0123456789abcdef0", "instance_type": "p5.48xlarge", "az": "us-east-1a",
     "kind": "capacity-block", "price_usd_hour": 31.5},
    {"id": "cr-0123456789abcdef1", "instance_type": "g6.2xlarge", "az": "us-west-2b"},
    {"id": "cr-0123456789abcdef2", "instance_type": "g6.4xlarge", "az": "us-west-2c"},
]


@pytest.fixture
def two_regions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PLOYD_AWS_REGION", "us-east-1")
    monkeypatch.setenv(
        "PLOYD_EC2_SUBNETS", "subnet-0123456789abcdef0,us-west-2:subnet-0123456789abcdef1"
    )
    monkeypatch.setenv("PLOYD_EC2_CAPACITY_RESERVATIONS", json.dumps(RESERVATIONS))
    p = tmp_path / ".ployd.yml"
    p.write_text(CONFIG)
    return p


def line_of(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def test_plan_shows_reservations_first_regions_and_prices_per_region(
    two_regions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(two_regions), "--candidates", "4",
                 "--at", "2026-12-05T12:00:00Z"]) == 0
    lines = capsys.readouterr().out.splitlines()
    col = lines[0].index("SCHEDULER WOULD TRY")
    gpu, train = line_of(lines, "gpu "), line_of(lines, "train ")
    # reserved capacity first (already paid for, in the setting's order), then
    # on-demand by price, per region
    assert gpu[col:].startswith(
        "g6.2xlarge reserved cr-0123456789abcdef1 (us-west-2b) $0.98, "
        "g6.4xlarge reserved cr-0123456789abcdef2 (us-west-2c) $1.32, "
        "g6.xlarge on-demand us-east-1 $0.80, g6.xlarge on-demand us-west-2 $0.80"
    )
    assert train[col:].startswith(
        "p5.48xlarge capacity-block cr-0123456789abcdef0 (us-east-1a) $31.50, "
        "p5.48xlarge on-demand us-east-1 $55.04"
    )
    assert line_of(lines, "  us-east-1  1 subnet  on-demand prices: catalog list prices")
    assert line_of(lines, "  us-west-2  1 subnet  on-demand prices: catalog list prices")
    header = line_of(lines, "  TYPE")
    assert header.split() == ["TYPE", "us-east-1", "us-west-2"]
    assert line_of(lines, "  g6.xlarge").split() == [
        "g6.xlarge", "0.8048", "/", "0.2817*", "0.8048", "/", "0.2817*"]
    reserved = lines[lines.index(
        "Reservations (tried before on-demand and spot: already paid for) at "
        "2026-12-05 12:00 UTC:") + 1:]
    assert reserved[0].split() == [
        "cr-0123456789abcdef0", "Capacity", "Block", "p5.48xlarge", "us-east-1a",
        "(us-east-1)", "$31.50/hour"]
    assert "$0.98/hour (on-demand rate)" in reserved[1]
    assert reserved[2].split()[:3] == ["cr-0123456789abcdef2", "capacity", "reservation"]


@contextlib.contextmanager
def served_in_a_thread(
    start: Callable[[], Awaitable[object]], stop: Callable[[], Awaitable[object]]
) -> Iterator[None]:
    """A fake served on its own event loop in a thread: ``ployd plan`` (the code under
    test) runs its own loop with ``asyncio.run`` in this one."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def pricing_in_a_thread() -> Iterator[FakePricing]:
    fake = FakePricing()
    with served_in_a_thread(fake.start, fake.stop):
        yield fake


def test_plan_prices_from_the_pricing_api_and_the_catalog_where_it_refuses(
    two_regions: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    pricing_in_a_thread: FakePricing,
) -> None:
    fake = pricing_in_a_thread
    fake.prices = {("g6.xlarge", "us-west-2"): 0.61, ("p5.48xlarge", "us-west-2"): 49.0}
    monkeypatch.setenv("PLOYD_AWS_PRICING_ENDPOINT_URL", fake.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert main(["plan", str(two_regions), "--prices", "aws", "--candidates", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    col = lines[0].index("SCHEDULER WOULD TRY")
    # the cheaper region first now
    assert line_of(lines, "gpu ")[col:].startswith(
        "g6.2xlarge reserved cr-0123456789abcdef1 (us-west-2b) $0.98, "
        "g6.4xlarge reserved cr-0123456789abcdef2 (us-west-2c) $1.32, "
        "g6.xlarge on-demand us-west-2 $0.61, g6.xlarge on-demand us-east-1 $0.80"
    )
    assert line_of(lines, "  us-west-2  1 subnet  on-demand prices: AWS Pricing API")
    assert line_of(lines, "  g6.xlarge").split()[1:4] == ["0.8048", "/", "0.2817*"]
    assert line_of(lines, "  g6.xlarge").split()[4] == "0.6100"
    assert {c["regionCode"] for c in fake.calls} == {"us-east-1", "us-west-2"}

    fake.error = (400, "AccessDeniedException")
    assert main(["plan", str(two_regions), "--prices", "aws", "--candidates", "4"]) == 0
    out = capsys.readouterr().out
    assert "us-west-2  1 subnet  on-demand prices: catalog list prices (Pricing API: " in out
    assert "AccessDeniedException" in out
    assert "g6.xlarge on-demand us-east-1 $0.80, g6.xlarge on-demand us-west-2 $0.80" in out


@pytest.mark.parametrize(("env", "args", "message"), [
    ({"PLOYD_EC2_SUBNETS": "us-west:subnet-0123456789abcdef0"}, [], "not subnet ids"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": "[1]"}, [], "expected an object"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps(RESERVATIONS)}, ["--regions", "eu-west-1"],
     "us-east-1a is in us-east-1, which has no subnet"),
    ({}, ["--regions", "west"], "--regions: 'west' is not a region"),
    ({}, ["--at", "tomorrow"], "--at 'tomorrow': expected an ISO-8601 time"),
    ({}, ["--at", "2026-12-05T12:00:00"], "give its time zone"),
])
def test_plan_refuses_bad_region_settings(
    env: dict[str, str], args: list[str], message: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = tmp_path / ".ployd.yml"
    p.write_text(CONFIG)
    assert main(["plan", str(p), *args]) == 2
    assert message in capsys.readouterr().err


WINDOWED = [
    {"id": "cr-0123456789abcdef0", "instance_type": "p5.48xlarge", "az": "us-east-1a",
     "kind": "capacity-block", "starts": "2026-12-05T14:00:00Z", "ends": "2026-12-06T14:00:00Z"},
    {"id": "cr-0123456789abcdef1", "instance_type": "p5.48xlarge", "az": "us-east-1a",
     "kind": "capacity-block", "starts": "2026-11-01T00:00:00Z", "ends": "2026-11-02T00:00:00Z"},
    {"id": "cr-0123456789abcdef2", "instance_type": "g6.2xlarge", "az": "us-east-1a",
     "tenants": ["github:acme"], "workloads": ["test"]},
]


def test_plan_shows_windows_and_who_may_use_a_reservation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLOYD_AWS_REGION", "us-east-1")
    monkeypatch.setenv("PLOYD_EC2_SUBNETS", "subnet-0123456789abcdef0")
    monkeypatch.setenv("PLOYD_EC2_CAPACITY_RESERVATIONS", json.dumps(WINDOWED))
    p = tmp_path / ".ployd.yml"
    p.write_text(CONFIG)
    at = ["--at", "2026-12-05T12:00:00Z", "--candidates", "1"]
    assert main(["plan", str(p), *at]) == 0
    lines = capsys.readouterr().out.splitlines()
    col = lines[0].index("SCHEDULER WOULD TRY")
    # at 12:00 the block has not started, and the g6 reservation is acme's
    assert line_of(lines, "train ")[col:].startswith("p5.48xlarge on-demand $55.04")
    assert line_of(lines, "gpu ")[col:].startswith("g6.xlarge on-demand $0.80")
    block, ended, team = lines[lines.index(
        "Reservations (tried before on-demand and spot: already paid for) at "
        "2026-12-05 12:00 UTC:") + 1:]
    assert block.endswith("2026-12-05 14:00 to 2026-12-06 14:00 UTC (1d)  "
                          "not usable now: starts in 2h (2026-12-05 14:00 UTC)")
    assert ended.endswith("not usable now: ended")
    assert team.endswith("for tenants github:acme; workloads test")
    # at 15:00, for acme: the block (its 1800 s default timeout fits) and acme's ODCR
    assert main(["plan", str(p), "--at", "2026-12-05T15:00:00Z", "--candidates", "1",
                 "--tenant", "github:acme"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert line_of(lines, "train ")[col:].startswith(
        "p5.48xlarge capacity-block cr-0123456789abcdef0 (us-east-1a) $55.04")
    assert line_of(lines, "gpu ")[col:].startswith(
        "g6.2xlarge reserved cr-0123456789abcdef2 (us-east-1a) $0.98")
    # 40 minutes before the end: EC2 ends the block's machines in 10, too soon for the
    # job's 30 minutes (a shorter job could still use it)
    assert main(["plan", str(p), "--at", "2026-12-06T13:20:00Z", "--candidates", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert line_of(lines, "train ")[col:].startswith("p5.48xlarge on-demand $55.04")
    assert line_of(lines, "  cr-0123456789abcdef0").endswith("UTC (1d)")  # usable, briefly
    assert main(["plan", str(p), "--at", "2026-12-06T13:45:00Z"]) == 0
    assert line_of(capsys.readouterr().out.splitlines(), "  cr-0123456789abcdef0").endswith(
        "not usable now: ended (EC2 ends its instances 30 min before its end, 14:00 UTC)")


@pytest.fixture
def ec2_in_a_thread(moto_server: str) -> Iterator[EC2Proxy]:
    proxy = EC2Proxy(moto_server)
    with served_in_a_thread(proxy.__aenter__, proxy.__aexit__):
        yield proxy


def test_plan_asks_ec2_about_the_reservations_with_reservations_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    ec2_in_a_thread: EC2Proxy,
) -> None:
    ec2 = ec2_in_a_thread
    ec2.reserve("cr-0123456789abcdef0", "g6.2xlarge", "us-west-2b", available=3, total=4)
    ec2.reserve("cr-0123456789abcdef1", "p5.48xlarge", "us-west-2a", state="payment-failed",
                kind="capacity-block")
    monkeypatch.setenv("PLOYD_AWS_REGION", "us-west-2")
    monkeypatch.setenv("PLOYD_EC2_SUBNETS", "subnet-0123456789abcdef0")
    monkeypatch.setenv("PLOYD_EC2_CAPACITY_RESERVATIONS", json.dumps(
        [{"id": "cr-0123456789abcdef0"}, {"id": "cr-0123456789abcdef1"}]))
    monkeypatch.setenv("PLOYD_AWS_ENDPOINT_URL", ec2.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    p = tmp_path / ".ployd.yml"
    p.write_text(CONFIG)
    # without asking EC2, an entry with only an id cannot be placed
    assert main(["plan", str(p), "--at", "2026-12-05T12:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "cr-0123456789abcdef0  capacity reservation  -  -  -  cannot be used: its " \
           "instance type and AZ are EC2's to say (--reservations aws)" in out
    assert ec2.calls["DescribeCapacityReservations"] == 0
    assert main(["plan", str(p), "--at", "2026-12-05T12:00:00Z", "--candidates", "1",
                 "--reservations", "aws"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    col = lines[0].index("SCHEDULER WOULD TRY")
    assert line_of(lines, "gpu ")[col:].startswith(
        "g6.2xlarge reserved cr-0123456789abcdef0 (us-west-2b) $0.98")
    assert line_of(lines, "train ")[col:].startswith("p5.48xlarge on-demand $55.04")
    assert "cr-0123456789abcdef0  capacity reservation  g6.2xlarge  us-west-2b (us-west-2)" \
        in captured.out
    assert "EC2: active, 3 free" in captured.out
    assert "cr-0123456789abcdef1  Capacity Block  p5.48xlarge" in captured.out
    assert "EC2: payment-failed, 1 free  not usable now: EC2 says it is payment-failed" \
        in captured.out
    assert "EC2 says it is payment-failed: not used" in captured.err
    assert ec2.calls["DescribeCapacityReservations"] == 1
    # an entry EC2 contradicts: refused, naming both
    monkeypatch.setenv("PLOYD_EC2_CAPACITY_RESERVATIONS", json.dumps(
        [{"id": "cr-0123456789abcdef0", "instance_type": "g6.4xlarge"}]))
    assert main(["plan", str(p), "--reservations", "aws"]) == 2
    assert "instance_type='g6.4xlarge', but EC2 says cr-0123456789abcdef0 is 'g6.2xlarge'" \
        in capsys.readouterr().err
