"""`ployd run` end to end on a temporary git working tree."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.cli import run as run_cmd


def write_config(tree: Path, text: str) -> None:
    (tree / ".ployd.yml").write_text(textwrap.dedent(text))


def ployd_run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    run_cmd.add_arguments(parser)
    return run_cmd.main(parser.parse_args(list(argv)))


CHAIN = """\
    version: 1
    jobs:
      a:
        steps:
          - run: echo a >> order.txt
      b:
        needs: [a]
        steps:
          - name: Build B
            run: echo b >> order.txt; echo "built b"
      c:
        needs: [b]
        steps:
          - run: echo c >> order.txt
"""


def test_dag_order_through_the_cli(tree: Path) -> None:
    """The real `python -m app run` entry point, in a subprocess."""
    write_config(tree, CHAIN)
    p = subprocess.run([sys.executable, "-m", "app", "run"], cwd=tree,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tree / "order.txt").read_text() == "a\nb\nc\n"
    assert "b | built b" in p.stdout
    assert "b | ▶ Build B" in p.stdout
    lines = p.stdout.splitlines()
    summary = lines[lines.index("") + 1:]
    assert summary[0].split() == ["JOB", "RESULT", "DURATION"]
    assert [row.split()[:2] for row in summary[1:4]] == [
        ["a", "succeeded"], ["b", "succeeded"], ["c", "succeeded"]]
    assert summary[-1].startswith("pipeline succeeded in ")


def test_parallel_jobs_run_at_once(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each job blocks on a fifo until the other opens it: both must be running at once.
    (Run one after the other, the first would hit its 10 s step timeout.)"""
    os.mkfifo(tree / "x.fifo")
    write_config(tree, """\
        version: 1
        jobs:
          writer:
            steps:
              - run: echo hello > x.fifo
                timeout: 10s
          reader:
            steps:
              - run: read v < x.fifo; echo "got $v"
                timeout: 10s
    """)
    assert ployd_run("--jobs", "2") == 0
    assert "reader | got hello" in capsys.readouterr().out


def test_failure_skips_dependents_and_exits_1(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(tree, """\
        version: 1
        jobs:
          a:
            steps:
              - run: exit 7
          b:
            needs: [a]
            steps:
              - run: touch b-ran
          other:
            steps:
              - run: touch other-ran
    """)
    assert ployd_run() == 1
    out = capsys.readouterr().out
    assert not (tree / "b-ran").exists()
    assert (tree / "other-ran").exists()
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.split() and line.split()[0] in ("a", "b", "other")
            and len(line.split()) > 1 and line.split()[1] != "|"}
    assert rows == {"a": "failed", "b": "skipped", "other": "succeeded"}
    assert "step 1 'exit 7', exit 7" in out
    assert "pipeline failed" in out


def test_job_with_its_needs(tree: Path) -> None:
    write_config(tree, CHAIN + """\
      d:
        steps:
          - run: touch d-ran
""")
    assert ployd_run("--job", "b") == 0
    assert (tree / "order.txt").read_text() == "a\nb\n"
    assert not (tree / "d-ran").exists()


def test_dry_run(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tree, CHAIN + """\
      bench:
        when: manual
        steps:
          - run: touch bench-ran
""")
    assert ployd_run("--dry-run") == 0
    out = capsys.readouterr().out
    assert not (tree / "order.txt").exists()
    lines = out.splitlines()
    assert lines[0].startswith(".ployd.yml: 3 job(s) would run")
    assert lines[1].split()[:2] == ["1.", "a"]
    assert lines[2].split()[:2] == ["2.", "b"] and lines[2].endswith("needs: a")
    assert lines[3].split()[:2] == ["3.", "c"] and lines[3].endswith("needs: b")
    assert "bench" in lines[4] and "manual" in lines[4]


def test_manual_jobs_only_when_named(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tree, """\
        version: 1
        jobs:
          unit:
            steps:
              - run: touch unit-ran
          bench:
            when: manual
            needs: [unit]
            steps:
              - run: touch bench-ran
    """)
    assert ployd_run() == 0
    assert (tree / "unit-ran").exists() and not (tree / "bench-ran").exists()
    assert "manual" in capsys.readouterr().out
    (tree / "unit-ran").unlink()
    assert ployd_run("--job", "bench") == 0
    assert (tree / "unit-ran").exists() and (tree / "bench-ran").exists()


def test_matrix_children_with_their_env(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tree, """\
        version: 1
        jobs:
          test:
            matrix:
              python: ["3.11", "3.12"]
            env:
              PY: ${{ matrix.python }}
            artifacts: {paths: ["out.txt", "seen.txt"]}
            steps:
              # each child in its own copy of the tree: neither sees the other's file
              - run: ls; echo "py=$PY" > out.txt; ls out-* 2>/dev/null > seen.txt || true
              - run: touch "out-$PY"; echo "running $PY"
          other:
            steps:
              - run: touch other-ran
    """)
    (tree / "data.txt").write_text("untracked, not ignored: copied\n")
    assert ployd_run("--job", "test") == 0
    art = tree / ".ployd" / "artifacts"
    assert (art / "test (python=3.11)" / "out.txt").read_text() == "py=3.11\n"
    assert (art / "test (python=3.12)" / "out.txt").read_text() == "py=3.12\n"
    assert (art / "test (python=3.11)" / "seen.txt").read_text() == ""
    assert not (tree / "out.txt").exists() and not list(tree.glob("out-*"))
    assert not (tree / "other-ran").exists()
    out = capsys.readouterr().out
    assert "test (python=3.11) | running 3.11" in out
    assert "test (python=3.12) | running 3.12" in out
    assert "test (python=3.11) | data.txt" in out  # the copy has the untracked file
    assert "test (python=3.11) | a copy of the tree of its own: " in out


