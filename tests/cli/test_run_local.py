"""`ployd run` as the service does it: colour, the failing lines and skip reasons in the
summary, artifacts in .ployd/artifacts/JOB/, caches under $XDG_CACHE_HOME/ployd."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.cli.runlocal import Palette, colour_wanted, failing_lines

from .test_run import ployd_run, write_config

ESC = "\x1b["


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_on_a_terminal_unless_no_color() -> None:
    assert colour_wanted("auto", Tty(), {}) is True
    assert colour_wanted("auto", io.StringIO(), {}) is False  # a pipe, a file
    assert colour_wanted("auto", Tty(), {"NO_COLOR": "1"}) is False
    assert colour_wanted("auto", Tty(), {"NO_COLOR": ""}) is True  # set but empty: ignored
    assert colour_wanted("auto", Tty(), {"TERM": "dumb"}) is False
    assert colour_wanted("always", io.StringIO(), {"NO_COLOR": "1"}) is True
    assert colour_wanted("never", Tty(), {}) is False
    assert Palette(False).state("failed", "failed") == "failed"
    assert Palette(True).state("failed", "failed") == f"{ESC}31mfailed{ESC}0m"


def test_colour_always_and_never(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tree, """\
        version: 1
        jobs:
          ok:
            steps:
              - run: echo fine
          bad:
            steps:
              - run: exit 1
    """)
    assert ployd_run("--color", "always") == 1
    out = capsys.readouterr().out
    assert f"{ESC}36mok  |{ESC}0m fine" in out  # the job's prefix in its colour
    assert f"{ESC}32msucceeded{ESC}0m" in out and f"{ESC}31mfailed" in out
    assert ployd_run() == 1  # auto, to a pipe: no colour
    assert ESC not in capsys.readouterr().out


def test_the_summary_shows_the_failing_lines_and_why_jobs_were_skipped(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(tree, """\
        version: 1
        jobs:
          prepare:
            steps:
              - run: echo prepared
          train:
            steps:
              - name: load the data
                run: |
                  for i in $(seq 1 40); do echo "epoch $i loss 0.$i"; done
                  echo 'Traceback (most recent call last):'
                  echo '  File "train.py", line 3, in <module>'
                  echo "FileNotFoundError: [Errno 2] No such file or directory: 'data.csv'"
                  for i in $(seq 1 20); do echo "cleanup $i"; done
                  exit 2
          evaluate:
            needs: [train, prepare]
            steps:
              - run: echo never
          report:
            needs: [evaluate]
            steps:
              - run: echo never
    """)
    assert ployd_run() == 1
    out = capsys.readouterr().out
    summary = out[out.index("\nJOB "):]
    rows = {r.split()[0]: r for r in summary.splitlines()[2:6]}
    assert rows["train"].split()[1] == "failed"
    assert "step 1 'load the data', exit 2" in rows["train"]
    assert rows["evaluate"].split()[1] == "skipped"
    assert rows["evaluate"].endswith("needs train failed")
    assert rows["report"].endswith("needs evaluate skipped")
    tail = summary[summary.index("train: failed at step 1 'load the data', exit 2"):]
    lines = [line.strip() for line in tail.splitlines()[1:]]
    assert "FileNotFoundError: [Errno 2] No such file or directory: 'data.csv'" in lines
    assert "cleanup 20" in lines and "epoch 1 loss 0.1" not in lines
    assert lines[-1].startswith("pipeline failed in ")


def test_failing_lines_keep_the_error_line() -> None:
    lines = ["▶ setup", "ok", "▶ test", *[f"noise {i}" for i in range(50)],
             "error: linker failed", *[f"more {i}" for i in range(30)]]  # fmt: skip
    got = failing_lines(lines, n=12)
    assert got[0] == "error: linker failed" and "…" in got and got[-1] == "more 29"
    assert "ok" not in got  # only the failed (last) step's lines
    assert failing_lines(["▶ a", "one", "two"]) == ["one", "two"]


def test_artifacts_are_collected_into_dot_ployd(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(tree, """\
        version: 1
        jobs:
          build:
            artifacts: {paths: ["out/**", "metrics.json", "../escape.txt"]}
            steps:
              - run: |
                  mkdir -p out/sub; echo bin > out/sub/app; echo '{"acc": 1}' > metrics.json
          broken:
            artifacts: {paths: ["report.txt"]}
            steps:
              - run: echo partial > report.txt; exit 1
    """)
    assert ployd_run() == 1
    out = capsys.readouterr().out
    art = tree / ".ployd" / "artifacts"
    assert (art / "build" / "out" / "sub" / "app").read_text() == "bin\n"
    assert (art / "build" / "metrics.json").read_text() == '{"acc": 1}\n'
    assert (art / "broken" / "report.txt").read_text() == "partial\n"  # also when it failed
    assert "build  | artifacts: 2 files (" in out and f"in {art / 'build'}" in out
    assert "build  | artifacts: refused pattern '../escape.txt': outside the workspace" in out
    # the next run's artifacts replace the last run's
    (tree / "out" / "sub" / "app").unlink()
    write_config(tree, """\
        version: 1
        jobs:
          build:
            artifacts: {paths: ["out/**"]}
            steps:
              - run: echo new > out/other
    """)
    assert ployd_run() == 0
    assert sorted(p.name for p in (art / "build").rglob("*") if p.is_file()) == ["other"]


CACHED = """\
    version: 1
    jobs:
      deps:
        cache:
          key: deps-${{ hashFiles('requirements.txt') }}
          paths: [vendor, ~/.cache/pip]
          restore-keys: [deps-]
        steps:
          - run: |
              if [ -f vendor/lib ]; then echo "have $(cat vendor/lib)"; else echo installing; fi
              mkdir -p vendor; cat requirements.txt > vendor/lib
