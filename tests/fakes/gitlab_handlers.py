"""The fake GitLab's endpoint handlers, one function per contract endpoint.

Each takes the fake and a ``Call`` (validated parameters, the project named by ``:id``) and
returns ``(status, payload, headers)``; ``payload`` is JSON-able, or ``bytes`` for raw bodies.
Errors are raised as ``GitLabAnswer`` with GitLab's wording.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from tests.fakes.gitlab_model import FakeMR, FakeProject, GitLabAnswer, now_iso

if TYPE_CHECKING:
    from tests.fakes.gitlab import FakeGitLab

Result = tuple[int, Any, dict[str, str]]
# state -> the state machine event it fires (see section 12 of the contract)
EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "success",
    "failed": "drop",
    "canceled": "cancel",
    "skipped": "skip",
}
# event -> the states it may leave, for a status that is still pending or running
LEGAL_FROM = {
    "enqueue": (),
    "run": ("pending",),
    "success": ("pending", "running"),
    "drop": ("pending", "running"),
    "cancel": ("pending", "running"),
    "skip": ("pending",),
}


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any]
    project: FakeProject | None
    base_url: str
    token: str = ""  # what the call authenticated with

    @property
    def proj(self) -> FakeProject:
        assert self.project is not None
        return self.project


def not_found(what: str) -> GitLabAnswer:
    return GitLabAnswer(404, {"message": f"404 {what} Not Found"})


def paginate(call: Call, items: list[Any]) -> Result:
    """One page of ``items`` with GitLab's pagination headers and ``Link``."""
    page = max(int(call.params.get("page") or 1), 1)
    per_page = min(max(int(call.params.get("per_page") or 20), 1), 100)
    total_pages = max((len(items) + per_page - 1) // per_page, 1)
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Total": str(len(items)),
        "X-Total-Pages": str(total_pages),
        "X-Next-Page": str(page + 1) if page < total_pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
    }
    query = {k: v for k, v in call.params.items() if k not in ("id", "page", "per_page")}
    query = {k: v for k, v in query.items() if not isinstance(v, bool | dict)}
    links = []
    for rel, target in (("next", page + 1), ("first", 1), ("last", total_pages)):
        if rel == "next" and page >= total_pages:
            continue
        qs = urlencode({**query, "page": target, "per_page": per_page})
        links.append(f'<{call.base_url}{call.path}?{qs}>; rel="{rel}"')
    headers["Link"] = ", ".join(links)
    return 200, chunk, headers


def _mr(fake: FakeGitLab, call: Call) -> FakeMR:
    mr = call.proj.mrs.get(int(call.params["merge_request_iid"]))
    if mr is None:
        raise not_found("Merge Request")
    return mr


def _note(fake: FakeGitLab, call: Call) -> dict[str, Any]:
    mr = _mr(fake, call)
    note = fake.notes.get(int(call.params["note_id"]))
    if note is None or note["_mr"] != (call.proj.id, mr.iid):
        raise not_found("Note")
    return note


# ------------------------------------------------------------------ statuses


def create_status(fake: FakeGitLab, call: Call) -> Result:
    proj, params = call.proj, call.params
    sha = proj.resolve(params["sha"])
    if sha is None or sha != params["sha"]:
        raise not_found("Commit")
    name = params.get("name") or params.get("context") or "default"
    # GitLab's order: the request's ref, else the ref of a pipeline of the commit (here: of
    # a status already on it), else a branch containing the commit; else it refuses.
    ref = (
        params.get("ref")
        or next((s["ref"] for s in reversed(proj.statuses) if s["sha"] == sha), None)
        or proj.branch_containing(sha)
    )
    if ref is None:
        raise GitLabAnswer(404, {"message": "404 References for commit Not Found"})
    state = params["state"]
    event = EVENTS[state]
    current = next(
        (
            s
            for s in reversed(proj.statuses)
            if s["sha"] == sha
            and s["name"] == name
            and s["ref"] == ref
            and s["status"] in ("pending", "running")
        ),
        None,
    )
    if current is not None and current["status"] not in LEGAL_FROM[event]:
        was = current["status"]
        raise GitLabAnswer(
            400,
            {
                "message": f"Cannot transition status via :{event} from :{was} "
                f'(Reason(s): Status cannot transition via "{event}")'
            },
        )
    now = now_iso()
    status = current or {
        "id": fake.next_id(),
        "sha": sha,
        "ref": ref,
        "name": name,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "allow_failure": False,
        "author": fake.user_object(fake.token_user),
        "coverage": None,
        "target_url": None,
        "description": None,
        "pipeline_id": params.get("pipeline_id") or 1,
    }
    status["status"] = state
    for key in ("target_url", "description", "coverage"):
        if key in params:
            status[key] = params[key]
    if state == "running" and status["started_at"] is None:
        status["started_at"] = now
    if state in ("success", "failed", "canceled", "skipped"):
        status["finished_at"] = now
    if current is None:
        proj.statuses.append(status)
    return 201, _public(status), {}


