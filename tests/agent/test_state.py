"""``--state-dir``: the agent's credential kept across restarts, in a 0700 directory, in a
0600 file, only where steps cannot read it; a file the agent did not write, or wrote for
another server, is not trusted."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from app.agent.__main__ import keeper_for, parse_args
from app.agent.sandbox import Confinement
from app.agent.state import CredentialFile, Keeper, Saved

SERVER = "https://ployd.example.com"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_atomically_owner_only_and_loaded_back(tmp_path: Path) -> None:
    file = CredentialFile(tmp_path / "state")
    file.save(Saved(SERVER, "lab-1", "ployd_agent_one"))
    assert mode(tmp_path / "state") == 0o700 and mode(file.path) == 0o600
    assert file.load(SERVER + "/") == Saved(SERVER, "lab-1", "ployd_agent_one")
    file.save(Saved(SERVER, "lab-1", "ployd_agent_two"))  # replaced, nothing left beside it
    assert [p.name for p in file.directory.iterdir()] == ["credential"]
    loaded = file.load(SERVER)
    assert loaded is not None and loaded.credential == "ployd_agent_two"
    assert "ployd_agent_two" not in repr(loaded)
    file.forget()
    file.forget()  # twice: nothing to remove is fine
    assert file.load(SERVER) is None


def test_an_existing_directory_is_tightened_to_0700(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o755)
    os.chmod(tmp_path / "state", 0o755)
    CredentialFile(tmp_path / "state").prepare()
    assert mode(tmp_path / "state") == 0o700


@pytest.mark.parametrize(
    ("content", "file_mode", "why"),
    [
        (json.dumps({"server": "https://other", "agent_id": "a", "credential": "c"}), 0o600,
         "ignoring the credential saved for https://other"),
        ("not json", 0o600, "not a credential this agent wrote"),
        (json.dumps(["server"]), 0o600, "not a credential this agent wrote"),
        (json.dumps({"server": SERVER, "agent_id": "a", "credential": "c"}), 0o640,
         "readable by it alone (mode 0600)"),
    ],
)
def test_a_file_not_to_trust_is_ignored_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, file_mode: int, why: str
) -> None:
    file = CredentialFile(tmp_path / "state")
    file.prepare()
    file.path.write_text(content)
    os.chmod(file.path, file_mode)
    with caplog.at_level(logging.WARNING, "ployd.agent"):
        assert file.load(SERVER) is None
    assert why in caplog.text


def test_a_link_is_not_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(json.dumps({"server": SERVER, "agent_id": "a", "credential": "c"}))
    os.chmod(elsewhere, 0o600)
    file = CredentialFile(tmp_path / "state")
    file.prepare()
    file.path.symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING, "ployd.agent"):
        assert file.load(SERVER) is None
    assert "cannot read the saved credential" in caplog.text


def test_the_keeper_starts_with_the_saved_credential_and_falls_back_to_the_token(
    tmp_path: Path,
) -> None:
    file = CredentialFile(tmp_path / "state")
    file.save(Saved(SERVER, "lab-1", "ployd_agent_old"))
    keeper = Keeper(file, SERVER, "ployd_reg_token", file.load(SERVER))
    assert keeper.first() == "ployd_agent_old"
    assert keeper.refused("401 unknown") == "ployd_reg_token"  # the saved one is gone
    assert not file.path.exists()
    assert keeper.refused("401 used already") is None  # then the token was refused too
    keeper.registered("lab-1", "ployd_agent_new")
    assert file.load(SERVER) == Saved(SERVER, "lab-1", "ployd_agent_new")

    fresh = Keeper(CredentialFile(tmp_path / "other"), SERVER, "ployd_reg_t", None)
    assert fresh.first() == "ployd_reg_t"
    assert fresh.refused("401") is None  # the token itself: nothing else to try


def test_a_credential_that_cannot_be_saved_stays_in_memory_and_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file, not a directory")
    keeper = Keeper(CredentialFile(blocker), SERVER, None, None)
    with caplog.at_level(logging.ERROR, "ployd.agent"):
        keeper.registered("lab-1", "ployd_agent_x")
    assert keeper.saved is None and "kept in memory only" in caplog.text
    assert "ployd_agent_x" not in caplog.text


def args_for(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return parse_args(["--server", SERVER, "--work-dir", str(tmp_path / "work"), *extra])


def test_kept_only_where_steps_cannot_read_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    args = args_for(tmp_path, "--state-dir", str(state), "--token", "ployd_reg_t")
    # Steps as the agent's own user, no sandbox: they could read it; memory only.
    unconfined = Confinement(work_dir=tmp_path / "work")
    with caplog.at_level(logging.WARNING, "ployd.agent"):
        assert keeper_for(args, unconfined) is None
    assert "could read a credential kept there, so it stays in memory" in caplog.text
    assert not state.exists()
    # Sandboxed steps see it empty (the agent hides it).
    boxed = Confinement(bwrap="/usr/bin/bwrap", hide=(str(state),), work_dir=tmp_path / "work")
    keeper = keeper_for(args, boxed)
    assert keeper is not None and keeper.saved is None and mode(state) == 0o700
    assert keeper.first() == "ployd_reg_t"
    # Steps of a root agent run as another user, who cannot enter a 0700 directory.
    from app.agent.sandbox import StepUser

    other_user = Confinement(user=StepUser("ployd-job", 1234, 1234), work_dir=tmp_path)
    assert other_user.protects(state) and not unconfined.protects(state)


def test_a_saved_credential_is_loaded_and_a_handed_over_one_wins(tmp_path: Path) -> None:
    state = tmp_path / "state"
    CredentialFile(state).save(Saved(SERVER, "lab-1", "ployd_agent_saved"))
    boxed = Confinement(bwrap="/usr/bin/bwrap", hide=(str(state),), work_dir=tmp_path / "work")
    keeper = keeper_for(args_for(tmp_path, "--state-dir", str(state)), boxed)
    assert keeper is not None and keeper.first() == "ployd_agent_saved"
    # An update's restart gets its credential on a pipe: the file is not read then.
    read, write = os.pipe()
    os.write(write, b"lab-1 ployd_agent_piped\n")
    os.close(write)
    args = args_for(tmp_path, "--state-dir", str(state), "--credential-fd", str(read))
    keeper = keeper_for(args, boxed)
    assert keeper is not None and keeper.saved is None
    assert args.credential == "ployd_agent_piped"


def test_no_token_is_fine_with_a_state_dir_and_an_overlapping_one_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(SystemExit):
        args_for(tmp_path)  # neither a token nor a state dir
    args = args_for(tmp_path, "--state-dir", str(tmp_path / "work" / "state"))
    boxed = Confinement(bwrap="/usr/bin/bwrap", work_dir=tmp_path / "work")
    with pytest.raises(ValueError, match="overlap"):
        keeper_for(args, boxed)
    args = args_for(tmp_path, "--state-dir", str(tmp_path))  # holds the work dir
    with pytest.raises(ValueError, match="overlap"):
        keeper_for(args, boxed)
