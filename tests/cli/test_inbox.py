"""`ployd inbox list [--failed]` and `ployd inbox replay ID`, run as the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.store import inbox, inbox_claims
from app.store.db import Database


def ployd(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLOYD_DATA_DIR": str(data)}
    env.pop("PLOYD_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app", "inbox", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_list_failed_and_replay(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = Database.connect(f"sqlite:///{(data / 'ployd.db').resolve()}")
    try:
        good, _ = inbox.record(db, "github", "d-good", "push", {})
        bad, _ = inbox.record(db, "gitlab", "d-bad", "Push Hook", {})
        for expected in (good, bad):
            c = inbox_claims.claim(db, c_forge := ("github" if expected == good else "gitlab"), 30)
            assert c is not None and c.id == expected and c.forge == c_forge
            if expected == good:
                inbox_claims.done(db, c)
            else:
                inbox_claims.failed(db, c, "KeyError: 'project'\nTraceback...", None)
    finally:
        db.dispose()
    everything = ployd(data, "list")
    assert everything.returncode == 0, everything.stderr
    assert "d-good" in everything.stdout and "d-bad" in everything.stdout
    failed = ployd(data, "list", "--failed")
    assert failed.returncode == 0
    assert "d-bad" in failed.stdout and "d-good" not in failed.stdout
    assert "error: KeyError: 'project'" in failed.stdout and "Traceback" not in failed.stdout
    replayed = ployd(data, "replay", str(bad))
    assert replayed.returncode == 0 and "queued again" in replayed.stdout
    assert "no failed deliveries" in ployd(data, "list", "--failed").stdout
    again = ployd(data, "replay", str(good))
    assert again.returncode == 1 and "is processed, not failed" in again.stderr
    missing = ployd(data, "replay", "999")
    assert missing.returncode == 1 and "no delivery 999" in missing.stderr
    wrong = ployd(data, "replay", "x1")
    assert wrong.returncode == 2 and "not a delivery id" in wrong.stderr
    db = Database.connect(f"sqlite:///{(data / 'ployd.db').resolve()}")
    try:
        c = inbox_claims.claim(db, "gitlab", 30)  # claimable again, its tries anew
        assert c is not None and c.id == bad and c.attempts == 1
    finally:
        db.dispose()
