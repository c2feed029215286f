"""What `ployd run` does around a job's steps, as the service's agents do: colours, the
failing lines and skip reasons of the summary, artifacts, caches, and a tree of its own
for each matrix child.

* **Colour** on a terminal (``--color auto``), never when ``NO_COLOR`` is set (to
  anything but ""), or ``TERM=dumb``; ``--color always|never`` decides otherwise.
* **Artifacts**: after a job's steps (also when it failed, not when it was cancelled)
  the files matching ``artifacts.paths`` are copied to ``.ployd/artifacts/JOB/`` in the
  directory `ployd run` runs in (the previous run's copy of that job is replaced).
* **Caches** live under ``$XDG_CACHE_HOME/ployd`` (default ``~/.cache/ployd``), one
  folder per working tree: the key (``hashFiles`` evaluated) is restored before the
  first step, exactly or the newest entry starting with a ``restore-keys`` prefix; after
  a successful job whose key missed, the paths are saved (a tar.gz, as the agent does).
* **Matrix children** each run in a copy of the tree (the files git lists: tracked and
  untracked but not ignored; every file when it is no git repository), so that
  children running at once do not write over each other.

Module-level imports stay light (`ployd` imports every command module).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from app.agent.runner import JobResult
    from app.core.config.model import Artifacts, Cache
    from app.core.dag import Node
    from app.core.states import JobState

Say = Callable[[str], None]  # one line into the job's prefixed output

# ---- colour --------------------------------------------------------------------------

_CODES = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35",
          "cyan": "36", "bold": "1", "dim": "2"}  # fmt: skip
_JOB_COLOURS = ("cyan", "magenta", "blue", "yellow", "green")
_STATE_COLOURS = {"succeeded": "green", "failed": "red", "timed_out": "red",
                  "skipped": "yellow", "cancelled": "yellow", "manual": "dim"}  # fmt: skip


def colour_wanted(choice: str, out: TextIO, environ: Mapping[str, str]) -> bool:
    if choice in ("always", "never"):
        return choice == "always"
    if environ.get("NO_COLOR", "") != "" or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


@dataclass(frozen=True)
class Palette:
    enabled: bool = False

    def paint(self, text: str, colour: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"

    def job(self, text: str, index: int) -> str:
        return self.paint(text, _JOB_COLOURS[index % len(_JOB_COLOURS)])

    def state(self, text: str, state: str) -> str:
        colour = _STATE_COLOURS.get(state)
        return self.paint(text, colour) if colour else text


# ---- the summary's failing lines and skip reasons ------------------------------------

FAILURE_LINES = 12


def failing_lines(lines: Sequence[str], n: int = FAILURE_LINES) -> list[str]:
    """The lines of the failed step that say why: the last ``n`` of its output, moved up
    so that its first error-looking line (``app.core.logscan``) is among them."""
    from app.core.logscan import first_error_line

    start = 0
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("▶ "):  # the runner's step header
            start = i + 1
            break
    step = [line for line in lines[start:] if line.strip()]
    while step and step[-1].startswith(("✗ ", "✓ ")):  # the runner's step footer
        step.pop()
    if len(step) <= n:
        return step
    err = first_error_line(step)
    if err is not None and err < len(step) - n:
        return [*step[err : err + n // 2], "…", *step[-(n - n // 2 - 1) :]]
    return step[-n:]


def skip_reason(name: str, nodes: Mapping[str, Node], states: Mapping[str, JobState]) -> str:
    """Why ``name`` did not run: the jobs it needs that did not succeed, or the pipeline
    being interrupted."""
    from app.core.states import JobState

    node = nodes[name]
    bad = [f"{d} {states[d].value}" for d in node.needs if d in states
           and states[d] is not JobState.SUCCEEDED]  # fmt: skip
    if bad:
        return "needs " + ", ".join(bad)
    return "the run was interrupted before it started"


# ---- artifacts -----------------------------------------------------------------------


def job_dir_name(job: str) -> str:
    """A job's name as one directory name (a matrix child's too)."""
    clean = job.replace("/", "_").replace("\0", "")
    return clean if clean not in ("", ".", "..") else "_"


def collect_artifacts(spec: Artifacts, workdir: Path, dest_root: Path, job: str, say: Say) -> Path:
    """Copy the files of ``workdir`` matching ``spec.paths`` to ``dest_root/JOB/``."""
    from app.agent.transfer import human_size, select_artifacts

    dest = dest_root / job_dir_name(job)
    chosen = select_artifacts(workdir, list(spec.paths))
    for message in chosen.refused:
        say(f"artifacts: refused {message}")
    if dest.exists():
        shutil.rmtree(dest)
    if not chosen.files:
        say(f"artifacts: no file matches {', '.join(spec.paths)}")
        return dest
    total = 0
    for rel, path, size, _sha in chosen.files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        total += size
    n = len(chosen.files)
    say(f"artifacts: {n} file{'s' if n != 1 else ''} ({human_size(total)}) in {dest}")
    return dest


# ---- caches --------------------------------------------------------------------------


def cache_root(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "ployd"


class LocalCache:
    """The cache entries of one working tree, as ``KEYHASH.tar.gz`` + ``KEYHASH.key``."""

    def __init__(self, root: Path, tree: Path, home: Path | None = None) -> None:
        tree_id = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:16]
        self.dir = root / "caches" / f"{tree.resolve().name}-{tree_id}"
        self.home = home or Path.home()

    def _path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.tar.gz"

    def _find(self, key: str, prefixes: Sequence[str]) -> tuple[str, Path] | None:
        exact = self._path(key)
        if exact.exists():
            return key, exact
        best: tuple[float, str, Path] | None = None
        for entry in self.dir.glob("*.key") if self.dir.is_dir() else ():
            saved = entry.read_text()
            archive = entry.with_suffix(".tar.gz")
            if archive.exists() and any(saved.startswith(p) for p in prefixes if p):
                at = archive.stat().st_mtime
                if best is None or at > best[0]:
                    best = (at, saved, archive)
        return (best[1], best[2]) if best is not None else None

    def restore(self, cache: Cache, workdir: Path, say: Say) -> tuple[str, bool] | None:
        """Before the first step: (evaluated key, exact hit), or None when the key cannot
        be evaluated (said why; the job runs without its cache)."""
        from app.agent.cachekey import CacheKeyError, short_key
        from app.agent.transfer import cache_key, extract_archive, human_size

        try:
            key = cache_key(workdir, cache.key)
        except CacheKeyError as e:
            say(f"cache: off for this run: {e}")
            return None
        found = self._find(key, cache.restore_keys)
        if found is None:
            more = "; restore-keys matched nothing" if cache.restore_keys else ""
            say(f"cache: miss for {short_key(key)}{more}")
            return key, False
        hit_key, archive = found
        t0 = time.monotonic()
        extract_archive(archive, list(cache.paths), workdir, self.home)
        how = "exact hit" if hit_key == key else f"restore key, for {short_key(key)}"
        size = human_size(archive.stat().st_size)
        took = time.monotonic() - t0
        say(f"cache: restored {short_key(hit_key)} ({how}) {size} in {took:.2f}s")
        return key, hit_key == key

    def save(self, cache: Cache, key: str, workdir: Path, say: Say) -> None:
        from app.agent.cachekey import short_key
        from app.agent.transfer import build_archive, human_size

        self.dir.mkdir(parents=True, exist_ok=True)
        dest = self._path(key)
        partial = dest.with_name(dest.name + f".{os.getpid()}.part")
        t0 = time.monotonic()
        missing = build_archive(list(cache.paths), workdir, self.home, partial)
        if len(missing) == len(cache.paths):
            partial.unlink()
            say(f"cache: not saved: none of {', '.join(cache.paths)} exists")
            return
        os.replace(partial, dest)
        dest.with_suffix("").with_suffix(".key").write_text(key)
        took = time.monotonic() - t0
        say(f"cache: saved {short_key(key)} {human_size(dest.stat().st_size)} in {took:.2f}s")


# ---- a tree of its own for each matrix child -----------------------------------------


def _listed_files(tree: Path) -> list[str] | None:
    """The files git shows in ``tree`` (tracked, and untracked unless ignored); None
    when it is no git working tree."""
    try:
        out = subprocess.run(
            ["git", "-C", str(tree), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return sorted({p for p in out.decode(errors="surrogateescape").split("\0") if p})


def copy_tree(tree: Path, dest: Path) -> Path:
    """A copy of the working tree at ``dest`` (``.git`` and ``.ployd/`` left out)."""
    files = _listed_files(tree)
    if files is None:
        shutil.copytree(tree, dest, symlinks=True, ignore=shutil.ignore_patterns(".git", ".ployd"))
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for rel in files:
        if rel == ".ployd" or rel.startswith(".ployd/"):
            continue
        src = tree / rel
        target = dest / rel
        if not src.exists() and not src.is_symlink():  # deleted, not yet staged
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)
    return dest


class Trees:
    """Where each job runs: the tree itself, or for a matrix child a copy of it, made
    under a scratch directory that is removed at the end of the run."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self._scratch: Path | None = None
        self._n = 0

    def for_job(self, child: bool) -> Path:
        if not child:
            return self.tree
        import tempfile

        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="ployd-run-"))
        self._n += 1
        return copy_tree(self.tree, self._scratch / f"child-{self._n}")

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def job_outcome(result: JobResult) -> str:
    """The step that failed, as the summary says it."""
    if result.failed_step is None:
        return ""
    step = result.steps[result.failed_step] if result.failed_step < len(result.steps) else None
    title = step.title if step else f"#{result.failed_step}"
    code = f", exit {result.exit_code}" if result.exit_code is not None else ""
    return f"step {result.failed_step + 1} '{title}'{code}"
