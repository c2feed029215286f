"""The fake GitHub's endpoints: one function per described operation.

Each takes a ``Ctx`` (the fake, the aiohttp request, the matched operation, typed
parameters and the validated JSON body) and returns ``(status, payload, headers)``.
Payloads start from a minimal instance of the spec's response schema and are overlaid
with the fake's state, so answers have GitHub's shape (``tests/fakes/github.py`` checks
them against the schema when ``validate_responses`` is on).
"""

from __future__ import annotations

import base64
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from yarl import URL

from tests.fakes.github_model import (
    ROLE_TO_PERMISSION,
    FakeRepo,
    GitHubRejection,
    blob_sha,
    diff_files,
    fake_sha,
    utc_iso,
)
from tests.fakes.github_openapi import Operation, conform

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

Result = tuple[int, Any, dict[str, str]]
EVENTS = ["check_run", "check_suite", "issue_comment", "pull_request", "push"]


def _rejection(status: int, message: str, violation: str | None = None) -> Exception:
    return GitHubRejection(status, message, violation=violation)


@dataclass
class Ctx:
    fake: FakeGitHub
    request: web.Request
    op: Operation
    params: dict[str, Any]
    body: Any

    def shape(self, status: int, overlay: Any) -> Any:
        """``overlay`` completed to the shape of this operation's ``status`` response."""
        return conform(self.op.response_schema(status) or {}, overlay)

    @property
    def repo(self) -> FakeRepo:
        found = self.fake.repos.get(f"{self.params['owner']}/{self.params['repo']}".lower())
        if found is None:
            raise _rejection(404, "Not Found")
        return found

    def api(self, path: str) -> str:
        return self.fake.url + path

    def html(self, path: str) -> str:
        return self.fake.html_base + path

    def paginate(self, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = min(int(self.params.get("per_page", 30)), 100)
        page = max(int(self.params.get("page", 1)), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []
        url = URL(str(self.request.url))

        def at(n: int) -> str:
            return str(url.update_query(page=str(n), per_page=str(per_page)))

        if page < last:
            links += [f'<{at(page + 1)}>; rel="next"', f'<{at(last)}>; rel="last"']
        if page > 1:
            links += [f'<{at(page - 1)}>; rel="prev"', f'<{at(1)}>; rel="first"']
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def user(self, login: str, *, bot: bool = False) -> dict[str, Any]:
        return self.fake.user_object(login, bot=bot)

    def bot(self) -> dict[str, Any]:
        return self.user(f"{self.fake.app_slug}[bot]", bot=True)

    def app_object(self) -> dict[str, Any]:
        fake = self.fake
        return {
            "id": fake.app_id,
            "slug": fake.app_slug,
            "name": "PloyD",
            "html_url": self.html(f"/apps/{fake.app_slug}"),
            "permissions": {
                "checks": "write",
                "contents": "read",
                "issues": "write",
                "metadata": "read",
                "pull_requests": "write",
                "statuses": "write",
            },
            "events": EVENTS,
        }

    def installation_object(self, inst_id: int) -> dict[str, Any]:
        inst = self.fake.installations[inst_id]
        return {
            "id": inst.id,
            "app_id": self.fake.app_id,
            "app_slug": self.fake.app_slug,
            "target_id": inst.account_id,
            "target_type": inst.account_type,
            "account": {
                "login": inst.account,
                "id": inst.account_id,
                "type": inst.account_type,
            },
            "permissions": inst.permissions,
            "events": EVENTS,
            "repository_selection": "selected",
            "access_tokens_url": self.api(f"/app/installations/{inst.id}/access_tokens"),
            "repositories_url": self.api("/installation/repositories"),
            "html_url": self.html(
                f"/organizations/{inst.account}/settings/installations/{inst.id}"
            ),
            "suspended_at": "2024-01-01T00:00:00Z" if inst.suspended else None,
            "suspended_by": None,
            "single_file_name": None,
        }

    def repo_object(self, repo: FakeRepo) -> dict[str, Any]:
        return {
            "id": repo.id,
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.user(repo.owner),
            "html_url": self.html(f"/{repo.full_name}"),
            "url": self.api(f"/repos/{repo.full_name}"),
            "clone_url": self.html(f"/{repo.full_name}.git"),
            "default_branch": repo.default_branch,
        }


# --------------------------------------------------------------------------- apps


def get_app(ctx: Ctx) -> Result:
    return 200, ctx.shape(200, ctx.app_object()), {}


def list_installations(ctx: Ctx) -> Result:
    ids = sorted(ctx.fake.installations)
    page, headers = ctx.paginate(ids)
    return 200, ctx.shape(200, [ctx.installation_object(i) for i in page]), headers


def create_access_token(ctx: Ctx) -> Result:
    inst = ctx.fake.installations.get(int(ctx.params["installation_id"]))
    if inst is None:
        raise _rejection(404, "Not Found")
    if inst.suspended:
        raise _rejection(403, "This installation has been suspended")
    body = ctx.body or {}
    names = {r.name for r in ctx.fake.repos.values() if r.installation_id == inst.id}
    for name in body.get("repositories", []):
        if name not in names:
            raise _rejection(
                422,
                f"There is at least one repository that does not exist or "
                f"is not accessible to the parent installation ({name}).",
            )
    token = ctx.fake.issue_token(inst.id)
    expires_at = utc_iso(ctx.fake.tokens[token][1])
    out = {
        "token": token,
        "expires_at": expires_at,
        "permissions": body.get("permissions") or inst.permissions,
        "repository_selection": "selected",
    }
    return 201, ctx.shape(201, out), {}


def get_repo_installation(ctx: Ctx) -> Result:
    return 200, ctx.shape(200, ctx.installation_object(ctx.repo.installation_id)), {}


def rate_limit(ctx: Ctx) -> Result:
    remaining = min(ctx.fake.rate_remaining.values(), default=5000)
    reset = int(ctx.fake.clock()) + 3600
    core = {"limit": 5000, "remaining": remaining, "reset": reset, "used": 5000 - remaining}
    return 200, ctx.shape(200, {"resources": {"core": core}, "rate": core}), {}


# --------------------------------------------------------------------------- code


def _commit_or_404(ctx: Ctx, ref: str | None) -> str:
    sha = ctx.repo.resolve(ref)
    if sha is None:
        raise _rejection(404, f"No commit found for the ref {ref}")
    return sha


def _content_entry(ctx: Ctx, repo: FakeRepo, path: str, sha: str, kind: str, size: int) -> dict:
    api = ctx.api(f"/repos/{repo.full_name}/contents/{path}")
    html = ctx.html(f"/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{sha}/{path}")
    git = ctx.api(f"/repos/{repo.full_name}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}")
    return {
        "type": kind,
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": sha,
        "size": size,
        "url": api,
        "html_url": html,
        "git_url": git,
        "download_url": ctx.html(f"/{repo.full_name}/raw/{path}") if kind == "file" else None,
        "_links": {"self": api, "git": git, "html": html},
    }


def get_content(ctx: Ctx) -> Result:
    repo = ctx.repo
    commit = _commit_or_404(ctx, ctx.params.get("ref"))
    files = repo.commits[commit]
    path = ctx.params["path"].strip("/")
    if path in files:
        data = files[path]
        entry = _content_entry(ctx, repo, path, blob_sha(data), "file", len(data))
        encoded = base64.encodebytes(data).decode("ascii")  # GitHub wraps at 60/76 columns
        return 200, {**entry, "content": encoded, "encoding": "base64"}, {}
    prefix = path + "/"
    below = sorted(p for p in files if p.startswith(prefix))
    if not below:
        raise _rejection(404, "Not Found")
    entries: dict[str, dict] = {}
    for p in below:
        child, _, rest = p[len(prefix) :].partition("/")
        full = prefix + child
        if rest:
            entries.setdefault(
                full, _content_entry(ctx, repo, full, fake_sha(commit, full), "dir", 0)
            )
        else:
            entries[full] = _content_entry(
                ctx, repo, full, blob_sha(files[p]), "file", len(files[p])
            )
    return 200, list(entries.values()), {}


def get_tree(ctx: Ctx) -> Result:
    repo = ctx.repo
    fake = ctx.fake
    known = fake.trees.get(ctx.params["tree_sha"])
    if known and known[0] == repo.full_name:
        commit, root = known[1], known[2]
    else:
        commit, root = _commit_or_404(ctx, ctx.params["tree_sha"]), ""
    files = repo.commits[commit]
    recursive = "recursive" in ctx.params
    prefix = root + "/" if root else ""
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in files if p.startswith(prefix)):
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            sub = "/".join(parts[:depth])
            if depth == 1 or recursive:
                entries.setdefault(sub, _tree_entry(ctx, repo, commit, prefix + sub, sub))
        if len(parts) == 1 or recursive:
            rel = "/".join(parts)
            data = files[path]
            entries[rel] = {
                "path": rel,
                "mode": "100644",
                "type": "blob",
                "sha": blob_sha(data),
                "size": len(data),
                "url": ctx.api(f"/repos/{repo.full_name}/git/blobs/{blob_sha(data)}"),
            }
    tree_sha = fake_sha(repo.full_name, commit, root)
    fake.trees[tree_sha] = (repo.full_name, commit, root)
    url = ctx.api(f"/repos/{repo.full_name}/git/trees/{tree_sha}")
    return (
        200,
        {"sha": tree_sha, "url": url, "tree": list(entries.values()), "truncated": False},
        {},
    )


def _tree_entry(ctx: Ctx, repo: FakeRepo, commit: str, full: str, rel: str) -> dict[str, Any]:
    sha = fake_sha(repo.full_name, commit, full)
    ctx.fake.trees[sha] = (repo.full_name, commit, full)
    return {
        "path": rel,
        "mode": "040000",
        "type": "tree",
        "sha": sha,
        "url": ctx.api(f"/repos/{repo.full_name}/git/trees/{sha}"),
    }


def download_tarball(ctx: Ctx) -> Result:
    repo = ctx.repo
    sha = _commit_or_404(ctx, ctx.params["ref"])
    location = f"{ctx.fake.base_url}/_codeload/{repo.full_name}/legacy.tar.gz/{sha}"
    return 302, None, {"Location": location}


async def codeload(fake: FakeGitHub, request: web.Request) -> web.StreamResponse:
    """``codeload.github.com``: the tarball a ``tarball/{ref}`` redirect points at."""
    owner, name, _, sha = request.match_info["tail"].split("/", 3)
    repo = fake.repos.get(f"{owner}/{name}".lower())
    if repo is None or sha not in repo.commits:
        return web.json_response({"message": "Not Found"}, status=404)
    buf = io.BytesIO()
    top = f"{repo.owner}-{repo.name}-{sha[:7]}"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in sorted(repo.commits[sha].items()):
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return web.Response(body=buf.getvalue(), content_type="application/x-gzip")


# --------------------------------------------------------------------------- pulls


def _pull(ctx: Ctx) -> Any:
    pull = ctx.repo.pulls.get(int(ctx.params["pull_number"]))
    if pull is None:
        raise _rejection(404, "Not Found")
    return pull


def _pull_files(ctx: Ctx) -> list[dict[str, Any]]:
    repo, pull = ctx.repo, _pull(ctx)
    if pull.files is not None:
        files = [
            {
                "status": "modified",
                "additions": 0,
                "deletions": 0,
                "changes": 0,
                "sha": fake_sha(f["filename"]),
                **f,
            }
            for f in pull.files
        ]
    else:
        files = diff_files(repo.commits[pull.base_sha], repo.commits[pull.head_sha])
    return [_file_links(ctx, repo, pull.head_sha, f) for f in files]


def _file_links(ctx: Ctx, repo: FakeRepo, sha: str, entry: dict[str, Any]) -> dict[str, Any]:
    name = entry["filename"]
    return {
        **entry,
        "blob_url": ctx.html(f"/{repo.full_name}/blob/{sha}/{name}"),
        "raw_url": ctx.html(f"/{repo.full_name}/raw/{sha}/{name}"),
        "contents_url": ctx.api(f"/repos/{repo.full_name}/contents/{name}?ref={sha}"),
    }


def get_pull(ctx: Ctx) -> Result:
    repo, pull = ctx.repo, _pull(ctx)
    head_repo = ctx.fake.repos.get((pull.head_repo or repo.full_name).lower(), repo)
    base = f"/repos/{repo.full_name}"
    n = pull.number

    def side(r: FakeRepo, ref: str, sha: str) -> dict[str, Any]:
        return {
            "ref": ref,
            "sha": sha,
            "label": f"{r.owner}:{ref}",
            "user": ctx.user(r.owner),
            "repo": ctx.repo_object(r),
        }

    overlay = {
        "id": repo.id * 100_000 + n,
        "number": n,
        "state": pull.state,
        "title": pull.title,
        "body": pull.body,
        "draft": pull.draft,
        "user": ctx.user(pull.user),
        "url": ctx.api(f"{base}/pulls/{n}"),
        "html_url": ctx.html(f"/{repo.full_name}/pull/{n}"),
        "issue_url": ctx.api(f"{base}/issues/{n}"),
        "comments_url": ctx.api(f"{base}/issues/{n}/comments"),
        "statuses_url": ctx.api(f"{base}/statuses/{pull.head_sha}"),
        "head": side(head_repo, pull.head_ref, pull.head_sha),
        "base": side(repo, pull.base_ref, pull.base_sha),
        "merged": False,
        "mergeable": None,
        "merged_at": None,
        "merge_commit_sha": None,
        "changed_files": len(_pull_files(ctx)),
        "author_association": "CONTRIBUTOR",
    }
    return 200, ctx.shape(200, overlay), {}


def list_pull_files(ctx: Ctx) -> Result:
    page, headers = ctx.paginate(_pull_files(ctx))
    return 200, page, headers


def compare(ctx: Ctx) -> Result:
    repo = ctx.repo
    base_ref, sep, head_ref = ctx.params["basehead"].partition("...")
    if not sep:
        raise _rejection(404, "Not Found")
    base, head = repo.resolve(base_ref), repo.resolve(head_ref)
    if base is None or head is None:
        raise _rejection(404, "Not Found")
    files = [
        _file_links(ctx, repo, head, f) for f in diff_files(repo.commits[base], repo.commits[head])
    ]
    commits = [] if base == head else [head]
    page, headers = ctx.paginate(commits)
    path = f"/{repo.full_name}/compare/{base_ref}...{head_ref}"
    overlay = {
        "url": ctx.api(f"/repos{path}"),
        "html_url": ctx.html(path),
        "permalink_url": ctx.html(f"/{repo.full_name}/compare/{base}...{head}"),
        "diff_url": ctx.html(path + ".diff"),
        "patch_url": ctx.html(path + ".patch"),
        "base_commit": {"sha": base},
        "merge_base_commit": {"sha": base},
        "status": "identical" if base == head else "ahead",
        "ahead_by": len(commits),
        "behind_by": 0,
        "total_commits": len(commits),
        "commits": [{"sha": c} for c in page],
        "files": files[:300],
    }
    return 200, ctx.shape(200, overlay), headers


# --------------------------------------------------------------------------- checks


def _require_commit(ctx: Ctx, sha: str) -> str:
    if sha not in ctx.repo.commits:
        raise _rejection(422, f"No commit found for SHA: {sha}", violation="semantic")
    return sha


def _apply_run_fields(ctx: Ctx, run: dict[str, Any], body: dict[str, Any]) -> None:
    fake = ctx.fake
    now = utc_iso(fake.clock())
    for key in ("name", "details_url", "external_id", "started_at", "completed_at"):
        if key in body:
            run[key] = body[key]
    if "conclusion" in body:
        run["conclusion"], run["status"] = body["conclusion"], "completed"
    elif "status" in body:
        run["status"] = body["status"]
    if run["status"] == "completed" and run.get("conclusion") is None:
        raise _rejection(
            422,
            'Invalid request.\n\n"conclusion" is required when status is completed.',
            violation="semantic",
        )
    if run["status"] == "completed" and not run.get("completed_at"):
        run["completed_at"] = now
    if "output" in body:
        out = body["output"]
        notes = fake.annotations.setdefault(run["id"], [])
        notes.extend(out.get("annotations", []))
        run["output"] = {
            "title": out.get("title", run["output"].get("title")),
            "summary": out["summary"],
            "text": out.get("text"),
            "annotations_count": len(notes),
            "annotations_url": ctx.api(f"{run['_base']}/check-runs/{run['id']}/annotations"),
        }
    if "actions" in body:
        run["_actions"] = body["actions"]


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not k.startswith("_")}


