"""The dashboard in headless Chromium: sign in with the admin token, see what waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CONFIG = "version: 1\njobs:\n  train: {hardware: h100, steps: [{run: 'true'}]}\n"


async def test_sign_in_and_see_why_a_job_waits(
    browser: Any, serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG})
    async with serve(agents=0, admin_token="dash-admin-token") as h:
        status, body = await h.post(
            "/api/v1/pipelines",
            {"repo": str(repo)},
            headers={"Authorization": "Bearer dash-admin-token"},
        )
        assert status == 201
        job = h.job(int(body["id"]), "train")
        h.engine.set_waiting(job.id, "waiting for capacity: tried p5.4xlarge spot us-east-1a")

        def visit() -> str:
            browser.delete_all_cookies()
            browser.get(h.url + "/")
            field = browser.find_element(By.NAME, "token")  # the sign-in form first
            field.send_keys("dash-admin-token")
            field.submit()
            WebDriverWait(browser, 30).until(
                lambda d: d.find_elements(By.XPATH, "//h2[starts-with(., 'Machines')]")
            )
            return str(browser.find_element(By.TAG_NAME, "body").text)

        text = await asyncio.to_thread(visit)
        assert "waiting for capacity: tried p5.4xlarge spot us-east-1a" in text
        assert "h100" in text and "Last 24 hours" in text


async def test_the_agents_table(browser: Any, serve: Callable[..., Any]) -> None:
    from app.protocol import Gpu, Hardware, Registration

    async with serve(agents=0, admin_token="dash-admin-token") as h:
        pools, engine = h.server.services.pools, h.engine
        h100 = Gpu(name="NVIDIA H100 80GB HBM3", model="h100", memory_mb=81559)
        eight = Hardware(cpus=192, memory_mb=2_000_000, disk_gb=3500, gpus=(h100,) * 8)
        token = pools.create_token("lab", ["github:acme"], labels="site=paris").token
        engine.register(token, Registration("gpu-box-1", "0.1.0", eight, {"rack": "b2"}))
        cpu = pools.create_token("lab", ["*"]).token
        engine.register(cpu, Registration("cpu-box", "0.1.0", Hardware(16, 64000, 500)))
        pools.disable("cpu-box")

        def visit() -> list[list[str]]:
            browser.delete_all_cookies()
            browser.get(h.url + "/")
            field = browser.find_element(By.NAME, "token")
            field.send_keys("dash-admin-token")
            field.submit()
            WebDriverWait(browser, 30).until(
                lambda d: d.find_elements(By.XPATH, "//h2[starts-with(., 'Agents')]")
            )
            table = browser.find_element(
                By.XPATH, "//h2[starts-with(., 'Agents')]/following-sibling::table"
            )
            return [
                [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in table.find_elements(By.TAG_NAME, "tr")[1:]
            ]

        rows = await asyncio.to_thread(visit)
        assert [r[:6] for r in rows] == [
            ["cpu-box", "lab", "cpu:16", "-", "0.1.0", "disabled"],
            ["gpu-box-1", "lab", "h100:8", "rack=b2,site=paris", "0.1.0", "active"],
        ]
        assert all(r[6].endswith("ago") and r[7] == "-" for r in rows)
