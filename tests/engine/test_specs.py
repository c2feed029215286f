"""What is stored in ``jobs.spec`` and sent to agents, pinned key by key and value by value."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from app.core.config.loader import load_config
from app.core.config.model import PlannedJob
from app.core.expand import expand
from app.core.hardware import Catalog
from app.engine.specs import agent_payload, job_spec
from app.store.models import Attempt, Job, Pipeline, Repository

CONFIG = """
version: 1
jobs:
  lint:
    steps:
      - run: ruff check .
  train:
    resources:
      cpu: 8
      disk: 100GB
    workload: train
    spot: never
    timeout: 2h
    image: python:3.11
    clean_machine: true
    env:
      A: "1"
    secrets: [WANDB_API_KEY, HF]
    retry:
      max: 3
      when: [timeout, script_failure, spot_interruption]
      exit_codes: [3, 137]
    cache:
      key: pip-${{ matrix.py }}
      paths: [~/.cache/pip]
      restore-keys: [pip-]
    artifacts:
      paths: ["out/**", "metrics.json"]
      expire_in: 7d
    matrix:
      py: ["3.11"]
    steps:
      - name: Install
        run: pip install -r requirements.txt
        env:
          PY: ${{ matrix.py }}
        timeout: 5m
        continue-on-error: true
      - run: |
          pytest -q
          echo done
"""

LINT: dict[str, Any] = {
    "steps": [
        {
            "title": "ruff check .",
            "run": "ruff check .",
            "env": {},
            "timeout_s": None,
            "continue_on_error": False,
        }
    ],
    "env": {},
    "secrets": [],
    "timeout_s": 1800,
    "retry": {
        "max": 2,
        "when": ["infrastructure", "spot_interruption"],
        "exit_codes": [],
        "capacity_wait_s": None,
    },
    "workload": "test",
    "spot": "auto",
    "image": None,
    "clean_machine": False,
    "disk_gb": None,
    "cache": None,
    "artifacts": None,
    "resources": None,
}

TRAIN: dict[str, Any] = {
    "steps": [
        {
            "title": "Install",
            "run": "pip install -r requirements.txt",
            "env": {"PY": "3.11"},
            "timeout_s": 300,
            "continue_on_error": True,
        },
        {
            "title": "pytest -q",
            "run": "pytest -q\necho done\n",
            "env": {},
            "timeout_s": None,
            "continue_on_error": False,
        },
    ],
    "env": {"A": "1"},
    "secrets": ["WANDB_API_KEY", "HF"],
    "timeout_s": 7200,
    "retry": {
        "max": 3,
        "when": ["script_failure", "spot_interruption", "timeout"],
        "exit_codes": [3, 137],
        "capacity_wait_s": None,
    },
    "workload": "train",
    "spot": "never",
    "image": "python:3.11",
    "clean_machine": True,
    "disk_gb": 100,
    "cache": {"key": "pip-3.11", "paths": ["~/.cache/pip"], "restore_keys": ["pip-"]},
    "artifacts": {"paths": ["out/**", "metrics.json"], "expire_in_s": 604800},
    # What agents are matched to (issue 13: `resources: {cpu: 8}` only to >= 8 CPUs).
    "resources": {"gpu": None, "cpu": 8, "memory_gb": None, "disk_gb": 100.0},
}


def planned() -> dict[str, PlannedJob]:
    return {j.base: j for j in expand(load_config(textwrap.dedent(CONFIG)), Catalog.default())}


def test_job_spec_is_the_stored_json_key_by_key() -> None:
    jobs = planned()
    lint, train = job_spec(jobs["lint"]), job_spec(jobs["train"])
    assert lint == LINT
    assert train == TRAIN
    # Same keys in the same order, and JSON as it is stored.
    assert list(train) == list(TRAIN)
    assert json.loads(json.dumps(train)) == train


def rows(spec: dict[str, Any], fork: bool) -> tuple[Pipeline, Job, Attempt]:
    repo = Repository(forge="github", full_name="acme/app", clone_url="https://x/acme/app.git")
    pipeline = Pipeline(id=7, repository=repo, sha="abc", ref="refs/heads/main", fork=fork)
    job = Job(id=11, name="train (py=3.11)", spec=spec, pipeline=pipeline)
    return pipeline, job, Attempt(id=13, number=2, job=job)


@pytest.mark.parametrize("fork", [False, True])
def test_agent_payload_from_the_stored_spec(fork: bool) -> None:
    pipeline, job, attempt = rows(json.loads(json.dumps(TRAIN)), fork)
    payload = agent_payload(pipeline, job, attempt, {"WANDB_API_KEY": "k"}).to_json()
    assert payload == {
        "pipeline_id": 7,
        "job_id": 11,
        "attempt_id": 13,
        "attempt_number": 2,
        "name": "train (py=3.11)",
        "forge": "github",
        "repo": "acme/app",
        "clone_url": "https://x/acme/app.git",
        "sha": "abc",
        "ref": "refs/heads/main",
        "workspace_key": "github-acme-app",
        "timeout_s": 7200,
        "env": {
            "CI": "true",
            "PLOYD": "true",
            "PLOYD_PIPELINE_ID": "7",
            "PLOYD_JOB": "train (py=3.11)",
            "PLOYD_JOB_ID": "11",
            "PLOYD_ATTEMPT": "2",
            "PLOYD_SHA": "abc",
            "PLOYD_REF": "refs/heads/main",
            "PLOYD_REPOSITORY": "acme/app",
            "A": "1",
        },
        "secrets": {"WANDB_API_KEY": "k"},
        "mask": [],
        "clone_auth": None,
        "steps": [{"index": i, **step} for i, step in enumerate(TRAIN["steps"])],
        "cache": {
            "key": "pip-3.11",
            "paths": ["~/.cache/pip"],
            "restore_keys": ["pip-"],
            "read": not fork,
            "write": not fork,
        },
        "artifacts": {"paths": ["out/**", "metrics.json"], "expire_in_s": 604800},
        "image": {"name": "python:3.11", "options": {}, "credentials": None},
        "gpus": 0,
        "fork": fork,
    }
    assert json.dumps(payload["steps"][0]) == json.dumps({"index": 0, **TRAIN["steps"][0]})


def test_agent_payload_of_an_empty_spec_uses_the_defaults() -> None:
    pipeline, job, attempt = rows({}, False)
    payload = agent_payload(pipeline, job, attempt, {}).to_json()
    assert payload["timeout_s"] == 1800
    assert payload["steps"] == []
    assert payload["cache"] is None
    assert payload["artifacts"] is None
    assert payload["env"]["PLOYD_JOB"] == "train (py=3.11)"


PRIVATE = """
version: 1
jobs:
  train:
    image:
      name: ghcr.io/acme/train:${{ matrix.py }}
      credentials: GHCR_LOGIN
      options: {shm_size: 2g, user: "1000"}
    secrets: [WANDB_API_KEY]
    matrix:
      py: ["3.11"]
    steps: [{run: train}]
