"""Headless Chromium driven by selenium, for tests of the log page in a real browser.

Skipped, with the reason, only when Chromium or chromedriver is not installed
(Debian: ``apt-get install -y chromium chromium-driver``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)


def _find(names: tuple[str, ...]) -> str | None:
    return next((p for p in (shutil.which(n) for n in names) if p), None)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, driver_path = _find(CHROMIUM), _find(DRIVER)
    if chromium is None or driver_path is None:
        if os.environ.get("PLOYD_REQUIRE_BROWSER"):  # CI installs them: never skip there
            pytest.fail("PLOYD_REQUIRE_BROWSER is set but Chromium or chromedriver is missing")
        pytest.skip(
            "browser tests need Chromium and chromedriver "
            "(apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile: Path = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


SCREENSHOTS = Path(__file__).resolve().parents[2] / ".ployd-screenshots"


@pytest.fixture
def screenshot(browser: Any, request: pytest.FixtureRequest) -> Any:
    """``screenshot("pipelines")``: the browser's window as a PNG under
    ``$PLOYD_SCREENSHOT_DIR`` (default ``.ployd-screenshots/`` at the repository's root,
    ignored by git), named after the test; returns the file's path."""
    where = Path(os.environ.get("PLOYD_SCREENSHOT_DIR") or SCREENSHOTS)
    where.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> Path:
        path = where / f"{request.node.name}-{name}.png"
        browser.save_screenshot(str(path))
        assert path.stat().st_size > 0, path
        return path

    return shoot


from tests.e2e.conftest import serve  # noqa: E402  (the end-to-end server harness)

__all__ = ["browser", "screenshot", "serve"]
