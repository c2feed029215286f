"""Jobs with ``image:``: steps run in a container of the image, with podman for real
(images made here from busybox-static: ``podman`` fixture in tests/conftest.py), the
command lines as data for docker and podman, and ECR logins against moto."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from app.agent import container, ecr, runner
from app.agent.container import ContainerLauncher, ContainerSpec, Runtime
from app.protocol import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    ImagePayload,
    RegistryCredentials,
)
from tests.conftest import IMAGE_MARKER, TEST_BASH_IMAGE, TEST_IMAGE, Podman
from tests.fakes.registry import serve_registry

ROOT = Path(__file__).resolve().parents[2]
PODMAN = Runtime("podman", "/usr/bin/podman")
DOCKER = Runtime("docker", "/usr/bin/docker")


# --- command lines, as data -----------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "machine", "want"),
    [(0, 8, []), (1, 8, [0]), (2, 8, [0, 1]), (8, 8, list(range(8))), (4, 2, [0, 1])],
)
def test_a_job_gets_the_first_n_of_the_agents_gpus(
    count: int, machine: int, want: list[int]
) -> None:
    assert container.gpu_indices(count, machine) == want


def test_an_agent_given_a_subset_of_gpus_hands_out_those() -> None:
    assert container.gpu_indices(2, 8, "4,5,6,7") == [4, 5]
    assert container.gpu_indices(1, 8, "GPU-uuid-1") == [0]  # not indices: all of them
    assert container.gpu_indices(2, 8, "") == []  # CUDA's "no GPUs": an agent without a share


@pytest.mark.parametrize(
    ("indices", "docker", "podman"),
    [
        ((), [], []),
        ((0,), ["--gpus", '"device=0"'], ["--device", "nvidia.com/gpu=0"]),
        (
            (0, 1),
            ["--gpus", '"device=0,1"'],
            ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=1"],
        ),
        (
            (4, 5, 6),
            ["--gpus", '"device=4,5,6"'],
            [
                "--device",
                "nvidia.com/gpu=4",
                "--device",
                "nvidia.com/gpu=5",
                "--device",
                "nvidia.com/gpu=6",
            ],
        ),
    ],
)
def test_gpu_flags_for_n_of_m_gpus(
    indices: tuple[int, ...], docker: list[str], podman: list[str]
) -> None:
    assert container.gpu_args("docker", indices) == docker
    assert container.gpu_args("podman", indices) == podman


def test_two_of_eight_gpus_give_exactly_this_run_command_on_each_runtime() -> None:
    spec = ContainerSpec(
        name="ployd-a1-7",
        image="ghcr.io/acme/train:3",
        workdir="/w/ws",
        mounts=(("/w/ws", "/w/ws"), ("/home/ci/.cache/pip", "/home/ci/.cache/pip")),
        labels={"ployd.agent": "a1", "ployd.attempt": "7"},
        user="1000:1000",
        entrypoint="",
        shm_size="2g",
        gpus=tuple(container.gpu_indices(2, 8)),
    )
    common = [
        "run",
        "-i",
        "--rm",
        "--pull",
        "never",
        "--name",
        "ployd-a1-7",
        "--label",
        "ployd.agent=a1",
        "--label",
        "ployd.attempt=7",
        "--mount",
        "type=bind,source=/w/ws,destination=/w/ws",
        "--mount",
        "type=bind,source=/home/ci/.cache/pip,destination=/home/ci/.cache/pip",
        "--workdir",
        "/w/ws",
        "--user",
        "1000:1000",
        "--shm-size",
        "2g",
        "--entrypoint",
        "",
    ]
    tail = ["ghcr.io/acme/train:3", "sh", "-c", container.KEEPALIVE]
    assert DOCKER.run_argv(spec) == ["/usr/bin/docker", *common, "--gpus", '"device=0,1"', *tail]
    assert PODMAN.run_argv(spec) == [
        "/usr/bin/podman",
        *common,
        "--device",
        "nvidia.com/gpu=0",
        "--device",
        "nvidia.com/gpu=1",
        *tail,
    ]


def test_env_goes_by_name_only_and_logins_use_the_jobs_own_auth_file() -> None:
    argv = PODMAN.exec_argv("c1", "/w", ["TOKEN"], container.BASH, "echo $TOKEN")
    assert argv == [
        "/usr/bin/podman",
        "exec",
        "--workdir",
        "/w",
        "-e",
        "PLOYD_CTR_NAMES",
        "-e",
        "PLOYD_CTR_E_TOKEN",
        "c1",
        "sh",
        "-c",
        container.PRELUDE,
        "ployd-step",
        "bash",
        "--noprofile",
        "--norc",
        "-eo",
        "pipefail",
        "-c",
        "echo $TOKEN",
    ]
    assert PODMAN.login_argv("ghcr.io", "bot", "/tmp/a") == [
        "/usr/bin/podman",
        "login",
        "--authfile",
        "/tmp/a/auth.json",
        "--username",
        "bot",
        "--password-stdin",
        "ghcr.io",
    ]
    assert DOCKER.login_argv("ghcr.io", "bot", "/tmp/a") == [
        "/usr/bin/docker",
        "--config",
        "/tmp/a",
        "login",
        "--username",
        "bot",
        "--password-stdin",
        "ghcr.io",
    ]
    assert PODMAN.pull_argv("x:1", "/tmp/a") == [
        "/usr/bin/podman",
        "pull",
        "--authfile",
        "/tmp/a/auth.json",
        "x:1",
    ]
    assert DOCKER.pull_argv("x:1", "/tmp/a") == [
        "/usr/bin/docker",
        "--config",
        "/tmp/a",
        "pull",
        "x:1",
    ]
    assert DOCKER.pull_argv("x:1") == ["/usr/bin/docker", "pull", "x:1"]


@pytest.mark.parametrize(
    ("name", "registry", "qualified"),
    [
        ("python:3.12", "docker.io", "docker.io/library/python:3.12"),
        ("acme/train:3", "docker.io", "docker.io/acme/train:3"),
        ("docker.io/library/python:3", "docker.io", "docker.io/library/python:3"),
        ("ghcr.io/acme/train:3", "ghcr.io", "ghcr.io/acme/train:3"),
        ("localhost/ployd-test:1", "localhost", "localhost/ployd-test:1"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "127.0.0.1:5000/a/b"),
        ("nvcr.io/nvidia/pytorch:24.05-py3", "nvcr.io", "nvcr.io/nvidia/pytorch:24.05-py3"),
    ],
)
def test_registry_of_an_image_name(name: str, registry: str, qualified: str) -> None:
    assert container.registry_of(name) == registry
    assert container.qualified(name) == qualified


def test_ecr_registries_are_recognised_with_their_region() -> None:
    assert container.ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com") == "eu-west-1"
    assert container.ecr_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com") == (
        "us-gov-west-1"
    )
    assert container.ecr_region("ghcr.io") is None
    assert container.ecr_region("evil.com/123456789012.dkr.ecr.eu-west-1.amazonaws.com") is None


# --- running steps in a container, for real -------------------------------------------


class Run:
    """A job's run through the runner with a ContainerLauncher: its log and result."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.states: list[tuple[int, str]] = []
        self.running = asyncio.Event()

    @property
    def log(self) -> str:
        return "".join(self.chunks)

    async def on_log(self, text: str) -> None:
        self.chunks.append(text)

    async def on_step(self, index: int, state: str, _code: int | None) -> None:
        self.states.append((index, state))
        if state == RUNNING:
            self.running.set()


