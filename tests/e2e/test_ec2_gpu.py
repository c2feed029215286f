"""GPU-ready machines end to end on moto: an agent on a GPU instance type checks that
nvidia-smi sees the GPUs the type has before its first job; a machine that fails is
reported, terminated and replaced, and its attempt retried, saying why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.store.instances import InstanceView
from app.store.models import Instance
from tests.e2e.ec2_world import EC2World

TRAIN = (
    "version: 1\njobs:\n  train:\n    hardware: h100:8\n    workload: train\n"
    "    spot: never\n    steps: [{run: 'echo trained-$((6*7))'}]\n"
)


async def test_seven_of_eight_gpus_the_machine_is_replaced_and_the_attempt_retried(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world() as w:
        w: EC2World
        assert w.executor is not None

        def gpus(row: InstanceView) -> str | None:  # the first machine lost a GPU
            return w.gpus_of_type(row, count=7 if len(w.launched) == 1 else None)

        w.gpus = gpus
        said: list[str] = []
        set_waiting = w.h.engine.set_waiting

        def record(job_id: int, reason: str | None) -> None:
            said.append(reason or "")
            set_waiting(job_id, reason)

        w.h.engine.set_waiting = record  # type: ignore[method-assign]
        repo, _ = make_repo({".ployd.yml": TRAIN})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        bad, good = w.launched  # two RunInstances, no more
        assert bad.instance_type == good.instance_type == "p5.48xlarge"
        a1, a2 = w.h.job(pid, "train").attempts
        why = (
            "GPU check failed: nvidia-smi sees 7 x NVIDIA H100 (h100), but this instance "
            "type has 8 x h100"
        )
        assert a1.state == "interrupted" and a1.end_reason == "infrastructure"
        assert a1.error == f"machine {bad.instance_id} failed to start: {why}"
        assert a2.state == "succeeded" and a2.machine == good.agent_id
        assert "the machine or agent failed" in a2.reason
        assert "trained-42" in w.h.log(pid, "train")
        # the retry's waiting message (the check run's, while it waited) said why
        assert any(
            m.startswith("starting a p5.48xlarge")
            and f"the last one went: machine {bad.instance_id} failed to start: {why}" in m
            for m in said
        ), said
        # the bad machine: its agent said so, took no job, and retired; PloyD terminated it
        machine = w.machines[bad.agent_id]
        await machine.exited()
        assert why in machine.agent_log()
        assert machine.calls("shutdown") == ["-h now"]
        assert "--expect-gpus 8:h100" in machine.path("/usr/local/lib/ployd/run-agent").read_text()
        await w.executor.retired()
        with w.h.engine.db.session() as s:
            rows = {m.agent_id: m for m in s.query(Instance)}
            assert rows[bad.agent_id].state == "terminated"
            assert why in (rows[bad.agent_id].error or "")
        described = w.boto.describe_instances(InstanceIds=[bad.instance_id])
        state = described["Reservations"][0]["Instances"][0]["State"]["Name"]
        assert state in ("shutting-down", "terminated")
        # elsewhere: the AZ that failed is avoided for the retry
        assert good.az != bad.az


async def test_boot_timeouts_are_per_class(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    """A p5 has 30 minutes to register (PLOYD_EC2_BOOT_TIMEOUTS), not the default 1."""
    from datetime import timedelta

    from app.core.ec2_policy import EC2Policy
    from app.store.models import utcnow

    policy = EC2Policy(boot_timeout_s=60, boot_timeouts={"p5": 1800})
    async with ec2_world(policy, region="us-east-2") as w:  # moto offers p5 there
        w: EC2World
        assert w.executor is not None
        w.boot = False
        repo, _ = make_repo(
            {".ployd.yml": TRAIN.replace("    steps:", "    retry: {max: 0}\n    steps:")}
        )
        pid = await w.h.start(repo)
        await w.h.until(lambda: len(w.launched) == 1, "a launch")
        (row,) = w.launched
        assert w.executor.boot_timeout(row) == timedelta(minutes=30)
        await w.executor.reconcile(now=utcnow() + timedelta(minutes=5))
        assert w.executor.machines.get(row.id).state == "requested"  # type: ignore[union-attr]
        await w.executor.reconcile(now=utcnow() + timedelta(minutes=31))
        assert (await w.h.finished(pid)).state == "failed"
        (a1,) = w.h.job(pid, "train").attempts
        assert "did not register within 0:30:00" in (a1.error or "")


async def test_serve_refuses_a_gpu_class_without_its_image_before_it_listens(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """``PLOYD_EC2_AMIS`` names no image for the GPU classes: ``ployd serve`` exits with
    the settings error before its site listens (no /healthz that says all is well while
    the executor cannot start) and before any AWS call, leaving the data directory free."""
    import pytest
    from aiohttp import web

    from app.server import start_server
    from app.settings import Settings, SettingsError

    listened: list[object] = []

    async def listen(site: object) -> None:
        listened.append(site)

    monkeypatch.setattr(web.TCPSite, "start", listen)
    env = {
        "PLOYD_DATA_DIR": str(tmp_path / "data"),
        "PLOYD_HOST": "127.0.0.1",
        "PLOYD_PORT": "0",
        "PLOYD_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "PLOYD_EXECUTOR": "ec2",
        "PLOYD_AWS_REGION": "us-east-1",
        "PLOYD_AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing there: never called
        "PLOYD_EC2_SUBNETS": "subnet-0123456789abcdef0",
        "PLOYD_EC2_SECURITY_GROUP": "sg-0123456789abcdef0",
        "PLOYD_EC2_INSTANCE_PROFILE": "ployd-runner",
        "PLOYD_EC2_AMIS": '{"default": "ami-0123456789abcdef0", "h100": "ami-0123456789abcdef1"}',
    }
    for _ in range(2):  # the second start is refused the same way: nothing was left held
        with pytest.raises(SettingsError, match=r"GPU class\(es\) a100, .*l4.* no AMI"):
            await start_server(Settings.from_env(env))
    assert listened == []
    allowed = env | {"PLOYD_EC2_ALLOWED_CLASSES": "cpu,h100"}
    settings = Settings.from_env(allowed)  # only classes that have their image: accepted
    from app.wiring import build_services, check_executor_settings

    check_executor_settings(build_services(settings))
