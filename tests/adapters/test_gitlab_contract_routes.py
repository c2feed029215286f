"""The contract document names every route the GitLab client calls: each public call of
``GitLabClient`` is made against the fake GitLab, and each route the fake saw it use
must be in the table at the top of tests/contracts/gitlab-rest.md, under its method."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from app.adapters.gitlab import GitLabClient
from tests.fakes.gitlab import FakeGitLab

CONTRACT = Path(__file__).resolve().parents[1] / "contracts" / "gitlab-rest.md"


def route_table() -> dict[str, str]:
    """method name -> its row of the table "Every route PloyD calls"."""
    text = CONTRACT.read_text(encoding="utf-8")
    table = text.split("## Every route PloyD calls", 1)[1].split("\n---", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows[name] = cells[1]
    return rows


async def test_every_route_the_client_calls_is_in_the_contract(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models", files={"a.py": "1"})
    head = fake_gitlab.add_commit(proj, {"a.py": "2"}, branch="feature")
    fake_gitlab.add_mr(proj, 3, head, "feature")
    note = fake_gitlab.add_note(proj, 3, "/ployd help")
    fake_gitlab.set_member(proj, "alice", 30)
    used: dict[str, set[str]] = {}
    async with GitLabClient(fake_gitlab.url, fake_gitlab.token) as gl:
        calls = {
            "get_file": lambda: gl.get_file(proj.id, "a.py", head),
            "compare_files": lambda: gl.compare_files(proj.id, proj.head, head),
            "get_mr": lambda: gl.get_mr(proj.id, 3),
            "mr_changed_files": lambda: gl.mr_changed_files(proj.id, 3),
            "create_note": lambda: gl.create_note(proj.id, 3, "hi"),
            "edit_note": lambda: gl.edit_note(proj.id, 3, int(note["id"]), "edited"),
            "award_emoji": lambda: gl.award_emoji(proj.id, 3, int(note["id"]), "eyes"),
            "set_status": lambda: gl.set_status(proj.id, head, "pending", "x", ref="feature"),
            "access_level": lambda: gl.access_level(proj.id, "alice"),
            "token_self": lambda: gl.token_self(),
            "create_deploy_token": lambda: gl.create_deploy_token(
                proj.id, "t", ["read_repository"], "2030-01-01T00:00:00Z"
            ),
            "delete_deploy_token": lambda: gl.delete_deploy_token(
                proj.id, int(fake_gitlab.deploy_tokens[-1]["id"])
            ),
        }
        public = {
            name
            for name, fn in inspect.getmembers(GitLabClient, inspect.iscoroutinefunction)
            if not name.startswith("_")
        }
        assert public == set(calls), "a new client call: add it here and to the contract"
        for name, call in calls.items():
            seen = len(fake_gitlab.requests)
            await call()
            used[name] = {r.endpoint or "?" for r in fake_gitlab.requests[seen:]}
    table = route_table()
    for name, endpoints in used.items():
        assert name in table, f"{name} is not in the contract's route table"
        for endpoint in endpoints:
            method, template = endpoint.split(" ", 1)
            row = table[name]
            assert f"{method} {template}" in row, f"{name} calls {endpoint}; its row: {row}"
