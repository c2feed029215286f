"""`ployd serve --log-format json`: one JSON object a line, the progress lines' fields
included; Alembic's chatter only at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.logformat import JsonFormatter, configure


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    alembic = logging.getLogger("alembic").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(alembic)


def test_json_lines_with_fields_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("ployd.test-json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("job %d ended", 7, extra={"ployd": {"event": "job_ended", "job_id": 7}})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it broke")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "job 7 ended" and first["level"] == "WARNING"
    assert first["logger"] == "ployd.test-json" and first["time"].endswith("+00:00")
    assert first["event"] == "job_ended" and first["job_id"] == 7
    assert "ValueError: boom" in second["exception"]


def test_alembic_quiet_at_info_and_heard_at_debug(root_logging: None) -> None:
    configure("INFO", "text")
    assert not logging.getLogger("alembic").isEnabledFor(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.NOTSET)
    configure("DEBUG", "json")
    assert logging.getLogger("alembic").isEnabledFor(logging.INFO)
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