"""


def test_caches_under_xdg_cache_home(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_home = tree.parent / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    write_config(tree, CACHED)
    (tree / "requirements.txt").write_text("numpy==1\n")
    assert ployd_run() == 0
    out = capsys.readouterr().out
    assert "deps | cache: miss for deps-" in out and "deps | installing" in out
    assert "deps | cache: saved deps-" in out
    assert "cache: ~/.cache/pip: in your home directory, kept as it is between runs" in out
    entries = list((cache_home / "ployd" / "caches").glob("*/*.tar.gz"))
    assert len(entries) == 1

    (tree / "vendor" / "lib").unlink()  # a fresh checkout: the cache brings it back
    assert ployd_run() == 0
    out = capsys.readouterr().out
    assert "(exact hit)" in out and "deps | have numpy==1" in out
    assert "cache: saved" not in out  # an exact hit is not saved again

    (tree / "vendor" / "lib").unlink()
    (tree / "requirements.txt").write_text("numpy==2\n")  # another key: the prefix matches
    assert ployd_run() == 0
    out = capsys.readouterr().out
    assert "(restore key, for deps-" in out and "deps | have numpy==1" in out
    assert "deps | cache: saved deps-" in out
    assert len(list((cache_home / "ployd" / "caches").glob("*/*.tar.gz"))) == 2


def test_caches_default_to_home_dot_cache(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tree.parent / "home"))
    write_config(tree, CACHED)
    (tree / "requirements.txt").write_text("x\n")
    assert ployd_run() == 0
    assert list((tree.parent / "home" / ".cache" / "ployd" / "caches").glob("*/*.tar.gz"))


def test_a_matrix_child_with_an_image_runs_in_its_copy(
    tree: Path, podman: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import IMAGE_MARKER, TEST_IMAGE

    write_config(tree, f"""\
        version: 1
        jobs:
          boxed:
            image: {TEST_IMAGE}
            matrix:
              n: ["1", "2"]
            artifacts: {{paths: [where.txt]}}
            steps:
              - run: cat /IMAGE_MARKER; pwd > where.txt; cat input.txt
    """)
    (tree / "input.txt").write_text("from the tree\n")
    assert ployd_run() == 0
    out = capsys.readouterr().out
    assert f"boxed (n=1) | {IMAGE_MARKER}" in out and "boxed (n=2) | from the tree" in out
    art = tree / ".ployd" / "artifacts"
    one = (art / "boxed (n=1)" / "where.txt").read_text().strip()
    two = (art / "boxed (n=2)" / "where.txt").read_text().strip()
    assert one != two and str(tree) not in (one, two)
    assert not (tree / "where.txt").exists()
