"""A CI user's journey in headless Chromium, against a real PloyD with a real agent
running real bash steps: sign in, the pipelines list, a pipeline's graph, its failed
job with the cause line highlighted, a search over the whole log, the Retry button,
then a live job followed until it ends (its header settling without a reload), and the
dashboard. Every page is saved as a screenshot (``screenshot`` in conftest.py).

Selenium blocks, and the server runs on this test's event loop: every browser call
goes through ``asyncio.to_thread``. Waits are WebDriverWait conditions with deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from tests.browser.test_log_page import in_viewport, job_of, start, until, waiting
from tests.logs.world import LogWorld, running

ADMIN = "journey-admin-token"

FAILING = r"""
version: 1
jobs:
  lint:
    steps: [{run: 'echo lint ok'}]
  unit:
    needs: [lint]
    retry: {max: 0}
    steps:
      - name: Prepare
        run: for i in $(seq 1 2500); do echo "prepared shard $i"; done
      - name: Test
        run: |
          echo "needle-$((6*7)) far above the end"
          for i in $(seq 1 2500); do echo "epoch $i: val_error=0.$i"; done
          echo 'Traceback (most recent call last):'
          echo '  File "prepare.py", line 3, in <module>'
          echo "    open('data/manifest.json')"
          echo "FileNotFoundError: [Errno 2] No such file or directory: 'data/manifest.json'"
          exit 1
  report:
    needs: [unit]
    steps: [{run: 'echo report'}]
"""

LIVE = """
version: 1
jobs:
  train:
    steps:
      - name: Train
        run: |
          for i in $(seq 1 2100); do echo "warmup $i"; done
          echo "first-$((6*7))"
          while [ ! -f go ]; do sleep 0.05; done
          echo "second-$((6*7))"
"""


def shown(driver: Any, element: Any) -> bool:
    """In the window (the browser's jump to an anchor may leave it a fraction of a pixel
    above the top)."""
    return bool(
        driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return r.height > 0 && r.top > -2 && r.bottom <= window.innerHeight + 2;",
            element,
        )
    )


def release(data_dir: Path) -> None:
    """Let the live job go on: ``go`` in the local agent's workspaces."""
    for workspace in data_dir.with_name(data_dir.name + "-work").glob("local-1/local-*"):
        (workspace / "go").write_text("go")


def printed(w: LogWorld, pid: int, name: str, text: bytes) -> bool:
    job = job_of(w, pid, name)
    a = job.attempts[-1] if job.attempts else None
    return bool(a and a.log_path and text in w.store.read(a.log_path))


