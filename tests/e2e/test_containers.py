"""`image:` end to end: `ployd serve`, its local agent (a process, which finds podman
and says so in its claims), a real git repository, steps in a podman container."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import IMAGE_MARKER, TEST_IMAGE, Podman

from .conftest import Harness

CONFIG = f"""\
version: 1
jobs:
  boxed:
    image: {{name: "{TEST_IMAGE}", options: {{shm_size: 256m}}}}
    retry: {{max: 0}}
    env: {{WHERE: in-the-box}}
    steps:
      - run: cat /IMAGE_MARKER; cat from-the-repo.txt; df -k /dev/shm | tail -n 1 > shm.txt
      - run: echo "$WHERE $((6*7))"; cat shm.txt
  missing:
    image: localhost/ployd-no-such-image:1
    retry: {{max: 0}}
    steps:
      - run: echo "$((6*9))"
"""


async def test_a_job_with_an_image_runs_in_its_container(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    podman: Podman,
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG, "from-the-repo.txt": "checked-out-file\n"})
    async with serve(agents=1) as h:
        h: Harness
        pid = await h.start(repo)
        p = await h.finished(pid)
        states = {j.name: j.state for j in p.jobs}
        log = h.log(pid, "boxed")
        assert states == {"boxed": "succeeded", "missing": "failed"}, log
        assert IMAGE_MARKER in log and "checked-out-file" in log
        assert "in-the-box 42" in log
        assert " 262144 " in log  # /dev/shm is the 256m the options asked for
        assert f"image: {TEST_IMAGE} present" in log
        missing = h.log(pid, "missing")
        assert "image: could not pull localhost/ployd-no-such-image:1: " in missing
        assert "\n54\n" not in missing
        attempt = h.job(pid, "missing").attempts[0]
        assert attempt.end_reason == "script_failure" and attempt.failed_step == 0
        left = podman.run("ps", "-a", "-q", "--filter", "label=ployd.agent=local-1").stdout
        assert left.strip() == ""
