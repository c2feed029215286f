"""Three real jobs through ``python -m app.agent``'s ``main()`` on whatever Python runs
this file (3.9 and up), against a stub of the agent API made of the standard library
alone. Run by tests/agent/test_old_pythons.py under the older Pythons it can find; exits
0 when every check held, else prints what did not.

The jobs go through what differs between 3.9 and 3.11: output that waits for a flush
(``asyncio.wait_for`` timing out), a background process holding a step's output, a step
timeout and its kill grace, a log chunk answered 500 (retried), a cache saved, restored
and extracted (tarfile), an artifact uploaded, a spot interruption notice from IMDSv2.

Usage: python tests/agent/old_python_run.py WORK_DIR   (with the repository on PYTHONPATH)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STARTUP_MODULES = set(sys.modules)
AGENT_TOKEN = "agent-token"  # the registration token
CREDENTIAL = "agent-credential"  # what registering gives the agent to claim with
API = "/api/v1/agent"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


class Attempt:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.token = f"job-token-{job['attempt_id']}"
        self.logs: dict[int, str] = {}
        self.log_posts = 0
        self.steps: list[dict[str, Any]] = []
        self.finish: dict[str, Any | None] = None

    @property
    def text(self) -> str:
        return "".join(self.logs[k] for k in sorted(self.logs))


class Stub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[Attempt] = []
        self.by_token: dict[str, Attempt] = {}
        self.blobs: dict[str, bytes] = {}
        self.fail_logs = 1  # answer the first log chunk with a 500
        self.notice_on: str | None = None  # the spot notice appears once the log has this
        self.notice = False

    def add(self, job: dict[str, Any]) -> Attempt:
        att = Attempt(job)
        with self.lock:
            self.queue.append(att)
            self.by_token[att.token] = att
        return att


def handler(stub: Stub) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real server

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: Any = None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            if raw is None and body is not None:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def _bearer(self) -> str:
            auth = self.headers.get("Authorization", "")
            return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""

        # -- IMDSv2 ----------------------------------------------------------------

        def do_PUT(self) -> None:
            body = self._body()
            if self.path == "/imds/latest/api/token":
                self._send(200, raw=b"imds-token")
            elif self.path.startswith("/blob/"):
                if self._bearer() not in stub.by_token:
                    self._send(401)
                    return
                stub.blobs[self.path[len("/blob/"):]] = body
                self._send(200, {})
            else:
                self._send(404)

        def do_GET(self) -> None:
            if self.path.startswith("/imds/latest/meta-data/"):
                if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
                    self._send(401)
                elif self.path.endswith("spot/instance-action") and stub.notice:
                    self._send(200, raw=b'{"action": "terminate"}')
                else:
                    self._send(404, raw=b"not here")
            elif self.path.startswith("/blob/"):
                blob = stub.blobs.get(self.path[len("/blob/"):])
                if self._bearer() not in stub.by_token or blob is None:
                    self._send(404)
                else:
                    self._send(200, raw=blob)
            else:
                self._send(404)

        # -- the agent API -----------------------------------------------------------

        def do_POST(self) -> None:
            raw = self._body()
            body = json.loads(raw) if raw else {}
            path = self.path[len(API):]
            if path == "/register":  # the token (as often as asked) for a credential
                if self._bearer() != AGENT_TOKEN:
                    self._send(401)
                    return
                self._send(200, {"agent_id": body["name"], "credential": CREDENTIAL})
                return
            if path == "/claim":
                if self._bearer() != CREDENTIAL:
                    self._send(401)
                    return
                with stub.lock:
                    att = stub.queue.pop(0) if stub.queue else None
                if att is None:
                    self._send(204)
                    return
                self._send(200, {"attempt_id": att.job["attempt_id"], "job_token": att.token,
                                 "job": att.job})
                return
            att = stub.by_token.get(self._bearer())
            if att is None or not path.startswith(f"/attempts/{att.job['attempt_id']}/"):
                self._send(401)
                return
            if att.finish is not None:
                self._send(409)
                return
            call = path.split("/", 3)[3]
            if call == "log":
                with stub.lock:
                    att.log_posts += 1
                    if stub.fail_logs > 0:
                        stub.fail_logs -= 1
                        self._send(500, raw=b"injected")
                        return
                    att.logs.setdefault(int(body["seq"]), str(body["data"]))
                    if stub.notice_on and stub.notice_on in att.text:
                        stub.notice = True
                self._send(200, {"cancel": False})
            elif call == "steps":
                att.steps.append(body)
                self._send(200, {"cancel": False})
            elif call == "heartbeat":
                threading.Event().wait(min(float(body.get("wait", 0)), 0.5))
                self._send(200, {"cancel": False})
            elif call == "finish":
                att.finish = body
                self._send(200, {})
            elif call == "caches/restore":
                blob = stub.blobs.get("cache")
                if blob is None:
                    self._send(200, {"hit": None})
                else:
                    self._send(200, {"hit": "exact", "key": body["key"], "size": len(blob),
                                     "sha256": hashlib.sha256(blob).hexdigest(),
                                     "download": {"url": "/blob/cache", "auth": True}})
            elif call == "caches/save":
                self._send(200, {"entry_id": 1, "upload": {"url": "/blob/cache", "auth": True}})
            elif call == "caches/done":
                self._send(200, {"ready": "cache" in stub.blobs})
            elif call == "artifacts":
                uploads = [{"id": i, "path": f["path"], "url": f"/blob/art-{i}", "auth": True}
                           for i, f in enumerate(body["files"])]
                self._send(200, {"uploads": uploads})
            elif call == "artifacts/done":
                self._send(200, {"ready": body["ids"]})
            else:
                self._send(404)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the agent hangs up on a heartbeat it no longer needs: not news


def job(
    aid: int, clone_url: str, sha: str, steps: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "pipeline_id": 1, "job_id": aid, "attempt_id": aid, "attempt_number": 1,
        "name": f"job-{aid}", "forge": "local", "repo": "acme/model", "clone_url": clone_url,
        "sha": sha, "ref": "refs/heads/main", "workspace_key": "acme-model", "timeout_s": 60,
        "env": {}, "secrets": {},
        "steps": [{"index": i, "title": f"step {i}", "env": {}, "continue_on_error": False,
                   "timeout_s": None, **s} for i, s in enumerate(steps)],
        **extra,
    }


def make_repo(root: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    root.mkdir(parents=True)
    (root / "hello.txt").write_text("hello\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    return git("rev-parse", "HEAD")


def _bwrap() -> bool:
    from app.agent.sandbox import find_bwrap

    return find_bwrap() is not None


def _alive(marker: str) -> bool:
    """A live process (not a zombie) whose command line holds ``marker``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            return True
    return False


