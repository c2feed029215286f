"""The service commands' durations: a finished object's, and a running one's so far."""

from __future__ import annotations

from datetime import UTC, datetime

from app.cli.remote import duration

NOW = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


def test_finished_running_and_unknown() -> None:
    done = {"state": "failed", "started_at": "2026-05-04T11:58:30+00:00",
            "finished_at": "2026-05-04T11:59:01.500000+00:00"}  # fmt: skip
    assert duration(done, now=NOW) == "31.5s"
    running = {"state": "running", "started_at": "2026-05-04T11:56:55+00:00", "finished_at": None}
    assert duration(running, now=NOW) == "3m05s so far"
    naive = {"state": "running", "created_at": "2026-05-04T11:59:58", "finished_at": None}
    assert duration(naive, "created_at", now=NOW) == "2.0s so far"  # PloyD's times are UTC
    ahead = {"state": "running", "started_at": "2026-05-04T12:00:03+00:00"}
    assert duration(ahead, now=NOW) == "0.0s so far"  # the server's clock a little ahead
    queued = {"state": "queued", "started_at": "2026-05-04T11:00:00+00:00"}  # an old attempt's
    assert duration(queued, now=NOW) == "-"
    assert duration({"state": "running"}, now=NOW) == "-"
    assert duration({"state": "running", "started_at": "2026-05-04T09:00:00+00:00"}, now=NOW) == (
        "3h00m so far"
    )
