"""Through `ployd serve`: a secret set over the admin API reaches its job's agent, and
neither its value nor its base64 or URL-encoded forms reach the stored log, the server's
log or the audit trail; the CLI reads values from standard input only."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy import select

from app.cli import build_parser
from app.cli import main as cli_main
from app.store.models import AuditRecord
from tests.e2e.conftest import Harness

VALUE = "p@ss w/rd+Zq9?&=secret-41"
STEPS = (
    "version: 1\njobs:\n  t:\n    secrets: [API_TOKEN]\n    steps:\n"
    '      - run: echo "plain $API_TOKEN"\n'
    '      - run: printf \'b64 %s\\n\' "$(printf %s "$API_TOKEN" | base64 -w0)"\n'
    '      - run: python3 -c \'import os,urllib.parse as u; v=os.environ["API_TOKEN"];'
    ' print("url", u.quote(v, safe=""), u.quote_plus(v, safe=""))\'\n'
    '      - run: echo "done $((6*7))"\n'
)


async def test_value_and_its_encodings_never_reach_the_log(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    repo, _ = make_repo({".ployd.yml": STEPS})
    async with serve(agents=1) as h:
        h: Harness
        status, body = await _put(h, {"repo": str(repo), "name": "API_TOKEN", "value": VALUE})
        assert status == 200, body
        assert VALUE not in repr(body)
        status, listed = await h.get(f"/api/v1/secrets?repo={repo}")
        assert status == 200 and [s["name"] for s in listed["secrets"]] == ["API_TOKEN"]
        assert VALUE not in repr(listed)
        pid = await h.start(repo)
        p = await h.finished(pid)
        log = h.log(pid, "t")
        assert p.state == "succeeded", log
        assert "done 42" in log and "plain ***" in log
        forms = {
            VALUE,
            base64.b64encode(VALUE.encode()).decode(),
            base64.b64encode(VALUE.encode()).decode().rstrip("="),
            quote(VALUE, safe=""),
            quote_plus(VALUE, safe=""),
        }
        for form in forms:
            assert form not in log, form
        with h.engine.db.session() as s:
            audit = [(a.action, a.details) for a in s.scalars(select(AuditRecord))]
        assert ("secret.read" in [a for a, _ in audit]) and VALUE not in repr(audit)
    server_log = "\n".join(r.getMessage() for r in caplog.records)
    for form in forms:
        assert form not in server_log


async def _put(h: Harness, body: dict[str, Any]) -> tuple[int, Any]:
    async with h.http.put(h.url + "/api/v1/secrets", json=body) as r:
        return r.status, await r.json()


async def test_admin_api_needs_the_token_and_validates(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({"README": "x"})
    async with serve(agents=0, admin_token="adm-token-123") as h:
        status, _ = await _put(h, {"repo": str(repo), "name": "T", "value": "v-123"})
        assert status == 401
        auth = {"Authorization": "Bearer adm-token-123"}
        async with h.http.put(
            h.url + "/api/v1/secrets", json={"repo": str(repo), "name": "T"}, headers=auth
        ) as r:
            assert r.status == 400
        async with h.http.put(
            h.url + "/api/v1/secrets",
            json={"repo": str(repo), "name": "T", "reference": "aws-ssm:/p", "branch": "main"},
            headers=auth,
        ) as r:
            assert r.status == 200
            assert (await r.json())["branch"] == "main"
        status, body = await h.get(f"/api/v1/secrets?repo={repo}", headers=auth)
        assert body["secrets"][0]["reference"] == "aws-ssm:/p"
        async with h.http.delete(
            h.url + f"/api/v1/secrets?repo={repo}&name=T&branch=main", headers=auth
        ) as r:
            assert r.status == 200
        async with h.http.delete(h.url + f"/api/v1/secrets?repo={repo}&name=T", headers=auth) as r:
            assert r.status == 404


def test_cli_has_no_value_argument_and_reads_stdin(
    make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    db_url: str,
) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["secrets"]  # type: ignore[union-attr]
    set_parser = next(a for a in sub._actions if a.dest == "action").choices["set"]  # type: ignore[union-attr]
    options = {o for a in set_parser._actions for o in a.option_strings}
    positionals = [a.dest for a in set_parser._actions if not a.option_strings]
    assert positionals == ["name"]  # the value is no argument...
    assert not {o for o in options if "value" in o or "secret" in o}  # ...nor an option
    with pytest.raises(SystemExit):
        build_parser().parse_args(["secrets", "set", "--repo", "x", "NAME", "the-value"])

    repo, _ = make_repo({"README": "x"})
    monkeypatch.setenv("PLOYD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PLOYD_DATABASE_URL", db_url)
    monkeypatch.setenv("PLOYD_SECRET_KEY", "cli-test-key-0123456789")
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin-value\n"))
    assert cli_main(["secrets", "set", "--repo", str(repo), "HF_TOKEN", "--branch", "main"]) == 0
    assert cli_main(["secrets", "list", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "HF_TOKEN" in out and "branch=main" in out and "from-stdin-value" not in out
    from app.secrets.crypto import Cipher, LocalKey
    from app.secrets.store import SecretStore
    from app.store.db import Database
    from app.store.models import Secret

    db = Database.connect(db_url)
    try:
        store = SecretStore(db, Cipher(LocalKey(b"cli-test-key-0123456789")))
        with db.session() as s:
            assert store.reveal(s.scalars(select(Secret)).one()) == "from-stdin-value"
    finally:
        db.dispose()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli_main(["secrets", "set", "--repo", str(repo), "EMPTY"]) == 2
    assert cli_main(["secrets", "delete", "--repo", str(repo), "HF_TOKEN"]) == 1  # scoped
    assert cli_main(["secrets", "delete", "--repo", str(repo), "HF_TOKEN", "--branch", "main"]) == 0
    err = capsys.readouterr().err
    assert "no secret HF_TOKEN" in err