def test_unknown_job(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tree, CHAIN)
    assert ployd_run("--job", "nope") == 2
    assert "no job 'nope'" in capsys.readouterr().err


def test_invalid_config(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tree, """\
        version: 1
        jobs:
          a:
            needs: [zzz]
            steps:
              - run: echo a
    """)
    assert ployd_run() == 1
    err = capsys.readouterr().err
    assert err.startswith(".ployd.yml:4:")
    assert "zzz" in err


def test_missing_file(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ployd_run("--file", "nothere.yml") == 1
    assert "nothere.yml" in capsys.readouterr().err


def test_secrets_from_the_environment_are_masked(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value")
    write_config(tree, """\
        version: 1
        jobs:
          train:
            secrets: [WANDB_API_KEY, MISSING_ONE]
            steps:
              - run: echo "key=$WANDB_API_KEY"; printf %s "$WANDB_API_KEY" | base64
    """)
    assert ployd_run() == 0
    captured = capsys.readouterr()
    assert "wandb-secret-value" not in captured.out
    assert "train | key=***" in captured.out
    assert "MISSING_ONE is not set" in captured.err


def test_a_gpu_job_runs_here_after_a_warning(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import nvidia_smi

    # This machine has one L4, as its nvidia-smi tells (whatever it really has).
    bin_dir = nvidia_smi.install(tree.parent / "bin", nvidia_smi.fixture("l4"))
    monkeypatch.setenv("PATH", nvidia_smi.path_with(bin_dir))
    write_config(tree, """\
        version: 1
        jobs:
          train:
            hardware: h100:8
            steps:
              - run: echo trained
          infer:
            hardware: l4
            steps:
              - run: echo inferred
          eval:
            hardware: [h100:8, a100:8]
            steps:
              - run: echo evaluated
    """)
    assert ployd_run() == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "running anyway" in line]
    assert warnings == [
        "ployd run: this machine has no h100; running anyway "
        "(train asks for h100:8; eval asks for h100:8 or a100:8)"
    ]
    assert "train | trained" in captured.out and "eval  | evaluated" in captured.out
    assert "infer | inferred" in captured.out  # an L4 job on an L4: no warning


def test_warnings_for_what_the_jobs_ask_and_the_machine_lacks() -> None:
    from app.cli.run import hardware_warnings
    from app.core.config.loader import load_config
    from app.core.expand import expand
    from app.core.hardware import Catalog
    from app.protocol import Gpu, Hardware

    jobs = expand(load_config(textwrap.dedent("""\
        version: 1
        jobs:
          unit: {steps: [{run: 'true'}]}
          big: {hardware: 'cpu:64', steps: [{run: 'true'}]}
          seven: {hardware: 'h100:8', steps: [{run: 'true'}]}
          res: {resources: {memory: 512GB}, steps: [{run: 'true'}]}
          later: {when: manual, hardware: 'b200:8', steps: [{run: 'true'}]}
    """)), Catalog.default())
    nodes = run_cmd.select(jobs, [])
    h100 = Gpu("NVIDIA H100 80GB HBM3", "h100", 81559)
    machine = Hardware(cpus=16, memory_mb=64000, disk_gb=500, gpus=(h100,) * 7)
    assert hardware_warnings(jobs, nodes, lambda: machine) == [
        "ployd run: this machine has only 16 CPUs, not 64; running anyway (big asks for cpu:64)",
        "ployd run: this machine has only 7 h100, not 8; running anyway (seven asks for h100:8)",
        "ployd run: this machine has only 67GB memory, not 512GB; running anyway "
        "(res asks for >= 512GB memory)",
    ]  # the manual job does not run: no warning for it

    def never() -> Hardware:
        raise AssertionError("no job asks for more than any machine has: nothing detected")

    cpu_only = run_cmd.select(jobs, ["unit"])
    assert hardware_warnings(jobs, cpu_only, never) == []


def test_a_job_with_an_image_runs_in_its_container(
    tree: Path, podman: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import IMAGE_MARKER, TEST_IMAGE

    write_config(tree, f"""\
        version: 1
        jobs:
          boxed:
            image: {TEST_IMAGE}
            steps:
              - run: cat /IMAGE_MARKER; echo "in $PWD"; echo made > made.txt
              - run: cat made.txt
          host:
            steps:
              - run: test ! -e /IMAGE_MARKER && echo on-the-host
    """)
    assert ployd_run() == 0
    out = capsys.readouterr().out
    assert f"boxed | {IMAGE_MARKER}" in out
    assert f"boxed | in {tree}" in out and "boxed | made" in out
    assert "host  | on-the-host" in out