def launcher(image: str, ws: Path, **kw: Any) -> ContainerLauncher:
    runtime = container.detect_runtime()
    assert runtime is not None and runtime.name == "podman"
    name = kw.pop("name", None) or container.container_name("test", uuid.uuid4().hex[:8])
    return ContainerLauncher(
        runtime,
        ImagePayload(image, kw.pop("options", {}), kw.pop("credentials", None)),
        name=name,
        workspace=ws,
        agent_id=kw.pop("agent_id", "test-agent"),
        attempt="1",
        **kw,
    )


async def run_job(
    steps: list[runner.StepSpec], ws: Path, lr: ContainerLauncher, **kw: Any
) -> tuple[runner.JobResult, Run]:
    r = Run()
    result = await runner.run_steps(
        steps, cwd=ws, on_log=r.on_log, on_step=r.on_step, launcher=lr, kill_grace_s=1.0, **kw
    )
    return result, r


def step(i: int, script: str, **kw: Any) -> runner.StepSpec:
    return runner.StepSpec(index=i, title=kw.pop("title", f"step {i}"), run=script, **kw)


async def test_steps_run_in_the_image_with_the_workspace_env_and_secrets(
    podman: Podman, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "from-the-repo.txt").write_text("checked out\n")
    env = {
        "GREETING": "two words\nand a line",
        # Names the runtime client reads: they reach the step, never podman itself.
        "CONTAINERS_CONF": "/nonexistent/containers.conf",
        "LD_PRELOAD": "/nonexistent/evil.so",
    }
    lr = launcher(TEST_IMAGE, ws, forward=[*env, "API_TOKEN"])
    result, r = await run_job(
        [
            step(0, "cat /IMAGE_MARKER; pwd; cat from-the-repo.txt; echo made > made.txt"),
            step(
                1,
                'cat made.txt; echo "[$GREETING]"; echo "$CONTAINERS_CONF $LD_PRELOAD"; '
                'echo "token=$API_TOKEN"; echo "step=$STEP_ONLY"; '
                "env | grep -c PLOYD_CTR || true",
                env={"STEP_ONLY": "s1"},
            ),
        ],
        ws,
        lr,
        env=env,
        secrets={"API_TOKEN": "tok-s3cr3t-123"},
    )
    assert result.result == SUCCEEDED, r.log
    log = r.log
    assert IMAGE_MARKER in log  # a file only the image has
    assert f"{ws}\nchecked out\n" in log  # the workspace, mounted at its path, is the cwd
    assert "made\n" in log  # what step 1 wrote is there in step 2
    assert (ws / "made.txt").read_text() == "made\n"  # ... and on the host
    assert "[two words\nand a line]" in log
    assert "/nonexistent/containers.conf /nonexistent/evil.so" in log
    assert "token=***" in log and "tok-s3cr3t-123" not in log  # arrived, masked
    assert "step=s1" in log
    assert "\n0\n" in log  # no PLOYD_CTR_* helper variable is left for the step
    assert f"image: {TEST_IMAGE} present" in log
    assert "(podman, sh)" in log  # busybox: no bash, steps run with sh -e
    assert not podman.exists(lr.name)  # removed at the end of the job


