"""The engine gives a job only to an agent whose reported hardware satisfies it, and a
job no connected agent can run says so, naming what is connected."""

from __future__ import annotations

from app.engine.engine import Engine
from app.engine.hooks import AgentIdentity
from app.protocol import Gpu, Hardware

from .conftest import Driver

H100 = Gpu("NVIDIA H100 80GB HBM3", "h100", 81559)
A100 = Gpu("NVIDIA A100-SXM4-40GB", "a100", 40960)
CPU2 = Hardware(cpus=2, memory_mb=15684, disk_gb=200)
CPU16 = Hardware(cpus=16, memory_mb=64836, disk_gb=500)
H100X8 = Hardware(cpus=192, memory_mb=2096400, disk_gb=3500, gpus=(H100,) * 8)
H100X7 = Hardware(cpus=192, memory_mb=2096400, disk_gb=3500, gpus=(H100,) * 7)
A100X8 = Hardware(cpus=96, memory_mb=1179000, disk_gb=1000, gpus=(A100,) * 8)

TRAIN = "version: 1\njobs:\n  train: {hardware: h100:8, workload: train, steps: [{run: 'true'}]}\n"
NO_H100 = "waiting: no agent with h100:8 is connected"


def agent(name: str, hw: Hardware | None, **kw: object) -> AgentIdentity:
    return AgentIdentity(name, hardware=hw, **kw)  # type: ignore[arg-type]


