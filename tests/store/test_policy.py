"""What policy enforcement reads, on both databases: the attempts a concurrency quota
counts, the month's spend, and tenants' stored policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.store import policy as rows
from tests.store import rows as make

START = datetime(2026, 11, 1, tzinfo=UTC)


def test_quota_usage_counts_live_attempts_and_those_queued_before(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        acme = make.tenant(s, "acme")
        repo = make.repository(s, acme, "acme/app")
        p = make.pipeline(s, repo)
        running = make.attempt(s, make.job(s, p, "running", ["l4:1"]), "running")
        dispatching = make.attempt(s, make.job(s, p, "dispatching"), "dispatching")
        earlier = make.attempt(s, make.job(s, p, "earlier", ["l4:1"]))
        make.attempt(s, make.job(s, p, "done"), "succeeded")
        me = make.attempt(s, make.job(s, p, "me", ["l4:1"]))
        make.attempt(s, make.job(s, p, "later"))  # queued after: not ahead
        held = make.pipeline(s, repo, held=True)  # a fork's, waiting for ok-to-test
        make.attempt(s, make.job(s, held, "held"), "running")
        other = make.pipeline(s, make.repository(s, make.tenant(s, "other"), "other/app"))
        make.attempt(s, make.job(s, other, "theirs"), "running")

        rows.lock_quota(s, acme.id)  # PostgreSQL: an advisory lock; SQLite: nothing
        usage = rows.quota_usage(s, acme.id, me.id)
        assert sorted((u.id, u.state) for u in usage) == [
            (running.id, "running"),
            (dispatching.id, "dispatching"),
            (earlier.id, "queued"),
        ]
        by_id = {u.id: u.hardware for u in usage}
        assert by_id[running.id] == ["l4:1"] and by_id[dispatching.id] == []
        ahead_of_earlier = rows.quota_usage(s, acme.id, earlier.id)
        assert sorted(u.id for u in ahead_of_earlier) == [running.id, dispatching.id]


def test_spend_since_the_start_of_the_month(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        acme = make.tenant(s, "acme")
        p = make.pipeline(s, make.repository(s, acme, "acme/app"))
        j = make.job(s, p, "train")
        make.attempt(s, j, "succeeded", claimed_at=START + timedelta(days=2), cost=1.25)
        make.attempt(s, j, "failed", claimed_at=START + timedelta(days=3), cost=0.5)
        make.attempt(s, j, "succeeded", claimed_at=START - timedelta(hours=1), cost=100.0)
        live = make.attempt(s, j, "running", claimed_at=START + timedelta(days=4), price_hourly=2.0)
        make.attempt(s, j, "running", claimed_at=START - timedelta(days=1), price_hourly=9.0)
        other = make.pipeline(s, make.repository(s, make.tenant(s, "other"), "other/app"))
        make.attempt(s, make.job(s, other, "x"), "succeeded", claimed_at=START, cost=7.0)

        assert rows.spent_since(s, acme.id, START) == 1.75
        assert rows.spent_since(s, acme.id, START + timedelta(days=10)) == 0.0
        assert [a.id for a in rows.live_since(s, acme.id, START)] == [live.id]


def test_tenant_policies_are_stored_and_replaced(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        acme = make.tenant(s, "acme")
        assert rows.tenant_policy(s, acme.id) is None
        assert rows.put_tenant_policy(s, acme.id, {"max_timeout_s": 600}, "admin") == {}
        assert rows.put_tenant_policy(s, acme.id, {"max_timeout_s": 900}, "root") == {
            "max_timeout_s": 600
        }
        row = rows.tenant_policy(s, acme.id)
        assert row is not None and row.policy == {"max_timeout_s": 900}
        assert row.updated_by == "root"
