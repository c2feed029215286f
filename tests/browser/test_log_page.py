"""The log page in headless Chromium, against a real PloyD with a real agent running
real bash steps: the error line highlighted and in view, a running job's log growing
live over SSE without a reload, and 403 with a bad token.

Selenium blocks, and the server runs on this test's event loop: every browser call
goes through ``asyncio.to_thread``. Waits are WebDriverWait conditions with deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from app.store.models import Job, Pipeline
from tests.logs.world import LogWorld, running

DEADLINE = 30.0


def waiting(browser: Any) -> Any:
    """A wait that looks again when what it found was re-rendered meanwhile (a live
    page replaces its header and log lines), instead of failing on a stale element."""
    return WebDriverWait(
        browser,
        DEADLINE,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )


FAILING = """
version: 1
jobs:
  unit:
    retry: {max: 0}
    steps:
      - name: Install
        run: for i in $(seq 1 300); do echo "installing package $i"; done
      - name: Test
        run: |
          for i in $(seq 1 400); do echo "test_$i PASSED"; done
          printf '\\033[31mError: expected 42, got %d\\033[0m\\n' $((6*7+1))
          for i in $(seq 1 1200); do echo "teardown $i"; done
          exit 3
"""


# The step waits for a file ``go`` in its workspace (all a sandboxed step can see).
LIVE_CONFIG = """
version: 1
jobs:
  train:
    steps:
      - name: Train
        run: |
          echo "first-$((6*7))"
          while [ ! -f go ]; do sleep 0.05; done
          echo "second-$((6*7))"
"""


def release(data_dir: Path) -> None:
    """Let the live job go on: ``go`` in its workspace (the local agent's work dir)."""
    (workspace,) = data_dir.with_name(data_dir.name + "-work").glob("local-1/local-*")
    (workspace / "go").write_text("go")


async def until(w: LogWorld, check: Callable[[], bool], what: str) -> None:
    """Wait for ``check()``, woken by the engine's news (a log chunk, a state change)."""
    async with asyncio.timeout(DEADLINE):
        while not check():
            await w.engine.log_appended.wait(1.0)
    assert check(), what


def job_of(w: LogWorld, pid: int, name: str) -> Job:
    with w.engine.db.session() as s:
        p = s.get(Pipeline, pid)
        assert p is not None
        job = next(j for j in p.jobs if j.name == name)
        _ = [(a.state, a.log_path, a.log_size) for a in job.attempts]
        return job


async def start(w: LogWorld, repo: Path) -> int:
    async with w.http.post(f"{w.url}/api/v1/pipelines", json={"repo": str(repo)}) as r:
        body = await r.json()
        assert r.status == 201, body
        return int(body["id"])


def in_viewport(driver: Any, element: Any) -> bool:
    return bool(
        driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;",
            element,
        )
    )


async def test_failing_job_shows_its_error_line_in_view(
    browser: Any, tmp_path: Path, db_url: str, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": FAILING})
    async with running(tmp_path / "data", db_url, agents=1) as w:
        pid = await start(w, repo)
        await until(w, lambda: job_of(w, pid, "unit").state == "failed", "the job to fail")
        job = job_of(w, pid, "unit").id

        def look() -> tuple[str, bool, str]:
            browser.get(w.link(job))
            wait = waiting(browser)
            err = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".l.err"))
            wait.until(lambda d: in_viewport(d, err))
            step = browser.find_element(By.ID, "step-1")
            return err.get_attribute("class"), step.get_attribute("open") is not None, err.text

        classes, test_step_open, text = await asyncio.to_thread(look)
        assert "err" in classes.split()
        assert test_step_open
        assert "Error: expected 42, got 43" in text
        # The Install step is folded, its lines present but hidden.
        install_open = await asyncio.to_thread(
            lambda: browser.find_element(By.ID, "step-0").get_attribute("open")
        )
        assert install_open is None


async def test_running_job_log_grows_live(
    browser: Any, tmp_path: Path, db_url: str, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": LIVE_CONFIG})
    async with running(tmp_path / "data", db_url, agents=1) as w:
        pid = await start(w, repo)

        def first_printed() -> bool:
            job = job_of(w, pid, "train")
            a = job.attempts[-1] if job.attempts else None
            return bool(a and a.log_path and b"first-42" in w.store.read(a.log_path))

        await until(w, first_printed, "the first line")
        job = job_of(w, pid, "train").id

        def open_page() -> None:
            browser.get(w.link(job))
            wait = waiting(browser)
            wait.until(lambda d: "first-42" in d.find_element(By.ID, "log").text)
            browser.execute_script("window.__same_page = 42;")  # gone if the page reloads

        await asyncio.to_thread(open_page)
        assert "second-42" not in await asyncio.to_thread(
            lambda: browser.find_element(By.ID, "log").text
        )
        release(tmp_path / "data")

        def second_arrives() -> tuple[Any, Any]:
            wait = waiting(browser)
            wait.until(lambda d: "second-42" in d.find_element(By.ID, "log").text)
            wait.until(lambda d: d.find_element(By.ID, "state").text == "succeeded")
            return (
                browser.execute_script("return window.__same_page;"),
                browser.find_element(By.ID, "state").text,
            )

        marker, state = await asyncio.to_thread(second_arrives)
        assert marker == 42, "the page was reloaded"
        assert state == "succeeded"


async def test_bad_token_is_403(browser: Any, tmp_path: Path, db_url: str) -> None:
    async with running(tmp_path / "data", db_url, agents=0, admin_token="browser-admin") as w:
        job = w.job_id(w.pipeline())

        def visit(url: str) -> str:
            browser.get(url)
            return str(browser.find_element(By.TAG_NAME, "body").text)

        text = await asyncio.to_thread(visit, f"{w.url}/runs/{job}?t=forged.token")
        assert "403" in text
        async with w.http.get(f"{w.url}/runs/{job}?t=forged.token") as r:
            assert r.status == 403
        text = await asyncio.to_thread(visit, w.link(job))
        assert "403" not in text and "acme/app" in text