def list_statuses(fake: FakeGitLab, call: Call) -> Result:
    proj, params = call.proj, call.params
    sha = proj.resolve(params["sha"])
    if sha is None:
        raise not_found("Commit")
    items = [s for s in proj.statuses if s["sha"] == sha]
    for key in ("ref", "name"):
        if key in params:
            items = [s for s in items if s[key] == params[key]]
    if not params.get("all"):
        latest: dict[str, dict[str, Any]] = {}
        for s in items:
            latest[s["name"]] = s
        items = list(latest.values())
    if params.get("sort") == "desc":
        items = items[::-1]
    return paginate(call, [{k: v for k, v in _public(s).items() if k != "coverage"} for s in items])


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_") and k != "pipeline_id"}


# ------------------------------------------------------------------ notes


def list_notes(fake: FakeGitLab, call: Call) -> Result:
    mr = _mr(fake, call)
    notes = [n for n in fake.notes.values() if n["_mr"] == (call.proj.id, mr.iid)]
    key = call.params.get("order_by", "created_at")
    notes.sort(key=lambda n: (n[key], n["id"]), reverse=call.params.get("sort", "desc") == "desc")
    return paginate(call, [_public(n) for n in notes])


def get_note(fake: FakeGitLab, call: Call) -> Result:
    return 200, _public(_note(fake, call)), {}


def create_note(fake: FakeGitLab, call: Call) -> Result:
    mr = _mr(fake, call)
    note = fake.add_note(call.proj, mr.iid, call.params["body"], author=fake.token_user)
    return 201, _public(note), {}


def edit_note(fake: FakeGitLab, call: Call) -> Result:
    note = _note(fake, call)
    note["body"] = call.params["body"]
    note["updated_at"] = now_iso()
    return 200, _public(note), {}


def delete_note(fake: FakeGitLab, call: Call) -> Result:
    note = _note(fake, call)
    del fake.notes[note["id"]]
    return 204, None, {}


# ------------------------------------------------------------------ files


def _blob(call: Call) -> tuple[str, bytes]:
    proj = call.proj
    sha = proj.resolve(call.params.get("ref"))
    path = call.params["file_path"]
    if sha is None:
        raise not_found("Commit")
    content = proj.commits[sha].files.get(path)
    if content is None:
        raise not_found("File")
    return sha, content


def raw_file(fake: FakeGitLab, call: Call) -> Result:
    sha, content = _blob(call)
    path = call.params["file_path"]
    headers = {
        "X-Gitlab-File-Name": path.rsplit("/", 1)[-1],
        "X-Gitlab-File-Path": path,
        "X-Gitlab-Ref": call.params.get("ref") or call.proj.default_branch,
        "X-Gitlab-Commit-Id": sha,
        "X-Gitlab-Last-Commit-Id": sha,
        "X-Gitlab-Size": str(len(content)),
        "Content-Type": "text/plain; charset=utf-8",
    }
    return 200, (b"" if call.method == "HEAD" else content), headers


def file_json(fake: FakeGitLab, call: Call) -> Result:
    sha, content = _blob(call)
    path = call.params["file_path"]
    return (
        200,
        {
            "file_name": path.rsplit("/", 1)[-1],
            "file_path": path,
            "size": len(content),
            "encoding": "base64",
            "content": base64.b64encode(content).decode(),
            "ref": call.params["ref"],
            "commit_id": sha,
            "last_commit_id": sha,
            "execute_filemode": False,
        },
        {},
    )


