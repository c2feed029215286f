"""GitLabClient end to end through the real python-gitlab against the fake GitLab."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from app.adapters.gitlab import GitLabClient, GitLabConfig, GitLabConfigError, GitLabError
from app.adapters.gitlab.client import status_ref
from app.adapters.gitlab.runner import Backoff
from tests.fakes.gitlab import FakeGitLab

SHA = "c" * 40


class Sleeps:
    """An injected sleep that records the waits and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(fake_gitlab: FakeGitLab, sleeps: Sleeps) -> AsyncIterator[GitLabClient]:
    async with GitLabClient(fake_gitlab.url, fake_gitlab.token, sleep=sleeps) as gl:
        yield gl


async def test_get_file_at_a_sha(fake_gitlab: FakeGitLab, client: GitLabClient) -> None:
    proj = fake_gitlab.add_project("group/models", files={".ployd.yml": "jobs: {}\n"}, sha=SHA)
    later = fake_gitlab.add_commit(proj, {".ployd.yml": "jobs: {a: 1}\n"}, branch="main")
    assert await client.get_file(proj.id, ".ployd.yml", SHA) == "jobs: {}\n"
    assert await client.get_file("group/models", ".ployd.yml", later) == "jobs: {a: 1}\n"
    assert await client.get_file(proj.id, "dir/missing.yml", SHA) is None
    assert await client.get_file("group/unknown", ".ployd.yml", "main") is None


async def test_mr_changes_compare_and_get_mr(fake_gitlab: FakeGitLab, client: GitLabClient) -> None:
    proj = fake_gitlab.add_project("group/models", files={"a.py": "1", "old.py": "x"})
    base = proj.head
    head = fake_gitlab.add_commit(proj, {"a.py": "2", "b.py": "new"}, branch="feature")
    fake_gitlab.add_mr(proj, 7, head, "feature", author="bob")
    many = [{"old_path": "old.py", "new_path": "new.py"}] + [f"f{i}.py" for i in range(120)]
    fake_gitlab.add_mr(proj, 8, head, "feature", fork=True, changes=many)

    assert await client.mr_changed_files(proj.id, 7) == ["a.py", "b.py"]
    paths = await client.mr_changed_files(proj.id, 8)
    assert paths[:2] == ["new.py", "old.py"] and len(paths) == 122
    assert await client.compare_files(proj.id, base, head) == ["a.py", "b.py"]

    mr = await client.get_mr("group/models", 7)
    assert (mr["sha"], mr["author"], mr["is_fork"]) == (head, "bob", False)
    assert (mr["source_branch"], mr["target_branch"]) == ("feature", "main")
    assert mr["diff_refs"]["base_sha"] == base
    assert (await client.get_mr(proj.id, 8))["is_fork"] is True


async def test_statuses_in_sequence(fake_gitlab: FakeGitLab, client: GitLabClient) -> None:
    proj = fake_gitlab.add_project("group/models", sha=SHA)
    for state in ("pending", "running", "running", "success"):  # the repeat is a no-op
        await client.set_status(proj.id, SHA, state, "ployd/train", "https://ci/x", "d" * 400)
    posted = fake_gitlab.calls("POST", "/projects/:id/statuses/:sha")
    assert [r.params["state"] for r in posted] == ["pending", "running", "running", "success"]
    assert all(len(r.params["description"]) == 255 for r in posted)
    (status,) = proj.statuses
    assert (status["status"], status["name"], status["target_url"]) == (
        "success",
        "ployd/train",
        "https://ci/x",
    )
    with pytest.raises(ValueError):
        await client.set_status(proj.id, SHA, "error", "ployd/train")


async def test_notes_and_award_emoji(fake_gitlab: FakeGitLab, client: GitLabClient) -> None:
    proj = fake_gitlab.add_project("group/models")
    fake_gitlab.add_mr(proj, 3, files={"x.py": "1"})
    command = fake_gitlab.add_note(proj, 3, "/ployd retest", author="alice")
    note_id = await client.create_note(proj.id, 3, "Running **2** jobs")
    await client.edit_note(proj.id, 3, note_id, "Done: 2 passed")
    assert fake_gitlab.notes[note_id]["body"] == "Done: 2 passed"
    assert fake_gitlab.notes[note_id]["author"]["username"] == fake_gitlab.token_user
    await client.award_emoji(proj.id, 3, command["id"], "eyes")
    await client.award_emoji(proj.id, 3, command["id"], ":eyes:")  # already there: fine
    (award,) = fake_gitlab.awards.values()
    assert (award["name"], award["awardable_type"], award["awardable_id"]) == (
        "eyes",
        "Note",
        command["id"],
    )


