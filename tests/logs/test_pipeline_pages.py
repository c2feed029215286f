"""The pipelines list and a pipeline's page through real HTTP: filters, paging, the
graph of jobs with their figures and buttons, bad filters named (400), and that they
are the operators' only."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.logs.world import LogWorld, one_job

ADMIN = {"Authorization": "Bearer root-token"}
GRAPH = """version: 1
jobs:
  lint:
    retry: {max: 0}
    steps: [{run: 'true'}]
  train:
    hardware: l4
    needs: [lint]
    steps: [{run: 'true'}]
  report:
    needs: [train]
    steps: [{run: 'true'}]
"""


async def get(w: LogWorld, path: str) -> tuple[int, str]:
    async with w.http.get(w.url + path, headers=ADMIN, allow_redirects=False) as r:
        return r.status, await r.text()


def ids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr class="pipeline" id="p-(\d+)">', page)]


async def test_the_list_filters_and_pages(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        a = w.pipeline(forge="github", tenant="1", repo="acme/app")
        b = w.pipeline(forge="gitlab", tenant="2", repo="ml/models")
        c = w.pipeline(forge="local", repo="acme/app")
        claimed = await w.claim()  # the oldest pipeline's job first
        w.finish(claimed, "failed", failed_step=0, code=1)
        status, page = await get(w, "/pipelines")
        assert status == 200 and ids(page) == [c, b, a]
        assert "acme/app" in page and "ml/models" in page
        assert (await get(w, "/pipelines?forge=gitlab"))[1].count('class="pipeline"') == 1
        assert ids((await get(w, "/pipelines?repo=acme/app"))[1]) == [c, a]
        assert ids((await get(w, "/pipelines?state=failed"))[1]) == [a]
        assert ids((await get(w, "/pipelines?branch=main"))[1]) == [c, b, a]
        assert ids((await get(w, "/pipelines?branch=dev"))[1]) == []
        first = (await get(w, "/pipelines?limit=2"))[1]
        assert ids(first) == [c, b]
        older = re.search(r'href="(/pipelines\?[^"]*)" id="older"', first)
        assert older is not None
        second = (await get(w, older.group(1).replace("&amp;", "&")))[1]
        assert ids(second) == [a] and 'id="older"' not in second
        for bad, field in (
            ("state=nope", "state"),
            ("forge=svn", "forge"),
            ("before=x", "before"),
            ("limit=0", "limit"),
            ("limit=9999", "limit"),
        ):
            status, text = await get(w, f"/pipelines?{bad}")
            assert status == 400 and f"400: {field}" in text, bad
        # Not signed in: to the sign-in page, which comes back here.
        async with w.http.get(w.url + "/pipelines", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login?next=/pipelines"
        async with w.http.get(w.url + f"/pipelines/{a}", allow_redirects=False) as r:
            assert r.status == 303


async def test_the_pipeline_page_draws_the_graph_with_buttons(
    log_world: Callable[..., Any],
) -> None:
    async with log_world(admin_token="root-token") as w:
        pid = w.pipeline(GRAPH, forge="github", tenant="3", repo="acme/app")
        lint = await w.claim(instance_type="c7i.large", price_hourly=0.1)
        w.finish(lint, "failed", failed_step=0, code=1)
        status, page = await get(w, f"/pipelines/{pid}")
        assert status == 200
        svg = page.split('<svg class="dag"', 1)[1].split("</svg>", 1)[0]
        assert svg.count('class="node"') == 3 and svg.count("<path") == 2
        for name in ("lint", "train", "report"):
            assert f'href="/runs/{w.job_id(pid, name)}"' in svg
        assert "l4" in svg and "c7i.large" in svg
        assert "skipped" in page and "a job it needs did not succeed" in page
        job = w.job_id(pid, "lint")
        assert f'id="retry-{job}"' in page and "https://example.invalid/acme/app/commit/" in page
        async with w.http.post(
            f"{w.url}/pipelines/{pid}/jobs/{job}/retry",
            headers={**ADMIN, "Origin": "https://evil.example"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
        async with w.http.post(
            f"{w.url}/pipelines/{pid}/jobs/{job}/retry", headers=ADMIN, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == f"/pipelines/{pid}"
        _, page = await get(w, f"/pipelines/{pid}")
        assert f'id="cancel-{job}"' in page and 'id="cancel-pipeline"' in page
        async with w.http.post(
            f"{w.url}/pipelines/{pid}/cancel", headers=ADMIN, allow_redirects=False
        ) as r:
            assert r.status == 303
        _, page = await get(w, f"/pipelines/{pid}")
        assert 'id="cancel-pipeline"' not in page and "cancelled" in page
        status, _ = await get(w, "/pipelines/99999")
        assert status == 404
        other = w.job_id(w.pipeline(one_job()))
        async with w.http.post(
            f"{w.url}/pipelines/{pid}/jobs/{other}/retry", headers=ADMIN, allow_redirects=False
        ) as r:
            assert r.status == 404


async def test_sign_in_goes_back_where_it_was_asked(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        form = {"token": "root-token", "next": "/pipelines?state=failed"}
        async with w.http.post(w.url + "/login", data=form, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/pipelines?state=failed"
        form["next"] = "//evil.example/x"
        async with w.http.post(w.url + "/login", data=form, allow_redirects=False) as r:
            assert r.headers["Location"] == "/"
        async with w.http.get(w.url + "/login?next=/runs/1") as r:
            assert r.status == 401 and 'name="next" value="/runs/1"' in await r.text()