def main(work: Path) -> int:
    from app.agent.__main__ import main as agent_main

    repo = work / "remote"
    sha = make_repo(repo)
    stub = Stub()
    server = Server(("127.0.0.1", 0), handler(stub))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    cache = {"key": "k-${{ hashFiles('hello.txt') }}", "paths": [".cache-dir"]}
    first = stub.add(job(1, str(repo), sha, [
        {"run": "printf partial; sleep 0.6; echo ' done'"},
        {"run": "mkdir -p out .cache-dir; echo artifact > out/a.txt; echo cached > .cache-dir/c"},
        {"run": "(sleep 30.0419 &); echo background"},
    ], cache=cache, artifacts={"paths": ["out/**"]}))
    second = stub.add(job(2, str(repo), sha, [
        {"run": "cat .cache-dir/c"},
        {"run": "echo slow; sleep 30", "timeout_s": 1},
    ], cache=cache))
    third = stub.add(job(3, str(repo), sha, [{"run": "echo ready; sleep 30"}]))
    stub.notice_on = "ready"

    args = ["--server", url, "--token", AGENT_TOKEN, "--agent-id", "old-python",
            "--work-dir", str(work / "w"), "--claim-wait", "1", "--kill-grace", "0.5",
            "--imds-url", f"{url}/imds", "--once"]
    codes = [agent_main(args) for _ in range(3)]
    server.shutdown()

    failed: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            failed.append(what)

    check(codes == [0, 0, 0], f"exit codes {codes}")
    check(first.finish is not None and first.finish["result"] == "succeeded",
          f"job 1 finish {first.finish}")
    check("partial done" in first.text, "job 1: the output around a pause")
    # Sandboxed (bubblewrap: a pid namespace per step), a step's background processes end
    # with it; else they hold its output (said so) and are killed when the job ends.
    sandboxed = "still hold its output" not in first.text
    check(sandboxed == bool(_bwrap()), "job 1: the background process")
    check(not _alive("sleep 30.0419"), "job 1: its background process outlived the job")
    check(first.log_posts == len(first.logs) + 1, "job 1: the log chunk answered 500 retried")
    check(sorted(first.logs) == list(range(len(first.logs))), "job 1: log seq without gaps")
    check("cache: miss" in first.text and "cache: saved" in first.text, "job 1: cache saved")
    check("artifacts: uploaded 1 file(s)" in first.text, "job 1: artifact uploaded")
    check(stub.blobs.get("art-0") == b"artifact\n", "job 1: the artifact's bytes")
    check("cache: restored" in second.text and "\ncached\n" in second.text,
          "job 2: cache restored and extracted")
    check(second.finish is not None
          and (second.finish["result"], second.finish["reason"], second.finish["failed_step"])
          == ("timed_out", "timeout", 1), f"job 2 finish {second.finish}")
    check(third.finish is not None
          and (third.finish["result"], third.finish["reason"]) == ("interrupted",
                                                                   "spot_interruption"),
          f"job 3 finish {third.finish}")
    check("spot interruption notice" in third.text, "job 3: the notice in the log")
    outside = sorted(
        name for name, m in list(sys.modules.items())
        if name not in STARTUP_MODULES and "-packages" in (getattr(m, "__file__", None) or "")
    )
    check(outside == [], f"imported from outside the standard library: {outside}")
    for what in failed:
        print("FAILED:", what)
    if failed:
        for att in (first, second, third):
            print(f"--- job {att.job['attempt_id']} log ---\n{att.text}")
    print(f"Python {sys.version.split()[0]}: {'ok' if not failed else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