async def test_access_levels(fake_gitlab: FakeGitLab, client: GitLabClient) -> None:
    proj = fake_gitlab.add_project("group/models")
    alice = fake_gitlab.set_member(proj, "alice", 30)
    fake_gitlab.set_member(proj, "olga", 50, inherited=True)
    fake_gitlab.set_member(proj, "dev", 20)
    fake_gitlab.set_member(proj, "dev", 40, inherited=True)
    fake_gitlab.user_id("stranger")
    assert await client.access_level(proj.id, alice) == 30
    assert await client.access_level(proj.id, "alice") == 30
    assert await client.access_level("group/models", "olga") == 50
    assert await client.access_level(proj.id, "dev") == 40  # the highest membership
    assert await client.access_level(proj.id, "stranger") == 0
    assert await client.access_level(proj.id, "nobody-at-all") == 0


async def test_502_then_success_is_retried(
    fake_gitlab: FakeGitLab, client: GitLabClient, sleeps: Sleeps
) -> None:
    proj = fake_gitlab.add_project("group/models", files={"a": "1"})
    fake_gitlab.fail_next("GET", "/projects/:id/repository/files/:file_path/raw", 502, times=2)
    assert await client.get_file(proj.id, "a", "main") == "1"
    assert sleeps.waits == [0.5, 1.0]
    assert client.stats.errors[502] == 2 and client.stats.retries == 2


async def test_429_waits_the_advertised_retry_after(
    fake_gitlab: FakeGitLab, client: GitLabClient, sleeps: Sleeps
) -> None:
    proj = fake_gitlab.add_project("group/models")
    fake_gitlab.add_mr(proj, 1, files={"a": "1"})
    fake_gitlab.rate_limit_next("POST", "/projects/:id/merge_requests/:merge_request_iid/notes", 17)
    note_id = await client.create_note(proj.id, 1, "hello")
    assert sleeps.waits == [17.0]
    assert fake_gitlab.notes[note_id]["body"] == "hello"
    assert len(fake_gitlab.calls("POST", "/projects/*/merge_requests/1/notes")) == 2


async def test_retries_are_bounded(fake_gitlab: FakeGitLab, sleeps: Sleeps) -> None:
    proj = fake_gitlab.add_project("group/models")
    fake_gitlab.fail_next("*", "/projects/:id/merge_requests/:merge_request_iid", 503, times=9)
    fake_gitlab.add_mr(proj, 1)
    async with GitLabClient(
        fake_gitlab.url, fake_gitlab.token, sleep=sleeps, backoff=Backoff(attempts=3)
    ) as gl:
        with pytest.raises(GitLabError) as caught:
            await gl.get_mr(proj.id, 1)
    assert caught.value.status == 503 and len(sleeps.waits) == 2


async def test_403_is_raised_not_retried(
    fake_gitlab: FakeGitLab, client: GitLabClient, sleeps: Sleeps
) -> None:
    proj = fake_gitlab.add_project("group/models", sha=SHA)
    fake_gitlab.fail_next(
        "POST", "/projects/:id/statuses/:sha", 403, body={"message": "403 Forbidden"}
    )
    with pytest.raises(GitLabError) as caught:
        await client.set_status(proj.id, SHA, "running", "ci")
    assert (caught.value.status, caught.value.message) == (403, "403 Forbidden")
    assert sleeps.waits == []
    assert len(fake_gitlab.calls("POST")) == 1


async def test_unreachable_is_status_0_after_retries(sleeps: Sleeps) -> None:
    async with GitLabClient("http://127.0.0.1:9", "t", sleep=sleeps, timeout=2) as gl:
        with pytest.raises(GitLabError) as caught:
            await gl.get_file(1, "a", "main")
    assert caught.value.status == 0 and len(sleeps.waits) == 4


