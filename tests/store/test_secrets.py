"""The secrets' rows on both databases: each name's rows of one repository, from which a
pipeline's branch picks the most specific (``app.secrets.store.pick``)."""

from __future__ import annotations

from app.secrets.store import branch_of, pick
from app.store import secrets as rows
from app.store.models import Secret
from tests.store import rows as make


def _secret(repo_id: int, tenant_id: int, name: str, branch: str = "") -> Secret:
    return Secret(
        tenant_id=tenant_id,
        repository_id=repo_id,
        name=name,
        branch=branch,
        kind="reference",
        reference=f"aws-ssm:/{name}/{branch or 'any'}",
    )


def test_each_name_gets_its_rows_and_the_branch_picks_one(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        acme = make.tenant(s, "acme")
        app_repo = make.repository(s, acme, "acme/app")
        other = make.repository(s, acme, "acme/other")
        for branch in ("", "main", "release/*", "release/2.0"):
            rows.save(s, _secret(app_repo.id, acme.id, "TOKEN", branch))
        rows.save(s, _secret(app_repo.id, acme.id, "DEPLOY_KEY", "main"))
        rows.save(s, _secret(other.id, acme.id, "TOKEN"))  # another repository's

        found = rows.by_name(s, app_repo.id, ["TOKEN", "DEPLOY_KEY", "UNSET"])
        assert sorted(r.branch for r in found["TOKEN"]) == ["", "main", "release/*", "release/2.0"]
        assert [r.branch for r in found["DEPLOY_KEY"]] == ["main"] and found["UNSET"] == []
        assert rows.by_name(s, app_repo.id, []) == {}

        def picked(name: str, ref: str) -> str | None:
            row = pick(found[name], branch_of(ref))
            return None if row is None else row.branch

        assert picked("TOKEN", "refs/heads/main") == "main"
        assert picked("TOKEN", "refs/heads/release/2.0") == "release/2.0"  # exact first
        assert picked("TOKEN", "refs/heads/release/1.9") == "release/*"
        assert picked("TOKEN", "refs/heads/feature/x") == ""
        assert picked("TOKEN", "refs/pull/7/head") == ""  # not a branch: unscoped only
        assert picked("DEPLOY_KEY", "refs/heads/main") == "main"
        assert picked("DEPLOY_KEY", "refs/tags/v1") is None  # scoped to main: never a tag
        assert picked("UNSET", "refs/heads/main") is None


def test_find_list_and_remove(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        acme = make.tenant(s, "acme")
        repo = make.repository(s, acme, "acme/app")
        for name, branch in (("B", ""), ("A", "main"), ("A", "")):
            rows.save(s, _secret(repo.id, acme.id, name, branch))
        assert [(r.name, r.branch) for r in rows.of_repository(s, repo.id)] == [
            ("A", ""),
            ("A", "main"),
            ("B", ""),
        ]
        scoped = rows.find(s, repo.id, "A", "main")
        assert scoped is not None and scoped.branch == "main"
        assert rows.find(s, repo.id, "A", "release/*") is None
        rows.remove(s, scoped)
        assert rows.find(s, repo.id, "A", "main") is None
        assert [r.name for r in rows.of_repository(s, repo.id)] == ["A", "B"]


def test_repositories_by_name_and_local_ones(db_url: str) -> None:
    with make.connected(db_url) as db, db.session() as s:
        make.repository(s, make.tenant(s, "acme"), "acme/app")
        make.repository(s, make.tenant(s, "acme-lab", forge="gitlab"), "acme/app")
        assert sorted(r.forge for r in rows.repositories_named(s, "acme/app")) == [
            "github",
            "gitlab",
        ]
        assert [r.forge for r in rows.repositories_named(s, "acme/app", "gitlab")] == ["gitlab"]
        assert rows.repositories_named(s, "acme/none") == []

        one = rows.add_local_repository(s, "/src/one", "file:///src/one")
        two = rows.add_local_repository(s, "/src/two", "file:///src/two")
        assert one.tenant_id == two.tenant_id  # one "local" tenant, made once
        assert [r.id for r in rows.repositories_named(s, "/src/two", "local")] == [two.id]