def create_check_run(ctx: Ctx) -> Result:
    repo, body = ctx.repo, ctx.body
    head_sha = _require_commit(ctx, body["head_sha"])
    run_id = ctx.fake.next_id()
    suite_id = ctx.fake.add_check_suite(repo.full_name, head_sha)
    base = f"/repos/{repo.full_name}"
    run: dict[str, Any] = {
        "id": run_id,
        "node_id": f"CR_{run_id}",
        "head_sha": head_sha,
        "name": body["name"],
        "url": ctx.api(f"{base}/check-runs/{run_id}"),
        "html_url": ctx.html(f"/{repo.full_name}/runs/{run_id}"),
        "details_url": None,
        "external_id": "",
        "status": "queued",
        "conclusion": None,
        "started_at": utc_iso(ctx.fake.clock()),
        "completed_at": None,
        "output": {
            "title": None,
            "summary": None,
            "text": None,
            "annotations_count": 0,
            "annotations_url": ctx.api(f"{base}/check-runs/{run_id}/annotations"),
        },
        "check_suite": {"id": suite_id},
        "app": ctx.app_object(),
        "pull_requests": [],
        "_repo": repo.full_name.lower(),
        "_base": base,
        "_actions": [],
    }
    _apply_run_fields(ctx, run, body)
    ctx.fake.check_runs[run_id] = run
    return 201, ctx.shape(201, _public(run)), {}


