import json

import pytest

from app.adapters.github.manifest import manifest
from app.cli import main
from app.web.webhooks_github import HANDLED


def test_manifest_names_the_webhook_the_events_and_least_permissions() -> None:
    m = manifest("https://ci.example.com/")
    assert m["hook_attributes"] == {"url": "https://ci.example.com/webhooks/github", "active": True}
    assert m["default_permissions"] == {
        "checks": "write",
        "contents": "read",
        "pull_requests": "write",
        "metadata": "read",
        "merge_queues": "read",
    }
    # Every event the webhook handles is subscribed (installation events always come).
    subscribed = set(m["default_events"])
    assert subscribed == {e for e in HANDLED if not e.startswith("installation")}
    assert m["public"] is False


def test_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["github-manifest", "--url", "https://ci.example.com"]) == 0
    assert json.loads(capsys.readouterr().out)["url"] == "https://ci.example.com"


def test_cli_needs_a_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLOYD_PUBLIC_URL", raising=False)
    assert main(["github-manifest"]) == 2
    assert "--url" in capsys.readouterr().err
