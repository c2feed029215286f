"""What the agent finds on its machine (app/agent/hardware.py): GPU names as nvidia-smi
prints them mapped to the catalog's classes, nvidia-smi absent, failing, hanging or
printing garbage, and the CPUs, memory and disk."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.agent import hardware
from app.agent.hardware import detect, detect_gpus, gpu_class, parse_nvidia_smi
from app.protocol import Gpu, Hardware
from tests.fakes import nvidia_smi


@pytest.mark.parametrize(
    ("name", "memory_mb", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 81559, "h100"),
        ("NVIDIA H100 PCIe", 81559, "h100"),
        ("NVIDIA H100 NVL", 95830, "h100"),
        ("NVIDIA H200", 143771, "h200"),
        ("NVIDIA H200 NVL", 143771, "h200"),
        ("NVIDIA B200", 183359, "b200"),
        ("NVIDIA A100-SXM4-40GB", 40960, "a100"),
        ("NVIDIA A100-PCIE-40GB", 40960, "a100"),
        ("NVIDIA A100-SXM4-80GB", 81920, "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", 81920, "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", 0, "a100-80gb"),  # memory [N/A]: the name says
        ("NVIDIA A100-SXM4-40GB", 0, "a100"),
        ("NVIDIA A10G", 23028, "a10g"),
        ("NVIDIA L4", 23034, "l4"),
        ("NVIDIA L40S", 46068, "l40s"),
        ("Tesla T4", 15360, "t4"),
        ("nvidia l4", 23034, "l4"),  # case does not matter
        # Negatives: near names that are other GPUs, and GPUs of no catalog class.
        ("NVIDIA L40", 46068, ""),  # not an L40S
        ("NVIDIA A10", 23028, ""),  # not an A10G
        ("NVIDIA H20", 97871, ""),  # not an H200
        ("NVIDIA H800", 81559, ""),
        ("NVIDIA GH200 480GB", 97871, ""),
        ("NVIDIA GeForce RTX 4090", 24564, ""),
        ("NVIDIA RTX A6000", 49140, ""),
        ("Tesla V100-SXM2-16GB", 16384, ""),
        ("", 0, ""),
        # A MIG slice is not a whole GPU of its class.
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", 4864, ""),
        ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40192, ""),
        ("MIG 7g.80gb", 81559, ""),
    ],
)
def test_gpu_names_map_to_the_catalogs_classes(name: str, memory_mb: int, expected: str) -> None:
    assert gpu_class(name, memory_mb) == expected


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("h100x8", (Gpu("NVIDIA H100 80GB HBM3", "h100", 81559),) * 8),
        ("a100-sxm4-40gb", (Gpu("NVIDIA A100-SXM4-40GB", "a100", 40960),)),
        ("l4", (Gpu("NVIDIA L4", "l4", 23034),)),
        ("unknown", (Gpu("NVIDIA GeForce RTX 4090", "", 24564),)),
    ],
)
def test_real_nvidia_smi_output_through_a_fake_binary(
    fixture: str, expected: tuple[Gpu, ...], tmp_path: Path
) -> None:
    bin_dir = nvidia_smi.install(tmp_path / "bin", nvidia_smi.fixture(fixture))
    assert detect_gpus(nvidia_smi=str(bin_dir / "nvidia-smi")) == expected


def test_nvidia_smi_is_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = nvidia_smi.install(tmp_path / "bin", nvidia_smi.fixture("h100x8"))
    monkeypatch.setenv("PATH", nvidia_smi.path_with(bin_dir))
    hw = detect(tmp_path)
    assert [g.model for g in hw.gpus] == ["h100"] * 8


def test_no_nvidia_smi_is_no_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with caplog.at_level(logging.INFO, "ployd.agent"):
        assert detect_gpus() == ()
    assert "no nvidia-smi on PATH" in caplog.text


@pytest.mark.parametrize(
    ("output", "code", "said"),
    [
        (*nvidia_smi.NO_DRIVER, "couldn't communicate with the NVIDIA driver"),
        ("No devices were found\n", 6, "exited with 6 (No devices were found)"),
        ("", 1, "exited with 1 (no output)"),
    ],
)
def test_a_failing_nvidia_smi_is_no_gpus(
    output: str, code: int, said: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bin_dir = nvidia_smi.install(tmp_path / "bin", output, exit_code=code)
    with caplog.at_level(logging.INFO, "ployd.agent"):
        assert detect_gpus(nvidia_smi=str(bin_dir / "nvidia-smi")) == ()
    assert said in caplog.text and "no GPUs" in caplog.text


def test_a_hanging_nvidia_smi_is_no_gpus(caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, Any] = {}

    def hangs(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen.update(kw, argv=argv)
        raise subprocess.TimeoutExpired(argv, kw["timeout"])

    with caplog.at_level(logging.INFO, "ployd.agent"):
        assert detect_gpus(nvidia_smi="/x/nvidia-smi", timeout_s=3, run=hangs) == ()
    assert seen["timeout"] == 3 and seen["argv"][1:] == list(hardware.NVIDIA_SMI_ARGS)
    assert "did not answer within 3s" in caplog.text


def test_an_nvidia_smi_that_cannot_run_is_no_gpus(tmp_path: Path) -> None:
    not_executable = tmp_path / "nvidia-smi"
    not_executable.write_text("not a program")
    assert detect_gpus(nvidia_smi=str(not_executable)) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NVIDIA L4, 23034\n\n", (Gpu("NVIDIA L4", "l4", 23034),)),
        ("NVIDIA L4, [N/A]\n", (Gpu("NVIDIA L4", "l4", 0),)),
        ("NVIDIA L4, [Not Supported]\n", (Gpu("NVIDIA L4", "l4", 0),)),
        ("  Tesla T4 ,  15360  \n", (Gpu("Tesla T4", "t4", 15360),)),
        # garbage lines are skipped, the good ones kept
        (
            "WARNING: infoROM is corrupted at gpu 0000:00:1E.0\nNVIDIA A10G, 23028\n",
            (Gpu("NVIDIA A10G", "a10g", 23028),),
        ),
        ("NVIDIA L4, 23 GB\n", ()),
        ("NVIDIA L4, -5\n", ()),
        (", 23034\n", ()),
        ("\x00\xff garbage \x1b[0m\n", ()),
        ("", ()),
    ],
)
def test_parsing_skips_what_is_not_a_gpu(text: str, expected: tuple[Gpu, ...]) -> None:
    assert parse_nvidia_smi(text) == expected


def test_at_most_the_protocols_gpus_are_reported() -> None:
    gpus = parse_nvidia_smi("NVIDIA L4, 23034\n" * 100)
    assert len(gpus) == 64
    Hardware(cpus=1, memory_mb=1, disk_gb=1, gpus=gpus).to_json()  # still a valid message
    assert Hardware.from_json(Hardware(1, 1, 1, gpus).to_json()).gpus == gpus


def test_cpus_follow_affinity_and_a_cgroup_quota(tmp_path: Path) -> None:
    import os

    affinity = len(os.sched_getaffinity(0))
    assert hardware.detect_cpus(tmp_path / "no-cgroup") == affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert hardware.detect_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one
    assert hardware.detect_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{100000 * (affinity + 8)} 100000\n")
    assert hardware.detect_cpus(tmp_path) == affinity  # a quota above the mask
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert hardware.detect_cpus(tmp_path) == affinity


def test_memory_from_meminfo_and_without_it(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree:  1000 kB\nMemTotal:       65536000 kB\n")
    assert hardware.detect_memory_mb(meminfo) == 64000
    # no /proc/meminfo (macOS): the physical pages
    assert hardware.detect_memory_mb(tmp_path / "none") > 0
    meminfo.write_text("MemTotal: lots\n")
    assert hardware.detect_memory_mb(meminfo) > 0


def test_disk_of_the_work_dir_even_before_it_exists(tmp_path: Path) -> None:
    import shutil

    total = shutil.disk_usage(tmp_path).total // 10**9
    assert hardware.detect_disk_gb(tmp_path / "not" / "yet") == total


def test_detect_gives_a_hardware_message(tmp_path: Path) -> None:
    bin_dir = nvidia_smi.install(tmp_path / "bin", nvidia_smi.fixture("l4"))
    hw = detect(tmp_path, nvidia_smi=str(bin_dir / "nvidia-smi"))
    assert hw.cpus >= 1 and hw.memory_mb > 0 and hw.disk_gb >= 0
    assert hw.gpus == (Gpu("NVIDIA L4", "l4", 23034),)
    assert Hardware.from_json(hw.to_json()) == hw
    assert hardware.describe(hw).startswith("1 x NVIDIA L4 (l4), ")