async def test_from_the_pipelines_list_to_the_cause_and_back(
    browser: Any,
    screenshot: Callable[[str], Path],
    tmp_path: Path,
    db_url: str,
    make_repo: Callable[..., tuple[Path, str]],
) -> None:
    failing_repo, _ = make_repo({".ployd.yml": FAILING})
    async with running(tmp_path / "data", db_url, agents=1, admin_token=ADMIN) as w:
        w.http.headers["Authorization"] = f"Bearer {ADMIN}"
        failed = await start(w, failing_repo)
        await until(w, lambda: job_of(w, failed, "unit").state == "failed", "the job to fail")
        live_repo, _ = make_repo({".ployd.yml": LIVE})
        live = await start(w, live_repo)
        await until(w, lambda: printed(w, live, "train", b"first-42"), "the live job's line")
        unit = job_of(w, failed, "unit").id
        # a live page re-renders its header and log: an element found a moment ago may
        # be gone by the time it is read, so a wait looks again rather than failing
        wait = waiting(browser)

        def text_of(css: str) -> str:
            """The element's text as it is now, found afresh if it was re-rendered."""
            return str(
                wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css).text or " ")
            ).strip()

        def sign_in_to_the_list() -> list[str]:
            browser.delete_all_cookies()
            browser.get(w.url + "/pipelines")  # not signed in: to the sign-in form
            field = wait.until(lambda d: d.find_element(By.NAME, "token"))
            field.send_keys(ADMIN)
            field.submit()
            wait.until(lambda d: d.find_elements(By.ID, "pipelines"))
            screenshot("1-pipelines")
            rows = browser.find_elements(By.CSS_SELECTOR, "tr.pipeline")
            return [r.get_attribute("id") for r in rows]

        assert await asyncio.to_thread(sign_in_to_the_list) == [f"p-{live}", f"p-{failed}"]

        def to_the_failed_job() -> tuple[str, str, bool]:
            browser.find_element(
                By.CSS_SELECTOR, f"#p-{failed} a[href='/pipelines/{failed}']"
            ).click()
            wait.until(lambda d: d.find_elements(By.ID, "dag"))
            screenshot("2-pipeline")
            browser.find_element(By.CSS_SELECTOR, f"#job-{unit} a[href='/runs/{unit}']").click()
            err = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".l.err"))
            wait.until(lambda d: in_viewport(d, err))
            screenshot("3-failed-job")
            stamp = err.find_element(By.CSS_SELECTOR, ".ts")
            assert not stamp.is_displayed()  # hidden until asked for
            browser.find_element(By.ID, "ts-toggle").click()
            wait.until(lambda d: stamp.is_displayed())
            screenshot("3b-timestamps")
            cause = text_of("#cause")
            return (
                err.text,
                cause,
                browser.find_element(By.ID, "step-1").get_attribute("open") is not None,
            )

        err, cause, test_open = await asyncio.to_thread(to_the_failed_job)
        assert err.endswith(
            "FileNotFoundError: [Errno 2] No such file or directory: 'data/manifest.json'"
        )
        assert "Python exception" in cause and test_open

        def search_the_whole_log() -> tuple[str, str, bool]:
            box = browser.find_element(By.CSS_SELECTOR, "#search input[name=q]")
            box.send_keys("needle-42")
            box.submit()
            hit = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#search-results a.hit"))
            count = browser.find_element(By.ID, "search-count").text
            screenshot("4-search")
            hit.click()  # to the page that has it, far above the one shown
            line = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".l:target"))
            wait.until(lambda d: shown(d, line))
            screenshot("5-search-hit")
            return count, line.text, shown(browser, line)

        count, line, seen = await asyncio.to_thread(search_the_whole_log)
        assert count.startswith("1 line(s) match") and "needle-42 far above the end" in line
        assert seen

        def retry() -> str:
            browser.get(f"{w.url}/runs/{unit}")
            wait.until(lambda d: d.find_element(By.ID, "retry")).click()
            text: str = wait.until(
                lambda d: t if "attempt 2" in (t := d.find_element(By.ID, "attempts").text) else ""
            )
            screenshot("6-retried")
            return text

        attempts = await asyncio.to_thread(retry)
        assert "started: retried by admin (log page)" in attempts
        assert len(job_of(w, failed, "unit").attempts) == 2

        train = job_of(w, live, "train").id

        def follow_the_live_job() -> tuple[str, str]:
            browser.get(w.url + "/pipelines")
            browser.find_element(By.CSS_SELECTOR, f"#p-{live} a").click()
            browser.find_element(By.CSS_SELECTOR, f"#job-{train} a").click()
            wait.until(lambda d: "first-42" in d.find_element(By.ID, "log").text)
            assert browser.find_element(By.ID, "live").is_displayed()
            assert "running" in text_of("#attempts")
            browser.execute_script("window.__same_page = 42;")  # gone if the page reloads
            screenshot("7-live")
            tail = text_of("nav.pager .shown")
            # its first lines in another tab: a range before the end, followed too
            first = browser.find_element(By.LINK_TEXT, "first lines").get_attribute("href")
            tabs.append(browser.current_window_handle)
            browser.switch_to.new_window("tab")
            browser.get(first)
            wait.until(lambda d: "warmup 1" in d.find_element(By.ID, "log").text)
            assert not browser.find_element(By.ID, "grown").is_displayed()
            screenshot("7b-live-range")
            return tail, text_of("nav.pager .shown")

        tabs: list[str] = []
        tail_shown, range_shown = await asyncio.to_thread(follow_the_live_job)
        assert range_shown == "lines 1 to 2000"
        release(tmp_path / "data")

        def the_range_settles() -> tuple[str, str, bool]:
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ended"))
            wait.until(lambda d: d.find_element(By.ID, "grown").is_displayed())
            screenshot("8a-live-range-ended")
            text = text_of("#log")
            result = (text_of("#state"), text, "second-42" in text)
            browser.close()
            browser.switch_to.window(tabs[0])
            return result

        range_state, _, range_has_tail = await asyncio.to_thread(the_range_settles)
        assert range_state == "succeeded" and not range_has_tail  # its own lines only

        def until_it_ends() -> tuple[Any, str, str, bool]:
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ended"))
            wait.until(lambda d: "second-42" in d.find_element(By.ID, "log").text)
            screenshot("8-live-ended")
            shown_now = text_of("nav.pager .shown")
            # the live page's count went on with the lines that came
            head, _, last = tail_shown.rpartition(" to ")
            assert shown_now.startswith(head + " to ") and int(shown_now.rsplit(" ", 1)[1]) > int(
                last
            ), (tail_shown, shown_now)
            return (
                browser.execute_script("return window.__same_page;"),
                text_of("#state"),
                text_of("#attempts"),
                bool(browser.find_elements(By.ID, "live")),
            )

        marker, state, attempts, live_badge = await asyncio.to_thread(until_it_ends)
        assert marker == 42, "the page was reloaded"
        assert state == "succeeded" and "succeeded" in attempts and "running" not in attempts
        assert not live_badge
        assert await asyncio.to_thread(lambda: bool(browser.find_elements(By.ID, "retry")))

        def again() -> bool:  # the retried attempt ran once the agent was free
            job = job_of(w, failed, "unit")
            return job.state == "failed" and len(job.attempts) == 2

        await until(w, again, "the retried job to fail again")

        def dashboard() -> tuple[str, str]:
            browser.get(w.url + "/")
            wait.until(lambda d: d.find_elements(By.ID, "charts"))
            screenshot("9-dashboard")
            agents = browser.find_element(
                By.XPATH, "//h2[starts-with(., 'Agents')]/following-sibling::table"
            )
            return str(browser.find_element(By.ID, "failures").text), str(agents.text)

        failures, agents = await asyncio.to_thread(dashboard)
        assert "unit" in failures and "exit 1" in failures
        assert "local-1 local cpu:" in agents  # this machine's CPUs
