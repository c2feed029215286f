"""`ployd agents token create|list|disable|enable` against this server's database (both
databases): the token printed once on standard output, the agents' table, and clear
errors for bad input (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main as cli_main
from app.protocol import Gpu, Hardware, Registration


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    monkeypatch.setenv("PLOYD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PLOYD_DATABASE_URL", db_url)
    monkeypatch.setenv("PLOYD_SECRET_KEY", "cli-test-key-0123456789")
    return db_url


def _register(db_url: str, token: str, name: str) -> str:
    """What ``POST /api/v1/agent/register`` does with the token (an engine's registrar)."""
    from app.engine.engine import Engine
    from app.engine.hooks import EngineHooks
    from app.logs.disk import DiskLogStore
    from app.pools import Pools
    from app.store.db import Database

    db = Database.connect(db_url)
    try:
        pools = Pools(db)
        engine = Engine(db, DiskLogStore(Path("/nonexistent")),
                        hooks=EngineHooks(registrars=(pools.register,)))
        h100 = Gpu(name="NVIDIA H100 80GB HBM3", model="h100", memory_mb=81559)
        hw = Hardware(cpus=192, memory_mb=2_000_000, disk_gb=3500, gpus=(h100,) * 8)
        return engine.register(token, Registration(name, "0.1.0", hw, {"rack": "b2"})).agent_id
    finally:
        db.dispose()


def test_token_create_list_disable(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["agents", "token", "create", "--pool", "lab", "--tenant", "github:acme",
            "--tenant", "github:12345", "--labels", "gpu=h100,site=paris", "--expires", "2d"]
    assert cli_main(args) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("ployd_reg_") and "\n" not in token  # alone on stdout
    assert "pool lab" in err and "github:acme, github:12345" in err and "usable once" in err
    assert "--token TOKEN" in err and token not in err

    assert cli_main(["agents", "list"]) == 0
    assert "no agents registered yet" in capsys.readouterr().out
    assert _register(env, token, "lab-1") == "lab-1"
    assert cli_main(["agents", "list"]) == 0
    out = capsys.readouterr().out
    head, row = out.splitlines()
    assert head.split() == ["NAME", "POOL", "HARDWARE", "LABELS", "VERSION", "STATE", "LAST",
                            "SEEN", "JOB"]
    assert row.split()[:6] == ["lab-1", "lab", "h100:8", "gpu=h100,rack=b2,site=paris",
                               "0.1.0", "active"]
    assert row.endswith("-") and "s ago" in row

    assert cli_main(["agents", "disable", "lab-1"]) == 0
    assert capsys.readouterr().out.strip() == "lab-1: disabled"  # no job running: at once
    assert cli_main(["agents", "list", "--format", "json"]) == 0
    (agent,) = json.loads(capsys.readouterr().out)["agents"]
    assert (agent["name"], agent["state"], agent["hardware"], agent["job"]) == (
        "lab-1", "disabled", "h100:8", None)
    assert agent["tenants"] == ["github:acme", "github:12345"]
    assert cli_main(["agents", "enable", "lab-1"]) == 0
    assert capsys.readouterr().out.strip() == "lab-1: active"
    assert cli_main(["agents", "disable", "nobody"]) == 1
    assert "no agent named 'nobody'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool", "lab"], "say which tenants this pool serves: --tenant github:ORG"),
        (["--pool", "lab", "--tenant", "*", "--tenant", "github:a"], "already means every"),
        (["--pool", "lab", "--tenant", "acme"], "name a tenant as forge:id or forge:name"),
        (["--pool", "Lab!", "--tenant", "*"], "pool 'Lab!': use lower-case letters"),
        (["--pool", "lab", "--tenant", "*", "--expires", "soon"],
         "expires 'soon' is not a duration like 90s"),
        (["--pool", "lab", "--tenant", "*", "--expires", "400d"], "from 1s to 365d"),
        (["--pool", "lab", "--tenant", "*", "--labels", "gpu"], "'gpu': write it as key=value"),
        (["--pool", "lab", "--tenant", "*", "--labels", "a=1,a=2"], "'a' is given twice"),
    ],
)
def test_bad_input_is_a_clear_error(
    env: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli_main(["agents", "token", "create", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err
    assert err.startswith("ployd agents: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "create", "--pool", "lab", "--tenant", "*", "--pol", "x"],
         "unrecognized arguments: --pol x"),
        (["token", "create", "--tenant", "*"], "the following arguments are required: --pool"),
        (["token", "make"], "invalid choice: 'make'"),
        (["disable"], "the following arguments are required: name"),
    ],
)
def test_unknown_flags_are_refused_by_the_parser(
    env: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["agents", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_token_list_and_revoke(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    from app.engine.engine import AgentAuthError

    assert cli_main(["agents", "token", "list"]) == 0
    assert "no registration tokens" in capsys.readouterr().out
    made = []
    for pool in ("lab", "farm"):
        assert cli_main(["agents", "token", "create", "--pool", pool, "--tenant", "*"]) == 0
        made.append(capsys.readouterr().out.strip())
    assert _register(env, made[0], "lab-1") == "lab-1"
    assert cli_main(["agents", "token", "list"]) == 0
    out = capsys.readouterr().out
    assert made[0] not in out and made[1] not in out  # never the tokens themselves
    head, farm, lab = out.splitlines()
    assert head.split() == ["ID", "POOL", "TENANTS", "STATE", "EXPIRES", "USED", "BY",
                            "CREATED", "BY"]
    assert farm.split()[1:4] == ["farm", "*", "usable"]
    assert lab.split()[1:4] == ["lab", "*", "used"] and "lab-1" in lab
    farm_id = farm.split()[0]

    assert cli_main(["agents", "token", "revoke", farm_id]) == 0
    assert capsys.readouterr().out.strip() == f"token {farm_id} (pool farm): revoked"
    assert cli_main(["agents", "token", "list", "--format", "json"]) == 0
    listed = {t["pool"]: t for t in json.loads(capsys.readouterr().out)["tokens"]}
    assert listed["farm"]["state"] == "revoked" and listed["farm"]["revoked_at"]
    assert listed["lab"]["state"] == "used" and listed["lab"]["used_by"] == "lab-1"
    with pytest.raises(AgentAuthError, match="revoked at"):
        _register(env, made[1], "farm-1")
    assert cli_main(["agents", "token", "revoke", "999"]) == 1
    assert "no registration token 999" in capsys.readouterr().err