def _run(ctx: Ctx) -> dict[str, Any]:
    run = ctx.fake.check_runs.get(int(ctx.params["check_run_id"]))
    if run is None or run["_repo"] != ctx.repo.full_name.lower():
        raise _rejection(404, "Not Found")
    return run


def get_check_run(ctx: Ctx) -> Result:
    return 200, ctx.shape(200, _public(_run(ctx))), {}


def update_check_run(ctx: Ctx) -> Result:
    run = _run(ctx)
    updated = dict(run, output=dict(run["output"]))
    _apply_run_fields(ctx, updated, ctx.body)
    run.update(updated)
    return 200, ctx.shape(200, _public(run)), {}


def list_check_runs_for_ref(ctx: Ctx) -> Result:
    repo, p = ctx.repo, ctx.params
    sha = repo.resolve(p["ref"])
    if sha is None:
        raise _rejection(404, f"No commit found for SHA: {p['ref']}")
    runs = [
        r
        for r in ctx.fake.check_runs.values()
        if r["_repo"] == repo.full_name.lower() and r["head_sha"] == sha
    ]
    if "check_name" in p:
        runs = [r for r in runs if r["name"] == p["check_name"]]
    if "status" in p:
        runs = [r for r in runs if r["status"] == p["status"]]
    if "app_id" in p:
        runs = [r for r in runs if r["app"]["id"] == p["app_id"]]
    if p.get("filter", "latest") == "latest":
        latest: dict[str, dict[str, Any]] = {}
        for r in runs:
            latest[r["name"]] = (
                r if r["name"] not in latest else max(latest[r["name"]], r, key=lambda x: x["id"])
            )
        runs = list(latest.values())
    runs.sort(key=lambda r: -r["id"])
    page, headers = ctx.paginate(runs)
    body = {"total_count": len(runs), "check_runs": [_public(r) for r in page]}
    return 200, ctx.shape(200, body), headers


