"""The settings that place and confine the local agents' work (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.server import start_server
from app.settings import Settings, SettingsError


def test_the_work_dir_is_beside_the_data_dir_and_the_choices_are_checked() -> None:
    s = Settings.from_env({"PLOYD_DATA_DIR": "/srv/ployd/data"})
    assert s.workspaces_dir == Path("/srv/ployd/data-work")
    assert (s.step_isolation, s.pass_env, s.container_runtime) == ("auto", "", "")
    s = Settings.from_env({"PLOYD_WORK_DIR": "/scratch/w", "PLOYD_STEP_ISOLATION": "sandbox",
                           "PLOYD_PASS_ENV": "LD_LIBRARY_PATH",
                           "PLOYD_CONTAINER_RUNTIME": "podman"})
    assert s.workspaces_dir == Path("/scratch/w")
    assert (s.step_isolation, s.pass_env, s.container_runtime) == (
        "sandbox", "LD_LIBRARY_PATH", "podman")
    with pytest.raises(SettingsError, match="PLOYD_STEP_ISOLATION='off': one of auto, sandbox"):
        Settings.from_env({"PLOYD_STEP_ISOLATION": "off"})
    with pytest.raises(SettingsError, match="one of podman, docker, none"):
        Settings.from_env({"PLOYD_CONTAINER_RUNTIME": "lxc"})


async def test_a_work_dir_inside_the_data_dir_is_refused(tmp_path: Path) -> None:
    settings = Settings(port=0, data_dir=tmp_path / "data", work_dir=tmp_path / "data" / "w")
    with pytest.raises(SettingsError, match="inside the data directory"):
        server = await start_server(settings)
        await server.stop()


def test_log_format() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"PLOYD_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="PLOYD_LOG_FORMAT='xml': one of text, json"):
        Settings.from_env({"PLOYD_LOG_FORMAT": "xml"})


def test_the_webhook_body_limit_is_read_and_checked() -> None:
    assert Settings.from_env({}).max_webhook_bytes == 25 << 20  # GitHub's limit
    assert Settings.from_env({"PLOYD_WEBHOOK_MAX_BYTES": "1048576"}).max_webhook_bytes == 1 << 20
    with pytest.raises(SettingsError, match="PLOYD_WEBHOOK_MAX_BYTES"):
        Settings.from_env({"PLOYD_WEBHOOK_MAX_BYTES": "25MB"})
    with pytest.raises(SettingsError, match="at least 1024"):
        Settings.from_env({"PLOYD_WEBHOOK_MAX_BYTES": "10"})


def test_the_notify_allow_nets_are_networks() -> None:
    assert Settings.from_env({}).notify_allow_nets == ()
    s = Settings.from_env({"PLOYD_NOTIFY_ALLOW_NETS": "127.0.0.0/8, ::1 ,10.2.0.0/16"})
    assert s.notify_allow_nets == ("127.0.0.0/8", "::1/128", "10.2.0.0/16")
    with pytest.raises(SettingsError, match=r"PLOYD_NOTIFY_ALLOW_NETS=.*'10.0.0.5/8' is not a "
                       r"network in CIDR form .*host bits set"):
        Settings.from_env({"PLOYD_NOTIFY_ALLOW_NETS": "127.0.0.0/8,10.0.0.5/8"})
    with pytest.raises(SettingsError, match="'intranet' is not a network"):
        Settings.from_env({"PLOYD_NOTIFY_ALLOW_NETS": "intranet"})