async def test_the_secret_never_is_on_a_command_line(podman: Podman, tmp_path: Path) -> None:
    lr = launcher(TEST_IMAGE, tmp_path, forward=["API_TOKEN"])
    spec = lr.launch(
        step(0, "true"), {"API_TOKEN": "tok-s3cr3t-123", "PATH": "/bin"}, str(tmp_path)
    )
    assert not any("tok-s3cr3t-123" in a for a in spec.argv)
    assert spec.env["PLOYD_CTR_E_API_TOKEN"] == "tok-s3cr3t-123"
    assert "API_TOKEN" not in spec.env  # not under a name the client could read
    assert spec.env["CONTAINERS_CONF"] == os.environ["CONTAINERS_CONF"]  # the agent's own


async def test_an_image_with_bash_runs_steps_with_bash_and_pipefail(
    podman: Podman, tmp_path: Path
) -> None:
    lr = launcher(TEST_BASH_IMAGE, tmp_path)
    result, r = await run_job(
        [step(0, 'echo "bash=${BASH_VERSION:+yes}"'), step(1, "false | true")], tmp_path, lr
    )
    assert "(podman, bash)" in r.log
    assert "bash=yes" in r.log
    assert result.result == FAILED and result.failed_step == 1  # -o pipefail


async def test_an_unknown_image_fails_the_first_step_saying_why(
    podman: Podman, tmp_path: Path
) -> None:
    missing = f"localhost/ployd-no-such-image:{uuid.uuid4().hex[:8]}"
    lr = launcher(missing, tmp_path)
    result, r = await run_job([step(0, "echo never"), step(1, "echo never")], tmp_path, lr)
    assert result.result == FAILED and result.failed_step == 0
    assert [s.state for s in result.steps] == [FAILED, "skipped"]
    assert f"image: pulling {missing}" in r.log
    assert f"image: could not pull {missing}: " in r.log
    assert "never\n" not in r.log


async def test_no_runtime_fails_the_first_step_saying_why(tmp_path: Path) -> None:
    lr = ContainerLauncher(None, ImagePayload("python:3.12"), name="x", workspace=tmp_path)
    result, r = await run_job([step(0, "true")], tmp_path, lr)
    assert result.result == FAILED
    assert "image: python:3.12: this machine has no container runtime" in r.log