def rerequest_check_suite(ctx: Ctx) -> Result:
    suite = ctx.fake.check_suites.get(int(ctx.params["check_suite_id"]))
    if suite is None or suite["repo"] != ctx.repo.full_name.lower():
        raise _rejection(404, "Not Found")
    ctx.fake.rerequested_suites.append(int(suite["id"]))
    return 201, {}, {}


def create_status(ctx: Ctx) -> Result:
    repo, body = ctx.repo, ctx.body
    sha = _require_commit(ctx, ctx.params["sha"])
    status_id = ctx.fake.next_id()
    now = utc_iso(ctx.fake.clock())
    status = {
        "id": status_id,
        "node_id": f"SC_{status_id}",
        "url": ctx.api(f"/repos/{repo.full_name}/statuses/{sha}"),
        "avatar_url": None,
        "state": body["state"],
        "description": body.get("description"),
        "target_url": body.get("target_url"),
        "context": body.get("context", "default"),
        "created_at": now,
        "updated_at": now,
        "creator": ctx.bot(),
    }
    ctx.fake.statuses.append({**status, "repo": repo.full_name.lower(), "sha": sha})
    return 201, ctx.shape(201, status), {"Location": status["url"]}


# --------------------------------------------------------------------------- issues


def _comment_object(ctx: Ctx, c: dict[str, Any], status: int) -> Any:
    return ctx.shape(status, _public(c))