async def test_an_h100_job_goes_only_to_the_agent_with_eight_h100s(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start(TRAIN)
    # The CPU agent is alone, and this the only job queued: it still does not get it.
    assert await engine.claim(agent("local-1", CPU2), 0) is None
    job = driver.job(pid, "train")
    assert job.state == "queued"
    assert job.waiting_reason == f"{NO_H100} (connected: local-1 cpu:2)"
    # Seven H100s are not eight; the message names both agents now.
    assert await engine.claim(agent("lab-7", H100X7), 0) is None
    assert await engine.claim(agent("lab-1", A100X8), 0) is None
    assert driver.job(pid, "train").waiting_reason == (
        f"{NO_H100} (connected: lab-1 a100:8, lab-7 h100:7, local-1 cpu:2)"
    )
    got = await engine.claim(agent("lab-8", H100X8), 0)
    assert got is not None and got.job.name == "train"
    job = driver.job(pid, "train")
    assert job.state == "dispatching" and job.attempts[0].agent_id == "lab-8"
    assert job.waiting_reason is None and job.waiting_since is None  # it waits no more


async def test_jobs_without_gpu_needs_go_to_any_agent(driver: Driver, engine: Engine) -> None:
    driver.start(
        "version: 1\njobs:\n  unit: {steps: [{run: 'true'}]}\n"
        "  big-cpu: {hardware: 'cpu:8', steps: [{run: 'true'}]}\n"
        "  res: {resources: {cpu: 16, memory: 64GB}, steps: [{run: 'true'}]}\n"
    )
    first = await engine.claim(agent("local-1", CPU2), 0)
    assert first is not None and first.job.name == "unit"
    assert await engine.claim(agent("local-1", CPU2), 0) is None  # cpu:8, cpu:16 + 64GB
    second = await engine.claim(agent("gpu-1", H100X8), 0)  # a GPU machine runs CPU jobs
    assert second is not None and second.job.name == "big-cpu"
    third = await engine.claim(agent("cpu-16", CPU16), 0)
    assert third is not None and third.job.name == "res"


async def test_an_agent_that_reports_nothing_runs_anything(
    driver: Driver, engine: Engine
) -> None:
    driver.start(TRAIN)
    got = await engine.claim("old-agent", 0)  # no hardware in its claim: as before
    assert got is not None and got.job.name == "train"


async def test_an_ec2_machine_is_matched_by_instance_type_not_what_it_detected(
    driver: Driver, engine: Engine
) -> None:
    driver.start(TRAIN)
    # Its driver not loaded yet: nvidia-smi found nothing. Its instance type says.
    machine = agent(
        "i-0abc",
        CPU2,
        instance_type="p5.48xlarge",
        accepts=lambda job, _p: "p5.48xlarge" in job.candidates,
        match_hardware=False,
    )
    got = await engine.claim(machine, 0)
    assert got is not None and got.job.name == "train"


async def test_accepts_and_hardware_both_hold(driver: Driver, engine: Engine) -> None:
    driver.start(TRAIN)
    never = agent("lab-8", H100X8, accepts=lambda _job, _p: False)  # another tenant's pool
    assert await engine.claim(never, 0) is None


async def test_no_message_while_an_agent_that_can_run_it_is_busy(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start(TRAIN + "  more: {hardware: h100:8, steps: [{run: 'true'}]}\n")
    got = await engine.claim(agent("lab-8", H100X8), 0)
    assert got is not None
    assert await engine.claim(agent("local-1", CPU2), 0) is None
    waiting = next(j for j in ("train", "more") if driver.job(pid, j).state == "queued")
    assert driver.job(pid, waiting).waiting_reason is None  # lab-8 will take it next


async def test_another_parts_reason_is_left_alone(driver: Driver, engine: Engine) -> None:
    pid = driver.start(TRAIN)
    job = driver.job(pid, "train")
    engine.set_waiting(job.id, "waiting for capacity: tried p5.48xlarge spot us-east-1a")
    assert await engine.claim(agent("local-1", CPU2), 0) is None
    assert driver.job(pid, "train").waiting_reason == (
        "waiting for capacity: tried p5.48xlarge spot us-east-1a"
    )


async def test_agents_gone_quiet_are_not_connected(driver: Driver, engine: Engine) -> None:
    now = [1000.0]
    engine.connected.clock = lambda: now[0]
    pid = driver.start(TRAIN)
    assert await engine.claim(agent("lab-1", A100X8), 0) is None
    now[0] += engine.heartbeat_timeout.total_seconds() + 1  # lab-1 has not called since
    assert await engine.claim(agent("local-1", CPU2), 0) is None
    assert driver.job(pid, "train").waiting_reason == f"{NO_H100} (connected: local-1 cpu:2)"
    assert [a for a, _ in engine.connected.now()] == ["local-1"]


async def test_an_agent_running_a_job_stays_connected(driver: Driver, engine: Engine) -> None:
    driver.start("version: 1\njobs:\n  unit: {steps: [{run: 'true'}]}\n")
    got = await engine.claim(agent("lab-8", H100X8), 0)
    assert got is not None
    assert engine.connected.now() == [("lab-8", H100X8)]
    assert await engine.heartbeat(got.attempt_id, got.job_token, 0) is False
    assert engine.connected.now() == [("lab-8", H100X8)]


def test_connected_agents_are_bounded() -> None:
    from app.engine import connected

    now = [0.0]
    agents = connected.ConnectedAgents(60, clock=lambda: now[0])
    for i in range(connected.MAX_AGENTS + 10):
        now[0] += 0.001
        agents.claimed(f"a{i}", None)
    seen = [a for a, _ in agents.now()]
    assert len(seen) == connected.MAX_AGENTS
    assert "a0" not in seen and f"a{connected.MAX_AGENTS + 9}" in seen


# --- jobs with an image: only to agents that can run containers ------------------------

PODMAN_CPU2 = Hardware(cpus=2, memory_mb=15684, disk_gb=200, containers="podman")
DOCKER_H100X8 = Hardware(
    cpus=192, memory_mb=2096400, disk_gb=3500, gpus=(H100,) * 8, containers="docker"
)
IMAGE_JOB = "version: 1\njobs:\n  unit: {image: 'python:3.12', steps: [{run: 'true'}]}\n"
NO_CONTAINERS = "waiting: no agent can run containers"


async def test_an_image_job_goes_only_to_an_agent_that_can_run_containers(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start(IMAGE_JOB)
    assert await engine.claim(agent("local-1", CPU2), 0) is None
    assert await engine.claim("old-agent", 0) is None  # reported nothing: cannot either
    job = driver.job(pid, "unit")
    assert job.state == "queued"
    assert job.waiting_reason == (
        f"{NO_CONTAINERS} (connected: local-1 cpu:2, old-agent (hardware not reported))"
    )
    got = await engine.claim(agent("box-1", PODMAN_CPU2), 0)
    assert got is not None and got.job.name == "unit"
    assert got.job.image is not None and got.job.image.name == "python:3.12"
    assert got.job.gpus == 0
    assert driver.job(pid, "unit").waiting_reason is None


async def test_an_image_job_needing_gpus_says_which_is_missing(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start(
        "version: 1\njobs:\n  train: {hardware: [h100:8, a100:8],"
        " image: 'nvcr.io/nvidia/pytorch:24.05-py3', steps: [{run: 'true'}]}\n"
    )
    assert await engine.claim(agent("box-1", PODMAN_CPU2), 0) is None  # containers, no H100s
    assert driver.job(pid, "train").waiting_reason == (
        "waiting: no agent with h100:8 or a100:8 is connected (connected: box-1 cpu:2)"
    )
    assert await engine.claim(agent("lab-8", H100X8), 0) is None  # H100s, no containers
    assert driver.job(pid, "train").waiting_reason == (
        f"{NO_CONTAINERS} (connected: box-1 cpu:2, lab-8 h100:8)"
    )
    got = await engine.claim(agent("dgx", DOCKER_H100X8), 0)
    assert got is not None and got.job.gpus == 8  # exactly what it asked for
    assert got.job.image is not None and got.job.image.name.startswith("nvcr.io/")


async def test_a_job_gets_the_gpu_count_it_asked_for(driver: Driver, engine: Engine) -> None:
    driver.start(
        "version: 1\njobs:\n"
        "  two: {resources: {gpu: 2}, steps: [{run: 'true'}]}\n"
        "  pick: {hardware: [a100:8, h100:2], steps: [{run: 'true'}]}\n"
    )
    first = await engine.claim(agent("lab-8", H100X8), 0)
    second = await engine.claim(agent("lab-8", H100X8), 0)
    assert first is not None and second is not None
    gpus = {first.job.name: first.job.gpus, second.job.name: second.job.gpus}
    assert gpus == {"two": 2, "pick": 2}  # h100:2 is the spec this machine provides


async def test_resources_disk_goes_only_to_an_agent_with_that_much_disk(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start(
        "version: 1\njobs:\n  data: {resources: {cpu: 2, disk: 300GB}, steps: [{run: 'true'}]}\n"
    )
    assert await engine.claim(agent("local-1", CPU2), 0) is None  # 200 GB of disk
    job = driver.job(pid, "data")
    assert job.state == "queued" and job.waiting_reason == (
        "waiting: no agent with >= 2 vCPUs, >= 300GB disk is connected (connected: local-1 cpu:2)"
    )
    got = await engine.claim(agent("cpu-16", CPU16), 0)  # 500 GB
    assert got is not None and got.job.name == "data"
