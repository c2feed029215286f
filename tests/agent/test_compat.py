"""app/agent/compat.py: the same timeouts and the same tar extraction rules whether this
Python has tarfile's extraction filters (3.9.17+, 3.10.12+, 3.11.4+) or not."""

from __future__ import annotations

import asyncio
import io
import json
import stat
import tarfile
from pathlib import Path

import pytest

from app.agent.compat import ASYNC_TIMEOUT
from app.agent.transfer import MANIFEST, build_archive, extract_archive


async def test_async_timeout_catches_a_timed_out_wait() -> None:
    with pytest.raises(ASYNC_TIMEOUT):
        await asyncio.wait_for(asyncio.Event().wait(), 0.01)


@pytest.fixture(params=["filters", "no filters"])
def tar_filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "no filters":  # a Python from before PEP 706's backports
        monkeypatch.delattr(tarfile, "tar_filter")
    return str(request.param)


def test_an_archive_round_trips(tar_filters: str, tmp_path: Path) -> None:
    ws, home = tmp_path / "ws", tmp_path / "home"
    (ws / "cache" / "sub").mkdir(parents=True)
    (ws / "cache" / "sub" / "f.txt").write_text("cached")
    (ws / "cache" / "tool").write_text("#!/bin/sh\n")
    (ws / "cache" / "tool").chmod(0o6777)
    (ws / "cache" / "self").symlink_to("sub/f.txt")
    (ws / "one.txt").write_text("one")
    archive = tmp_path / "a.tar.gz"
    assert build_archive(["cache", "one.txt", "gone"], ws, home, archive) == ["gone"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert extract_archive(archive, ["cache", "one.txt"], fresh, home) == 2
    assert (fresh / "cache" / "sub" / "f.txt").read_text() == "cached"
    assert (fresh / "cache" / "self").is_symlink()
    assert (fresh / "one.txt").read_text() == "one"
    # No setuid/setgid bit, no group/other write.
    assert stat.S_IMODE((fresh / "cache" / "tool").stat().st_mode) == 0o755


def _archive(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        manifest = json.dumps({"version": 1, "paths": ["cache"]}).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "members",
    [
        [_file("0/../../evil")],
        [_symlink("0/out", "../.."), _file("0/out/evil")],  # through a link just made
    ],
    ids=["dot-dot", "through-a-symlink"],
)
def test_a_member_outside_its_path_is_refused(
    tar_filters: str, tmp_path: Path, members: list[tarfile.TarInfo]
) -> None:
    archive = _archive(tmp_path / "bad.tar.gz", *members)
    ws = tmp_path / "a" / "b" / "ws"
    ws.mkdir(parents=True)
    with pytest.raises(tarfile.TarError):
        extract_archive(archive, ["cache"], ws, tmp_path / "home")
    assert not (tmp_path / "a" / "b" / "evil").exists()