def list_comments(ctx: Ctx) -> Result:
    repo, number = ctx.repo.full_name.lower(), int(ctx.params["issue_number"])
    found = [c for c in ctx.fake.comments.values() if c["_repo"] == repo and c["_issue"] == number]
    page, headers = ctx.paginate(sorted(found, key=lambda c: c["id"]))
    return 200, ctx.shape(200, [_public(c) for c in page]), headers


def create_comment(ctx: Ctx) -> Result:
    number = int(ctx.params["issue_number"])
    comment = ctx.fake.add_comment(ctx.repo.full_name, number, ctx.body["body"], user=None)
    return 201, _comment_object(ctx, comment, 201), {"Location": comment["url"]}


def _comment(ctx: Ctx) -> dict[str, Any]:
    c = ctx.fake.comments.get(int(ctx.params["comment_id"]))
    if c is None or c["_repo"] != ctx.repo.full_name.lower():
        raise _rejection(404, "Not Found")
    return c


def edit_comment(ctx: Ctx) -> Result:
    c = _comment(ctx)
    c.update(body=ctx.body["body"], updated_at=utc_iso(ctx.fake.clock()))
    return 200, _comment_object(ctx, c, 200), {}


def delete_comment(ctx: Ctx) -> Result:
    del ctx.fake.comments[_comment(ctx)["id"]]
    return 204, None, {}