# ------------------------------------------------------------------ members, users


def member_all(fake: FakeGitLab, call: Call) -> Result:
    user_id = int(call.params["user_id"])
    levels = [
        lvl
        for lvl in (call.proj.members.get(user_id), call.proj.inherited.get(user_id))
        if lvl is not None
    ]
    username = fake.username_of(user_id)
    if not levels or username is None:
        raise not_found("Member")
    return (
        200,
        {
            **fake.user_object(username),
            "access_level": max(levels),
            "created_at": now_iso(),
            "created_by": None,
            "expires_at": None,
            "group_saml_identity": None,
        },
        {},
    )


def find_users(fake: FakeGitLab, call: Call) -> Result:
    name = str(call.params.get("username", "")).lower()
    found = [fake.user_object(u) for u in fake.users if not name or u.lower() == name]
    return paginate(call, found)


# ------------------------------------------------------------------ award emoji


def _awardable(fake: FakeGitLab, call: Call) -> tuple[str, int]:
    if "note_id" in call.params:
        return "Note", int(_note(fake, call)["id"])
    return "MergeRequest", _mr(fake, call).id


def list_awards(fake: FakeGitLab, call: Call) -> Result:
    target = _awardable(fake, call)
    items = [a for a in fake.awards.values() if a["_on"] == target]
    return paginate(call, [_public(a) for a in items])


def get_award(fake: FakeGitLab, call: Call) -> Result:
    award = fake.awards.get(int(call.params["award_id"]))
    if award is None or award["_on"] != _awardable(fake, call):
        raise not_found("Award Emoji")
    return 200, _public(award), {}


def create_award(fake: FakeGitLab, call: Call) -> Result:
    kind, target_id = _awardable(fake, call)
    name = call.params["name"]
    if not re.fullmatch(r"[a-z0-9_+\-]+", name):
        raise not_found("Award Emoji Name is not a valid emoji name")
    user = fake.user_object(fake.token_user)
    for award in fake.awards.values():
        mine = award["user"]["id"] == user["id"]
        if award["_on"] == (kind, target_id) and award["name"] == name and mine:
            raise not_found("Award Emoji Name has already been taken")
    now = now_iso()
    award = {
        "id": fake.next_id(),
        "name": name,
        "user": user,
        "created_at": now,
        "updated_at": now,
        "awardable_id": target_id,
        "awardable_type": kind,
        "_on": (kind, target_id),
    }
    fake.awards[award["id"]] = award
    return 201, _public(award), {}


def delete_award(fake: FakeGitLab, call: Call) -> Result:
    award = fake.awards.get(int(call.params["award_id"]))
    if award is None or award["_on"] != _awardable(fake, call):
        raise not_found("Award Emoji")
    del fake.awards[award["id"]]
    return 204, None, {}


# ------------------------------------------------------------------ merge requests, compare


def mr_changes_list(proj: FakeProject, mr: FakeMR) -> list[dict[str, Any]]:
    if mr.changes is not None:
        return mr.changes
    return proj.diff(mr.base_sha, mr.sha)


def get_mr(fake: FakeGitLab, call: Call) -> Result:
    return 200, fake.mr_object(call.proj, _mr(fake, call)), {}


def mr_diffs(fake: FakeGitLab, call: Call) -> Result:
    return paginate(call, mr_changes_list(call.proj, _mr(fake, call)))


def mr_changes(fake: FakeGitLab, call: Call) -> Result:
    mr = _mr(fake, call)
    changes = mr_changes_list(call.proj, mr)
    return 200, {**fake.mr_object(call.proj, mr), "changes": changes, "overflow": False}, {}


def mr_raw_diffs(fake: FakeGitLab, call: Call) -> Result:
    changes = mr_changes_list(call.proj, _mr(fake, call))
    text = "".join(f"diff --git a/{c['old_path']} b/{c['new_path']}\n{c['diff']}" for c in changes)
    return 200, text.encode(), {"Content-Type": "text/plain"}


