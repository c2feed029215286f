"""Which agent may run which job by the hardware it reported (app/core/agentfit.py), and
the agent's GPU table covering the catalog's GPU classes."""

from __future__ import annotations

import pytest

from app.agent.hardware import GPU_CLASSES, gpu_class
from app.core.agentfit import (
    Need,
    describe_machine,
    gpus_for,
    satisfies,
    shortfall,
    waiting_message,
)
from app.core.config.model import GpuRequest, HardwareSpec, Resources
from app.core.hardware import Catalog
from app.protocol import Gpu, Hardware

H100 = Gpu("NVIDIA H100 80GB HBM3", "h100", 81559)
A100_40 = Gpu("NVIDIA A100-SXM4-40GB", "a100", 40960)
A100_80 = Gpu("NVIDIA A100-SXM4-80GB", "a100-80gb", 81920)
L4 = Gpu("NVIDIA L4", "l4", 23034)
RTX = Gpu("NVIDIA GeForce RTX 4090", "", 24564)


def box(cpus: int = 16, memory_gb: int = 64, disk_gb: int = 500, *gpus: Gpu) -> Hardware:
    # A machine of N GiB reports a little less in MemTotal (what the kernel keeps).
    return Hardware(cpus=cpus, memory_mb=memory_gb * 1024 - 700, disk_gb=disk_gb, gpus=gpus)


LAPTOP = box(2, 16, 200)
ONE_CPU = box(1, 2, 20)
H100X8 = box(192, 2048, 3500, *[H100] * 8)
H100X7 = box(192, 2048, 3500, *[H100] * 7)
A100X8_40 = box(96, 1152, 1000, *[A100_40] * 8)
A100X8_80 = box(96, 1152, 1000, *[A100_80] * 8)
L4_BOX = box(8, 32, 250, L4)
RTX_BOX = box(32, 128, 2000, RTX, RTX)


def spec(*texts: str) -> Need:
    return Need.of(texts)


def res(**kw: object) -> Need:
    return Need(resources=Resources(**kw))  # type: ignore[arg-type]


def test_an_image_job_needs_an_agent_with_a_container_runtime() -> None:
    need = Need.of((), containers=True)
    podman = Hardware(cpus=2, memory_mb=0, disk_gb=0, containers="podman")
    assert satisfies(podman, need) and not satisfies(LAPTOP, need) and not satisfies(None, need)
    assert waiting_message(need, [("local-1", LAPTOP)]) == (
        "waiting: no agent can run containers (connected: local-1 cpu:2)")
    gpus = Need.of(["h100:8"], containers=True)
    assert waiting_message(gpus, [("local-1", podman)]).startswith(
        "waiting: no agent with h100:8 is connected")  # the hardware is what none has
    assert gpus_for(None, gpus) == 8 and gpus_for(podman, Need.of(["cpu:4"])) == 0


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        (H100X8, spec("h100:8"), True),
        (H100X7, spec("h100:8"), False),  # seven are not eight
        (H100X8, spec("h100"), True),
        (H100X8, spec("h200:1"), False),
        (LAPTOP, spec("h100:8"), False),
        (A100X8_40, spec("h100:8"), False),
        (A100X8_40, spec("a100:8"), True),
        (A100X8_40, spec("a100-80gb:8"), False),  # 40 GB ones are not 80 GB ones
        (A100X8_80, spec("a100-80gb:8"), True),
        (A100X8_80, spec("a100:8"), False),  # classes are exact, as for EC2 types
        (RTX_BOX, spec("l4"), False),  # a GPU of no catalog class serves no class
        (RTX_BOX, spec("cpu:8"), True),
        (L4_BOX, spec("l4:2"), False),
        (L4_BOX, spec("l4"), True),
        # preference lists: any one of them
        (A100X8_40, spec("h100:8", "a100:8"), True),
        (L4_BOX, spec("h100:8", "a100:8"), False),
        # CPUs
        (L4_BOX, spec("cpu:8"), True),
        (LAPTOP, spec("cpu:8"), False),
        (LAPTOP, spec("cpu:2"), True),
        (ONE_CPU, spec("cpu"), True),  # the default cpu:2 runs anywhere
        (ONE_CPU, spec("cpu:2"), True),
        (ONE_CPU, spec("cpu:3"), False),
        # a job without GPU needs goes to GPU machines too
        (H100X8, spec("cpu"), True),
        (H100X8, Need(), True),
        (LAPTOP, Need(), True),
        # accelerators no agent detects
        (H100X8, spec("trainium:1"), False),
        # an agent that reported nothing (an older one) runs anything
        (None, spec("h100:8"), True),
        (None, res(cpu=64), True),
        # resources
        (L4_BOX, res(cpu=8), True),
        (LAPTOP, res(cpu=8), False),
        (L4_BOX, res(memory_gb=32.0), True),  # a "32GB" machine that reports a bit less
        (L4_BOX, res(memory_gb=35.0), False),
        (L4_BOX, res(disk_gb=250.0), True),
        (L4_BOX, res(disk_gb=251.0), False),
        (L4_BOX, res(gpu=GpuRequest()), True),  # any GPU
        (LAPTOP, res(gpu=GpuRequest()), False),
        (RTX_BOX, res(gpu=GpuRequest(count=2)), True),  # any GPU: one of no class too
        (RTX_BOX, res(gpu=GpuRequest(count=3)), False),
        (L4_BOX, res(gpu=GpuRequest(memory_gb=24.0)), True),  # 23034 MiB is a "24GB" L4
        (L4_BOX, res(gpu=GpuRequest(memory_gb=25.0)), False),
        (H100X8, res(gpu=GpuRequest("h100", 8, 80.0)), True),  # 81559 MiB: "80GB"
        (H100X7, res(gpu=GpuRequest("h100", 8)), False),
        (A100X8_40, res(gpu=GpuRequest("a100-80gb", 1)), False),
        (A100X8_40, res(gpu=GpuRequest(count=8, memory_gb=80.0)), False),
        (A100X8_80, res(gpu=GpuRequest(count=8, memory_gb=80.0)), True),
        (H100X8, res(gpu=GpuRequest("h100", 8), cpu=256), False),  # every part must hold
        (H100X8, res(gpu=GpuRequest("h100", 8), cpu=192, memory_gb=2048.0), True),
    ],
)
def test_satisfies(have: Hardware | None, need: Need, ok: bool) -> None:
    assert satisfies(have, need) is ok
    assert (shortfall(have, need) is None) is ok if have is not None else True


