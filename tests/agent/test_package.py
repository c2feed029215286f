"""The agent as one file (app/agentbuild.py), the update instruction and the bootstrap
failure report (app/protocol.py), and the agent's self-update (app/agent/update.py)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import app
from app.agent.httpclient import Http
from app.agent.update import SelfUpdate, UpdateFailed, interpreter_flags
from app.agentbuild import SHEBANG, AgentPackage, build, members, source_root
from app.protocol import BootFailure, ProtocolError, UpdateRequired

# -- the file --------------------------------------------------------------------------


def test_two_builds_are_byte_identical() -> None:
    assert build() == build()
    assert AgentPackage.build().sha256 == hashlib.sha256(build()).hexdigest()
    assert build("9.9.9") != build()


def test_it_holds_the_agent_the_protocol_and_a_main_only() -> None:
    data = build()
    assert data.startswith(SHEBANG) and SHEBANG == b"#!/usr/bin/env python3\n"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert names[:2] == ["__main__.py", "app/__init__.py"]
        agent = sorted(p.relative_to(source_root()).as_posix()
                       for p in (source_root() / "app" / "agent").glob("*.py"))
        assert sorted(names[2:]) == sorted(["app/protocol.py", *agent])
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        assert {i.external_attr >> 16 for i in infos} == {0o100644}
        init = zf.read("app/__init__.py").decode()
        assert f'__version__ = "{app.__version__}"' in init
        assert "import" not in init  # nothing of the server's package comes along
        main = zf.read("__main__.py").decode()
        assert "from app.agent.__main__ import main" in main
        assert "package=os.path.abspath(sys.argv[0])" in main
        assert zf.read("app/protocol.py") == (source_root() / "app" / "protocol.py").read_bytes()
    assert all("__pycache__" not in name for name, _ in members())


def test_another_version_string_is_in_the_file_and_its_name() -> None:
    old = AgentPackage.build(version="0.0.1-old")
    assert old.file_name == "ployd-agent-0.0.1-old.pyz"
    with zipfile.ZipFile(io.BytesIO(old.data)) as zf:
        assert '__version__ = "0.0.1-old"' in zf.read("app/__init__.py").decode()
    with pytest.raises(ValueError, match="not a usable agent version"):
        AgentPackage.build(version="1.0; rm -rf /")


def test_written_file_runs_with_python_dash_capital_i(tmp_path: Path) -> None:
    package = AgentPackage.build()
    path = package.write(tmp_path)
    assert path.name == f"ployd-agent-{app.__version__}.pyz"
    assert path.read_bytes() == package.data and path.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    out = subprocess.run([sys.executable, "-I", str(path), "--help"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "--server" in out.stdout and "--update-retry" in out.stdout
    assert package.sha256_line() == f"{package.sha256}  {path.name}\n"


def test_ployd_agent_build_writes_it_and_prints_path_and_sha256(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    assert main(["agent", "build", "--out", str(tmp_path / "dist")]) == 0
    package = AgentPackage.build()
    path = tmp_path / "dist" / package.file_name
    assert path.read_bytes() == package.data
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}  ({len(package.data)} bytes, agent {package.version})")
    assert out[1] == f"sha256 {package.sha256}"


# -- the messages ----------------------------------------------------------------------

SHA = "0123456789abcdef" * 4


def test_update_instruction_json() -> None:
    u = UpdateRequired("0.2.0", "/agent/ployd-agent.pyz", SHA)
    assert u.to_json() == {"version": "0.2.0", "url": "/agent/ployd-agent.pyz", "sha256": SHA}
    assert UpdateRequired.from_json(json.loads(json.dumps(u.to_json()))) == u
    upper = UpdateRequired.from_json({**u.to_json(), "sha256": SHA.upper()})
    assert upper.sha256 == SHA


@pytest.mark.parametrize(("body", "message"), [
    ({"version": "1", "url": "/a"}, "sha256 is missing"),
    ({"version": "1", "url": "/a", "sha256": "abc"}, "sha256 must be 64 hexadecimal digits"),
    ({"version": "", "url": "/a", "sha256": SHA}, "version must be a non-empty string"),
    ({"version": "1", "url": "file:///etc/passwd", "sha256": SHA}, "url must be a path"),
    ([], "an update instruction must be an object"),
])
def test_bad_update_instructions_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        UpdateRequired.from_json(body)


def test_bootstrap_failure_json() -> None:
    assert BootFailure("no python3").to_json() == {"reason": "no python3"}
    assert BootFailure.from_json({"reason": "  a\n\tb\x1b[31m  "}).reason == "a b [31m"
    assert len(BootFailure.from_json({"reason": "x" * 5000}).reason) == 2000
    for bad, message in (({}, "reason is missing"), ({"reason": " \n"}, "non-empty")):
        with pytest.raises(ProtocolError, match=message):
            BootFailure.from_json(bad)


# -- self-update -----------------------------------------------------------------------


class Files:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.gets = 0

    def app(self) -> web.Application:
        async def get(_request: web.Request) -> web.Response:
            self.gets += 1
            return web.Response(body=self.data)

        a = web.Application()
        a.router.add_get("/agent/ployd-agent.pyz", get)
        return a


async def updater_for(
    aiohttp_server: Any, data: bytes, package: Path, work: Path
) -> tuple[SelfUpdate, Files, list[list[str]]]:
    files = Files(data)
    server = await aiohttp_server(files.app())
    execs: list[list[str]] = []
    up = SelfUpdate(
        package, ["--server", "S", "--agent-id", "a"], str(server.make_url("")), Http(),
        version="0.0.1", fallback_dir=work, python="/usr/bin/python3",
        execv=lambda exe, args: execs.append([exe, *args]),
    )
    return up, files, execs


async def test_self_update_downloads_verifies_and_re_executes(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    new = b"the new agent"
    package = tmp_path / "ployd-agent-0.0.1.pyz"
    package.write_bytes(b"old")
    up, files, execs = await updater_for(aiohttp_server, new, package, tmp_path / "work")
    update = UpdateRequired("0.2.0", "/agent/ployd-agent.pyz", hashlib.sha256(new).hexdigest())
    try:
        await up(update)
        dest = tmp_path / "ployd-agent-0.2.0.pyz"
        assert dest.read_bytes() == new and package.read_bytes() == b"old"
        assert execs == [["/usr/bin/python3", "/usr/bin/python3", *interpreter_flags(),
                          str(dest), "--server", "S", "--agent-id", "a"]]
        await up(update)  # already there with the right SHA-256: not downloaded again
        assert files.gets == 1 and len(execs) == 2
    finally:
        up.http.close()


async def test_a_tampered_update_is_refused_and_nothing_is_kept(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    package = tmp_path / "ployd-agent-0.0.1.pyz"
    package.write_bytes(b"old")
    up, _files, execs = await updater_for(aiohttp_server, b"tampered", package, tmp_path / "w")
    try:
        with pytest.raises(UpdateFailed, match=r"has SHA-256 [0-9a-f]{64}, not 0+ as the server"):
            await up(UpdateRequired("0.2.0", "/agent/ployd-agent.pyz", "0" * 64))
        assert execs == [] and sorted(p.name for p in tmp_path.iterdir()) == [package.name]
        with pytest.raises(UpdateFailed, match="HTTP 404"):
            await up(UpdateRequired("0.2.0", "/agent/elsewhere.pyz", "0" * 64))
        with pytest.raises(UpdateFailed, match="which this is"):
            await up(UpdateRequired("0.0.1", "/agent/ployd-agent.pyz", "0" * 64))
    finally:
        up.http.close()


async def test_an_unwritable_folder_sends_the_update_to_the_work_dir(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    package = tmp_path / "not-here" / "ployd-agent.pyz"  # a folder the agent cannot write
    new = b"new"
    up, _files, execs = await updater_for(aiohttp_server, new, package, tmp_path / "work")
    try:
        await up(UpdateRequired("0.2.0", "/agent/ployd-agent.pyz", hashlib.sha256(new).hexdigest()))
        assert (tmp_path / "work" / "ployd-agent-0.2.0.pyz").read_bytes() == new
        assert execs[0][-5] == str(tmp_path / "work" / "ployd-agent-0.2.0.pyz")
    finally:
        up.http.close()
