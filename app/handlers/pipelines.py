"""Starting pipelines: read the config at the commit, plan, store.

Which config is trusted is decided here, once: the `.ployd.yml` *at the commit being
tested* (for a pull request, its head). A pull request can therefore change its own
pipeline, as with GitHub Actions' `pull_request` event; what keeps that safe is that a
fork's pull request runs nothing until a maintainer says `/ployd ok-to-test`, and never
receives secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.adapters import local_git
from app.core.config.errors import ConfigError, ConfigInvalid
from app.core.config.loader import load_config
from app.core.expand import expand
from app.core.hardware import Catalog
from app.core.planner import JobPlan, plan_jobs
from app.core.triggers import Event, EventKind
from app.engine.engine import Engine, RepoRef

CONFIG_FILE = ".ployd.yml"


@dataclass(frozen=True)
class Started:
    pipeline_id: int | None  # None: the event starts no pipeline
    sha: str
    ref: str


def plan(text: str | None, event: Event, catalog: Catalog) -> tuple[JobPlan, ...] | None:
    """The jobs ``event`` starts under the config ``text`` (None: no config file, so no
    pipeline). Raises ``ConfigInvalid`` with every error."""
    if text is None:
        return None
    config = load_config(text, CONFIG_FILE, catalog)
    return plan_jobs(config, expand(config, catalog), event)


def start_local(
    engine: Engine, catalog: Catalog, repo_path: str, ref: str = "HEAD", actor: str = "api"
) -> Started:
    """Start a pipeline for a repository on this machine, at ``ref``.

    Raises ``local_git.LocalRepoError`` for a bad path or ref and ``ConfigInvalid`` when
    `.ployd.yml` is missing or invalid at that commit.
    """
    path = Path(repo_path).expanduser().resolve()
    full_ref, sha = local_git.resolve(path, ref)
    text = local_git.read_file(path, sha, CONFIG_FILE)
    if text is None:
        raise ConfigInvalid(
            [ConfigError(CONFIG_FILE, 1, 1, f"no {CONFIG_FILE} at {sha[:12]} in {path}")]
        )
    default = local_git.default_branch(path)
    plans = plan(text, Event(EventKind.API, ref=full_ref, sha=sha, default_branch=default), catalog)
    if plans is None:
        return Started(None, sha, full_ref)
    repo = RepoRef(forge="local", full_name=str(path), clone_url=path.as_uri())
    pid = engine.create_pipeline(repo, plans, ref=full_ref, sha=sha, trigger="api", actor=actor)
    return Started(pid, sha, full_ref)
