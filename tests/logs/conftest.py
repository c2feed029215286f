"""``log_world(store)``: a running PloyD with its logs on disk or in S3 (moto)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.logs.world import KEYS, running, s3_settings


@pytest.fixture
def log_world(
    tmp_path: Path, db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """``async with log_world("disk" | "s3", **settings) as w``."""

    def run(store: str = "disk", **extra: Any) -> Any:
        if store == "s3":
            moto_url = request.getfixturevalue("moto_server")
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEYS["aws_access_key_id"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEYS["aws_secret_access_key"])
            extra = {**s3_settings(moto_url), **extra}
        return running(tmp_path / "data", db_url, **extra)

    return run
