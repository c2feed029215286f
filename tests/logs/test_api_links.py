"""Every API object carries its ``web_url`` (and a job its ``signed_url``), and they
open the pages they name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.core.links import DEFAULT_TTL_S, verify_job
from app.core.weblinks import signed_job_url
from tests.logs.world import one_job

ADMIN = {"Authorization": "Bearer root-token"}


async def test_every_api_object_links_to_its_page(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        pid = w.pipeline(one_job(), forge="github", tenant="5", repo="acme/app")
        c = await w.claim()
        w.log(c, "hello\n")
        w.finish(c, "failed", failed_step=0, code=1)
        job = w.job_id(pid)
        base = w.services.settings.base_url
        async with w.http.get(f"{w.url}/api/v1/pipelines/{pid}", headers=ADMIN) as r:
            body = await r.json()
        assert body["web_url"] == f"{base}/pipelines/{pid}"
        (j,) = body["jobs"]
        assert j["web_url"] == f"{base}/runs/{job}"
        assert j["signed_url"].startswith(f"{base}/runs/{job}?t=")
        async with w.http.get(f"{w.url}/api/v1/jobs/{job}", headers=ADMIN) as r:
            body = await r.json()
        assert body["web_url"] == f"{base}/runs/{job}"
        assert [a["web_url"] for a in body["attempts"]] == [f"{base}/runs/{job}?attempt=1"]
        async with w.http.get(f"{w.url}/api/v1/jobs/{job}/attempts", headers=ADMIN) as r:
            assert (await r.json())["attempts"][0]["web_url"].endswith("?attempt=1")
        async with w.http.get(f"{w.url}/api/v1/pipelines", headers=ADMIN) as r:
            assert (await r.json())["pipelines"][0]["web_url"] == f"{base}/pipelines/{pid}"
        # The signed link opens the job's page without the admin token; the plain one
        # and the pipeline's page need it.
        signed = j["signed_url"].replace(base, w.url)
        status, page, _ = await w.get(signed)
        assert status == 200 and "hello" in page
        status, _, _ = await w.get(f"{w.url}/runs/{job}")
        assert status == 403
        status, _, _ = await w.get(f"{w.url}/runs/{job}", headers=ADMIN)
        assert status == 200
        status, _, _ = await w.get(f"{w.url}/pipelines/{pid}", headers=ADMIN)
        assert status == 200
        # `ployd open`'s link is the same signed link, made by the same function
        async with w.http.get(f"{w.url}/api/v1/jobs/{job}/link", headers=ADMIN) as r:
            opened = (await r.json())["url"]
        key, tenant = w.services.settings.secret_key_bytes(), w.tenant_of(job)
        for url in (opened, j["signed_url"]):
            prefix, _, token = url.partition("?t=")
            assert prefix == f"{base}/runs/{job}"
            verify_job(key, token, job, tenant)  # raises unless it opens this job
            expires = int(token.split(".", 1)[0], 16)
            assert url == signed_job_url(base, key, job, tenant, now=expires - DEFAULT_TTL_S)
        status, page, _ = await w.get(opened.replace(base, w.url))
        assert status == 200 and "hello" in page
