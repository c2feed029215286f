"""PLOYD_MAX_JOBS_PER_PIPELINE through the API of a running server: a file over the
limit is refused at validation (422 naming the matrix) and stores nothing; one within
it is accepted whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.store.models import Pipeline

from .conftest import Harness

SIDE = ", ".join(str(i) for i in range(10))


def matrices(n: int) -> str:
    return "version: 1\njobs:\n" + "".join(
        f"  m{j}:\n    matrix: {{a: [{SIDE}], b: [{SIDE}]}}\n    steps: [{{run: x}}]\n"
        for j in range(n)
    )


async def test_the_api_refuses_a_pipeline_over_the_limit_and_accepts_one_within(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    over, _ = make_repo({".ployd.yml": matrices(4)})  # 400 jobs
    within, _ = make_repo({".ployd.yml": matrices(3)})  # 300 jobs
    async with serve(agents=0, max_jobs_per_pipeline=300) as h:
        h: Harness
        status, body = await h.post("/api/v1/pipelines", {"repo": str(over)})
        assert status == 422, body
        (err,) = body["errors"]
        assert (err["file"], err["line"], err["column"]) == (".ployd.yml", 13, 13)  # m3's matrix
        assert err["message"].startswith(
            "matrix of job 'm3' (100 children) takes the pipeline to 400 jobs, over the "
            "limit of 300 jobs per pipeline (PLOYD_MAX_JOBS_PER_PIPELINE)"
        )
        with h.engine.db.session() as s:
            assert s.query(Pipeline).count() == 0
        pid = await h.start(within)
        p = h.pipeline(pid)
        assert len(p.jobs) == 300 and all(j.state == "queued" for j in p.jobs)