"""


def private_spec() -> dict[str, Any]:
    (job,) = expand(load_config(textwrap.dedent(PRIVATE)), Catalog.default())
    return job_spec(job)


def test_an_image_with_credentials_is_stored_whole_with_its_matrix_expanded() -> None:
    spec = private_spec()
    assert spec["image"] == {
        "name": "ghcr.io/acme/train:3.11",
        "credentials": "GHCR_LOGIN",
        "options": {"user": "1000", "shm_size": "2g"},
    }
    from app.core.jobspec import StoredJobSpec

    assert StoredJobSpec.from_stored(spec).secret_names == ("WANDB_API_KEY", "GHCR_LOGIN")


def test_the_registry_login_goes_to_the_pull_only_masked_and_never_to_a_fork() -> None:
    secrets = {"WANDB_API_KEY": "k", "GHCR_LOGIN": "bot:ghp_s3cr3t"}
    pipeline, job, attempt = rows(private_spec(), False)
    payload = agent_payload(pipeline, job, attempt, dict(secrets), gpus=1)
    assert payload.secrets == {"WANDB_API_KEY": "k"}  # the login is no step's variable
    assert payload.image is not None
    assert payload.image.to_json() == {
        "name": "ghcr.io/acme/train:3.11",
        "options": {"user": "1000", "shm_size": "2g"},
        "credentials": {"username": "bot", "password": "ghp_s3cr3t"},
    }
    assert set(payload.mask) == {"bot:ghp_s3cr3t", "ghp_s3cr3t"}
    assert payload.gpus == 1
    pipeline, job, attempt = rows(private_spec(), True)
    fork = agent_payload(pipeline, job, attempt, {})
    assert fork.image is not None and fork.image.credentials is None and fork.mask == ()
    pipeline, job, attempt = rows(private_spec(), False)
    with pytest.raises(ValueError, match=r"the secret GHCR_LOGIN .* was not provided"):
        agent_payload(pipeline, job, attempt, {"WANDB_API_KEY": "k"})


def test_a_bare_token_is_a_password() -> None:
    from app.protocol import TOKEN_USER, RegistryCredentials

    login = RegistryCredentials.from_secret
    assert login("glpat-abc\n") == login(f"{TOKEN_USER}:glpat-abc")
    assert login("user:pa:ss").password == "pa:ss"