def test_every_catalog_gpu_class_is_one_the_agent_can_report() -> None:
    catalog = Catalog.default()
    gpu_classes = {c for c in catalog.classes() if catalog.hardware_class(c).kind == "gpu"}
    assert gpu_classes == GPU_CLASSES
    # ... reached by the names their instance types' GPUs have, with their memory
    for t in catalog.types():
        if catalog.hardware_class(t.cls).kind != "gpu":
            continue
        name = catalog.hardware_class(t.cls).accelerator or ""
        assert gpu_class(name, int(t.accelerator_memory_gb * 1024)) == t.cls, t.name


def test_a_need_from_stored_specs() -> None:
    assert Need.of(["h100:8", "a100:8"]).hardware == (
        HardwareSpec("h100", 8), HardwareSpec("a100", 8))
    assert Need.of(["not a spec!", "l4"]).hardware == (HardwareSpec("l4", 1),)
    assert str(Need.of(["h100:8"])) == "h100:8"
    assert str(Need.of(["h100:8", "a100:8"])) == "h100:8 or a100:8"
    assert str(Need(resources=Resources(gpu=GpuRequest(count=2), cpu=8))) == (
        "2 x GPU, >= 8 vCPUs")
    assert str(Need()) == "anything"


@pytest.mark.parametrize(
    ("have", "text"),
    [
        (A100X8_40, "a100:8"),
        (LAPTOP, "cpu:2"),
        (box(8, 32, 100, L4, Gpu("Tesla T4", "t4", 15360)), "l4:1+t4:1"),
        (RTX_BOX, "gpu:2 (NVIDIA GeForce RTX 4090)"),
        (None, "(hardware not reported)"),
    ],
)
def test_describe_machine(have: Hardware | None, text: str) -> None:
    assert describe_machine(have) == text


def test_waiting_message_names_what_is_connected() -> None:
    msg = waiting_message(spec("h100:8"), [("local-1", LAPTOP), ("lab-1", A100X8_40)])
    assert msg == (
        "waiting: no agent with h100:8 is connected (connected: lab-1 a100:8, local-1 cpu:2)")
    assert waiting_message(spec("h100:8"), []) == (
        "waiting: no agent with h100:8 is connected (connected: none)")
    many = waiting_message(spec("h100:8"), [(f"a{i:02}", LAPTOP) for i in range(13)])
    assert many.endswith("a09 cpu:2, and 3 more)")


@pytest.mark.parametrize(
    ("have", "need", "text"),
    [
        (LAPTOP, spec("h100:8"), "no h100"),
        (H100X7, spec("h100:8"), "only 7 h100, not 8"),
        (LAPTOP, spec("cpu:8"), "only 2 CPUs, not 8"),
        (LAPTOP, spec("h100:8", "a100:8"), "no h100"),  # the preferred one is named
        (LAPTOP, res(gpu=GpuRequest()), "no GPU"),
        (L4_BOX, res(gpu=GpuRequest("h100", 8, 80.0)), "no h100 with 80GB"),
        (RTX_BOX, res(gpu=GpuRequest(count=4)), "only 2 GPU, not 4"),
        (LAPTOP, res(cpu=8), "only 2 CPUs, not 8"),
        (LAPTOP, res(memory_gb=64.0), "only 16GB memory, not 64GB"),
        (LAPTOP, res(disk_gb=1000.0), "only 200GB disk, not 1000GB"),
        (H100X8, spec("h100:8"), None),
    ],
)
def test_shortfall(have: Hardware, need: Need, text: str | None) -> None:
    assert shortfall(have, need) == text