def add_reaction(ctx: Ctx) -> Result:
    c, content = _comment(ctx), ctx.body["content"]
    for r in ctx.fake.reactions:
        if r["_comment"] == c["id"] and r["content"] == content and r["user"] == ctx.bot():
            return 200, ctx.shape(200, _public(r)), {}
    rid = ctx.fake.next_id()
    reaction = {
        "id": rid,
        "node_id": f"REA_{rid}",
        "user": ctx.bot(),
        "content": content,
        "created_at": utc_iso(ctx.fake.clock()),
        "_comment": c["id"],
    }
    ctx.fake.reactions.append(reaction)
    return 201, ctx.shape(201, _public(reaction)), {}


def collaborator_permission(ctx: Ctx) -> Result:
    username = ctx.params["username"]
    role = ctx.repo.roles.get(username)
    if role is None:
        raise _rejection(404, f"{username} is not a user")
    overlay = {
        "permission": ROLE_TO_PERMISSION[role],
        "role_name": role,
        "user": {**ctx.user(username), "role_name": role},
    }
    return 200, ctx.shape(200, overlay), {}


HANDLERS: dict[str, Callable[[Ctx], Result]] = {
    "GET /app": get_app,
    "GET /app/installations": list_installations,
    "POST /app/installations/{installation_id}/access_tokens": create_access_token,
    "GET /repos/{owner}/{repo}/installation": get_repo_installation,
    "GET /rate_limit": rate_limit,
    "GET /repos/{owner}/{repo}/contents/{path}": get_content,
    "GET /repos/{owner}/{repo}/git/trees/{tree_sha}": get_tree,
    "GET /repos/{owner}/{repo}/tarball/{ref}": download_tarball,
    "GET /repos/{owner}/{repo}/pulls/{pull_number}": get_pull,
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/files": list_pull_files,
    "GET /repos/{owner}/{repo}/compare/{basehead}": compare,
    "POST /repos/{owner}/{repo}/check-runs": create_check_run,
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}": get_check_run,
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}": update_check_run,
    "GET /repos/{owner}/{repo}/commits/{ref}/check-runs": list_check_runs_for_ref,
    "POST /repos/{owner}/{repo}/check-suites/{check_suite_id}/rerequest": rerequest_check_suite,
    "POST /repos/{owner}/{repo}/statuses/{sha}": create_status,
    "GET /repos/{owner}/{repo}/issues/{issue_number}/comments": list_comments,
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments": create_comment,
    "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}": edit_comment,
    "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}": delete_comment,
    "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": add_reaction,
    "GET /repos/{owner}/{repo}/collaborators/{username}/permission": collaborator_permission,
}


async def dispatch(ctx: Ctx) -> Result:
    handler = HANDLERS.get(ctx.op.key)
    if handler is None:  # described but not implemented: the fake's own gap
        raise _rejection(404, f"fake GitHub does not implement {ctx.op.key}", "undescribed")
    return handler(ctx)