async def test_calls_run_off_the_event_loop(
    fake_gitlab: FakeGitLab, client: GitLabClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = fake_gitlab.add_project("group/models", files={"a": "1"})
    threads: list[threading.Thread] = []
    original = type(client._gl).http_request

    def spy(self: object, *args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread())
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(type(client._gl), "http_request", spy)
    loop_thread = threading.current_thread()
    results = await asyncio.gather(*(client.get_file(proj.id, "a", "main") for _ in range(4)))
    assert results == ["1"] * 4
    assert threads and all(t is not loop_thread for t in threads)
    assert all(t.name.startswith("ployd-gitlab") for t in threads)


def test_config_from_env() -> None:
    cfg = GitLabConfig.from_env(
        {"PLOYD_GITLAB_TOKEN": "glpat-secret", "PLOYD_GITLAB_WEBHOOK_SECRET": "hook-secret"}
    )
    assert cfg.url == "https://gitlab.com"
    assert "glpat-secret" not in repr(cfg) and "hook-secret" not in repr(cfg)
    with pytest.raises(GitLabConfigError, match="PLOYD_GITLAB_TOKEN"):
        GitLabConfig.from_env({"PLOYD_GITLAB_WEBHOOK_SECRET": "x"})
    with pytest.raises(GitLabConfigError, match="PLOYD_GITLAB_URL"):
        GitLabConfig.from_env(
            {
                "PLOYD_GITLAB_URL": "gitlab.com",
                "PLOYD_GITLAB_TOKEN": "t",
                "PLOYD_GITLAB_WEBHOOK_SECRET": "s",
            }
        )
    client = GitLabClient.from_config(cfg)
    assert "glpat-secret" not in repr(client)
    client.close()


async def test_token_self_and_deploy_tokens(fake_gitlab: FakeGitLab, client: GitLabClient) -> None:
    fake_gitlab.add_project("group/models")
    assert (await client.token_self())["scopes"] == ["api"]
    made = await client.create_deploy_token(
        "group/models", "ployd-clone", ["read_repository"], "2030-01-01T00:00:00Z"
    )
    assert made["username"] == "gitlab+deploy-token-1" and made["token"]
    assert made["expires_at"] == "2030-01-01T00:00:00.000Z"
    (call,) = fake_gitlab.calls("POST", "/projects/:id/deploy_tokens")
    assert call.params == {
        "name": "ployd-clone", "scopes": ["read_repository"], "expires_at": "2030-01-01T00:00:00Z"
    }
    fake_gitlab.fail_next("POST", "/projects/:id/deploy_tokens", status=403)
    with pytest.raises(GitLabError) as e:
        await client.create_deploy_token("group/models", "x", ["read_repository"], "2030-01-01")
    assert e.value.status == 403


async def test_deploy_token_parameters_are_checked_as_gitlab_does(
    fake_gitlab: FakeGitLab, client: GitLabClient
) -> None:
    fake_gitlab.add_project("group/models")
    for scopes, expires in ((["write_repository"], "2030-01-01"), (["read_repository"], "soon")):
        with pytest.raises(GitLabError) as e:
            await client.create_deploy_token("group/models", "x", scopes, expires)
        assert e.value.status == 400
    assert [v.kind for v in fake_gitlab.take_violations()] == ["params", "params"]


async def test_a_fork_mr_head_needs_the_ref_as_on_gitlab_com(
    fake_gitlab: FakeGitLab, client: GitLabClient
) -> None:
    """A fork's head is on no branch of the project: without ``ref`` GitLab refuses the
    status (404 References for commit); with the merge request's ref it takes it."""
    proj = fake_gitlab.add_project("group/models")
    mr = fake_gitlab.add_mr(proj, 4, files={"evil.py": "1"}, fork=True)
    with pytest.raises(GitLabError) as refused:
        await client.set_status(proj.id, mr.sha, "pending", "ployd/unit")
    assert (refused.value.status, refused.value.message) == (
        404,
        "404 References for commit Not Found",
    )
    await client.set_status(proj.id, mr.sha, "pending", "ployd/unit", ref=status_ref(MR_REF))
    await client.set_status(proj.id, mr.sha, "success", "ployd/unit")  # its pipeline's ref now
    (status,) = proj.statuses
    assert (status["status"], status["ref"]) == ("success", MR_REF)
    assert fake_gitlab.calls("POST", "/projects/:id/statuses/:sha")[0].status == 404


MR_REF = "refs/merge-requests/4/head"


def test_status_ref_names_branches_and_tags_and_keeps_other_refs() -> None:
    assert status_ref("refs/heads/main") == "main"
    assert status_ref("refs/heads/release/1.x") == "release/1.x"
    assert status_ref("refs/tags/v1.2") == "v1.2"
    assert status_ref(MR_REF) == MR_REF