def compare(fake: FakeGitLab, call: Call) -> Result:
    proj = call.proj
    base, head = proj.resolve(call.params["from"]), proj.resolve(call.params["to"])
    if base is None or head is None:
        raise not_found("Ref")
    start = base if call.params.get("straight") else proj.merge_base(base, head)
    seen = set(proj.ancestors(start)) if start else set()
    commits = [
        {"id": sha, "short_id": sha[:8], "title": proj.commits[sha].message}
        for sha in reversed(proj.ancestors(head))
        if sha not in seen
    ]
    return (
        200,
        {
            "commit": commits[-1] if commits else None,
            "commits": commits,
            "diffs": proj.diff(start, head),
            "compare_timeout": False,
            "compare_same_ref": base == head,
            "web_url": f"{fake.web_base}/{proj.path_with_namespace}/-/compare/{base}...{head}",
        },
        {},
    )


def token_self(fake: FakeGitLab, call: Call) -> Result:
    """Section 13: any scope may ask; only personal (project, group) access tokens."""
    scopes = fake.token_scopes.get(call.token)
    if scopes is None:
        raise GitLabAnswer(
            400,
            {
                "message": "400 Bad request - This endpoint requires token type to be a "
                "personal access token"
            },
        )
    token_id = 1 + sorted(fake.tokens).index(call.token)
    return (
        200,
        {
            "id": token_id,
            "name": f"token-{token_id}",
            "revoked": False,
            "created_at": now_iso(),
            "description": "",
            "scopes": list(scopes),
            "user_id": fake.user_id(fake.token_user),
            "last_used_at": now_iso(),
            "active": True,
            "expires_at": None,
            "last_used_ips": [],
        },
        {},
    )


def create_deploy_token(fake: FakeGitLab, call: Call) -> Result:
    """Section 14: needs an api token and the Maintainer role."""
    _maintainer_with_api(fake, call)
    expires: float | None = None
    if call.params.get("expires_at"):
        when = datetime.fromisoformat(str(call.params["expires_at"]).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        expires = when.timestamp()
    token_id = len(fake.deploy_tokens) + 1
    username = call.params.get("username") or f"gitlab+deploy-token-{token_id}"
    token = {
        "id": token_id,
        "name": call.params["name"],
        "username": username,
        "expires_at": None if expires is None else _iso(expires),
        "token": f"gldt-{base64.b32encode(token_id.to_bytes(4, 'big')).decode().lower()}"
        f"{fake.next_id()}deploy",
        "revoked": False,
        "expired": False,
        "scopes": list(call.params["scopes"]),
    }
    fake.deploy_tokens.append({**token, "_project": call.proj.id, "_expires": expires})
    return 201, token, {}


def delete_deploy_token(fake: FakeGitLab, call: Call) -> Result:
    """Section 14, delete: the project's token, 204; 404 when it has none of that id."""
    _maintainer_with_api(fake, call)
    token_id = int(call.params["token_id"])
    for d in fake.deploy_tokens:
        if d["id"] == token_id and d["_project"] == call.proj.id and not d.get("_deleted"):
            d["_deleted"] = True
            return 204, None, {}
    raise GitLabAnswer(404, {"message": "404 Not Found"})


def _maintainer_with_api(fake: FakeGitLab, call: Call) -> None:
    if "api" not in fake.token_scopes.get(call.token, []):
        raise GitLabAnswer(
            403,
            {
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided "
                "by the access token.",
                "scope": "api",
            },
        )
    if fake.bot_role < 40:
        raise GitLabAnswer(403, {"message": "403 Forbidden"})


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


HANDLERS: dict[str, Callable[[FakeGitLab, Call], Result]] = {
    name: fn
    for name, fn in globals().items()
    if callable(fn)
    and name
    in {
        "create_status",
        "list_statuses",
        "list_notes",
        "get_note",
        "create_note",
        "edit_note",
        "delete_note",
        "raw_file",
        "file_json",
        "member_all",
        "find_users",
        "list_awards",
        "get_award",
        "create_award",
        "delete_award",
        "get_mr",
        "mr_diffs",
        "mr_changes",
        "mr_raw_diffs",
        "compare",
        "token_self",
        "create_deploy_token",
        "delete_deploy_token",
    }
}