async def test_a_step_timeout_and_a_cancel_stop_the_step_in_the_container(
    podman: Podman, tmp_path: Path
) -> None:
    lr = launcher(TEST_IMAGE, tmp_path)
    result, r = await run_job(
        [
            step(0, "sleep 1000", timeout_s=1.0, continue_on_error=True),
            step(1, "ps -o pid,args | grep -c '[s]leep 1000' || true"),
        ],
        tmp_path,
        lr,
    )
    assert [s.state for s in result.steps] == [TIMED_OUT, SUCCEEDED], r.log
    assert "\n0\n" in r.log  # the sleep is gone
    cancel = asyncio.Event()
    lr = launcher(TEST_IMAGE, tmp_path, cancel=cancel)
    job = asyncio.ensure_future(run_job([step(0, "sleep 1000")], tmp_path, lr, cancel=cancel))
    for _ in range(200):  # the step is reported running before its process starts
        if lr._proc is not None and podman.run("top", lr.name, "args", check=False).stdout.count(
            "sleep 1000"
        ):
            break
        await asyncio.sleep(0.05)
    cancel.set()
    result, r = await asyncio.wait_for(job, 30)
    assert result.result == CANCELLED, r.log
    assert not podman.exists(lr.name)


AGENT = r"""
import asyncio, sys
from app.agent import container, runner
from app.protocol import ImagePayload

async def main():
    rt = container.detect_runtime()
    lr = container.ContainerLauncher(rt, ImagePayload(sys.argv[1]), name=sys.argv[2],
                                     workspace=sys.argv[3], agent_id="killed-agent")
    async def log(text):
        if "▶" in text:
            print("running", flush=True)
    await runner.run_steps([runner.StepSpec(0, "s", "sleep 1000 & sleep 1000")],
                           cwd=sys.argv[3], on_log=log, launcher=lr)

asyncio.run(main())
"""


async def test_killing_the_agent_leaves_no_container_and_no_process_of_the_step(
    podman: Podman, tmp_path: Path, wait_gone: Callable[..., bool]
) -> None:
    name = container.container_name("killed", uuid.uuid4().hex[:8])
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AGENT,
        TEST_IMAGE,
        name,
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert agent.stdout is not None
    assert await asyncio.wait_for(agent.stdout.readline(), 60) == b"running\n"
    pids: list[int] = []
    loop = asyncio.get_running_loop()
    # Deadlines, not counts: under load podman takes seconds to show and to remove.
    deadline = loop.time() + 60
    while loop.time() < deadline:  # the exec'd step shows in `podman top` after it starts
        top = podman.run("top", name, "hpid", "args", check=False).stdout.splitlines()[1:]
        pids = [int(line.split()[0]) for line in top if "sleep 1000" in line]
        if len(pids) == 2:
            break
        await asyncio.sleep(0.05)  # polling podman's view of another process tree
    assert len(pids) == 2, pids
    agent.send_signal(signal.SIGKILL)
    await agent.wait()
    # (the container's main process sees the agent's pipe close, then podman stops it)
    assert all([await asyncio.to_thread(wait_gone, p, 60.0) for p in pids])
    deadline = loop.time() + 60
    while podman.exists(name) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert not podman.exists(name)


async def test_an_agent_removes_the_containers_a_killed_agent_of_its_name_left(
    podman: Podman,
) -> None:
    agent = f"crashed-{uuid.uuid4().hex[:6]}"
    left = podman.run("run", "-d", "--label", f"ployd.agent={agent}", TEST_IMAGE, "sleep", "1000")
    other = podman.run(
        "run", "-d", "--label", "ployd.agent=someone-else", TEST_IMAGE, "sleep", "1000"
    )
    runtime = container.detect_runtime()
    assert runtime is not None
    try:
        removed = await container.cleanup(runtime, agent)
        assert [c[:12] for c in removed] == [left.stdout.strip()[:12]]
        assert not podman.exists(left.stdout.strip())
        assert podman.exists(other.stdout.strip())
    finally:
        podman.run("rm", "-f", other.stdout.strip(), check=False)


