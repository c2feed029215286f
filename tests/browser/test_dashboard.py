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