def test_the_runtime_is_found_and_chosen(podman: Podman) -> None:
    found = container.detect_runtime()
    assert found is not None and found.name == "podman"
    assert container.detect_runtime({**os.environ, "PLOYD_CONTAINER_RUNTIME": "none"}) is None
    assert container.detect_runtime({**os.environ, "PLOYD_CONTAINER_RUNTIME": "lxc"}) is None
    # A docker client with no daemon cannot run containers (here: no daemon, or none at all).
    assert container.detect_runtime({**os.environ, "PLOYD_CONTAINER_RUNTIME": "docker"}) is None
    assert container.detect_runtime({**os.environ, "PATH": "/nonexistent"}) is None


# --- pulling: once per machine, private registries --------------------------------------


@asynccontextmanager
async def private_registry(
    podman: Podman, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, str]]:
    """A registry on loopback that wants bot:pw, serving a fresh image; its name."""
    async with serve_registry({"bot": "pw-s3cr3t"}) as reg:
        conf = tmp_path / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
        monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
        name = reg.add_image("ployd/pulled", uuid.uuid4().hex[:10], podman.rootfs_tar.read_bytes())
        try:
            yield reg, name
        finally:
            podman.run("rmi", "-f", name, check=False)


async def test_an_image_is_pulled_once_with_the_jobs_credentials_in_its_own_auth_file(
    podman: Podman, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    async with private_registry(podman, tmp_path, monkeypatch) as (reg, name):
        creds = RegistryCredentials("bot", "pw-s3cr3t")
        first, r1 = await run_job(
            [step(0, "cat /IMAGE_MARKER")],
            tmp_path,
            launcher(name, tmp_path, credentials=creds),
            mask=["pw-s3cr3t"],
        )
        assert first.result == SUCCEEDED, r1.log
        assert f"image: pulling {name}\n" in r1.log
        assert f"image: pulled {name} (" in r1.log and "s)\n" in r1.log  # size and time
        assert IMAGE_MARKER in r1.log
        assert reg.pulls("ployd/pulled") == 1
        assert list(temp.iterdir()) == []  # the job's auth file is gone with its directory
        second, r2 = await run_job(
            [step(0, "cat /IMAGE_MARKER")], tmp_path, launcher(name, tmp_path, credentials=creds)
        )
        assert second.result == SUCCEEDED, r2.log
        assert f"image: {name} present" in r2.log and "pulling" not in r2.log
        assert reg.pulls("ployd/pulled") == 1  # not pulled again
    default_auth = Path(os.environ.get("XDG_RUNTIME_DIR", "/run/containers/0")) / "auth.json"
    for auth in (
        default_auth,
        Path("/run/containers/0/auth.json"),
        Path.home() / ".docker/config.json",
    ):
        assert not auth.exists() or reg.host not in auth.read_text()


async def test_bad_or_missing_registry_credentials_fail_the_first_step_clearly(
    podman: Podman, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with private_registry(podman, tmp_path, monkeypatch) as (reg, name):
        bad = launcher(name, tmp_path, credentials=RegistryCredentials("bot", "wrong"))
        result, r = await run_job([step(0, "true")], tmp_path, bad)
        assert result.result == FAILED
        assert f"image: could not log in to {reg.host}: " in r.log
        result, r = await run_job([step(0, "true")], tmp_path, launcher(name, tmp_path))
        assert result.result == FAILED
        assert f"image: could not pull {name}: " in r.log
        assert reg.pulls("ployd/pulled") == 0


# --- ECR through the instance role ------------------------------------------------------


@asynccontextmanager
async def fake_imds(role: str | None = "ployd-runner") -> AsyncIterator[str]:
    """IMDSv2 serving an instance role's credentials (moto takes any)."""

    async def token(request: web.Request) -> web.Response:
        if "X-aws-ec2-metadata-token-ttl-seconds" not in request.headers:
            return web.Response(status=400)
        return web.Response(text="imds-session")

    async def meta(request: web.Request) -> web.Response:
        if request.headers.get("X-aws-ec2-metadata-token") != "imds-session":
            return web.Response(status=401)
        path = request.match_info["path"]
        if role is None:
            return web.Response(status=404)
        if path == "iam/security-credentials/":
            return web.Response(text=role)
        if path == f"iam/security-credentials/{role}":
            return web.json_response(
                {
                    "Code": "Success",
                    "AccessKeyId": "ASIAFAKE",
                    "SecretAccessKey": "fake-secret",
                    "Token": "fake-session-token",
                    "Expiration": "2099-01-01T00:00:00Z",
                }
            )
        return web.Response(status=404)

    app = web.Application()
    app.router.add_put("/latest/api/token", token)
    app.router.add_get("/latest/meta-data/{path:.*}", meta)
    run = web.AppRunner(app, access_log=None)
    await run.setup()
    site = web.TCPSite(run, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{run.addresses[0][1]}"
    finally:
        await run.cleanup()


async def test_an_ecr_login_comes_from_the_instance_role_via_moto(moto_server: str) -> None:
    async with fake_imds() as imds:
        creds = await ecr.login("eu-west-1", imds_url=imds, endpoint=moto_server)
    assert creds == RegistryCredentials("AWS", "123456789012-auth-token")  # moto's token


async def test_an_ecr_image_without_credentials_logs_in_through_the_role(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", moto_server)
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/train:3"
    async with fake_imds() as imds:
        lr = ContainerLauncher(
            PODMAN, ImagePayload(image), name="x", workspace=tmp_path, imds_url=imds
        )
        r = Run()
        got = await lr._credentials(runner.LogStream(r.on_log))
    assert got == RegistryCredentials("AWS", "123456789012-auth-token")
    given = ContainerLauncher(
        PODMAN,
        ImagePayload(image, credentials=RegistryCredentials("u", "p")),
        name="x",
        workspace=tmp_path,
    )
    assert await given._credentials(runner.LogStream(r.on_log)) == RegistryCredentials("u", "p")


async def test_no_instance_role_is_a_clear_ecr_error() -> None:
    async with fake_imds(role=None) as imds:
        with pytest.raises(ecr.EcrError, match="no instance role"):
            await ecr.login("eu-west-1", imds_url=imds, endpoint="http://127.0.0.1:9/")
    with pytest.raises(ecr.EcrError, match="instance metadata cannot be reached"):
        await ecr.login("eu-west-1", imds_url="http://127.0.0.1:9", endpoint="http://127.0.0.1:9/")


def test_the_signature_is_botocores() -> None:
    """Signature Version 4 as botocore computes it, for the same request and time."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = datetime.datetime(2024, 5, 17, 12, 34, 56, tzinfo=datetime.UTC)
    url = "https://api.ecr.eu-west-1.amazonaws.com/"
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": ecr.TARGET}
    creds = ecr.AwsCredentials("ASIAFAKE", "fake-secret", "fake-session-token")
    ours = ecr.sign(
        "POST",
        url,
        region="eu-west-1",
        service="ecr",
        credentials=creds,
        body=b"{}",
        headers=base,
        now=now,
    )
    request = AWSRequest(method="POST", url=url, data=b"{}", headers=dict(base))
    request.headers["Host"] = "api.ecr.eu-west-1.amazonaws.com"
    request.headers["X-Amz-Date"] = "20240517T123456Z"
    request.headers["X-Amz-Security-Token"] = "fake-session-token"
    request.context["timestamp"] = "20240517T123456Z"
    signer = SigV4Auth(
        Credentials("ASIAFAKE", "fake-secret", "fake-session-token"), "ecr", "eu-west-1"
    )
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    assert ours["Authorization"].endswith(f"Signature={signature}")
    assert ours["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=ASIAFAKE/20240517/eu-west-1/ecr/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, "
    )


async def test_home_cache_paths_are_mounted_from_the_jobs_home(
    podman: Podman, tmp_path: Path
) -> None:
    home, ws = tmp_path / "home", tmp_path / "ws"
    ws.mkdir()
    lr = launcher(TEST_IMAGE, ws, home=home, cache_paths=["~/.cache/pip", ".venv", "/tmp/x"])
    assert lr.spec().mounts == (
        (str(ws), str(ws)),
        (str(home / ".cache/pip"), str(home / ".cache/pip")),
        ("/tmp/x", "/tmp/x"),
    )
    result, r = await run_job(
        [step(0, 'echo "$HOME"; echo wheel > ~/.cache/pip/kept; mkdir -p .venv')], ws, lr
    )
    assert result.result == SUCCEEDED, r.log
    assert f"\n{home}\n" in r.log  # HOME is the job's home, where `~/` caches live
    assert (home / ".cache/pip/kept").read_text() == "wheel\n"  # saved from the host after
