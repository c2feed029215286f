"""Metrics end to end: a pipeline on the base branch records a job's metrics; a pull /
merge request's run of the same job shows each value with its change in the summary
comment (at the fake GitHub and the fake GitLab), names the base commit, and a tripped
``fail_if`` fails the job naming the metric; the job page shows the table, the curve and
the report image."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.core.report.markdown import escape_md
from tests.e2e.github_world import GitHubWorld, fetch
from tests.e2e.gitlab_world import GitLabWorld

CONFIG = """
version: 1
jobs:
  train:
    steps:
      - name: Train
        run: |
          mkdir -p plots
          printf '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>' > plots/loss.svg
          printf '{"accuracy": %s, "latency_ms": 10, "loss": [3, 2, 1]}' "$(cat acc.txt)" \
            > metrics.json
    metrics:
      file: metrics.json
      higher_is_better: {accuracy: true, latency_ms: false}
      fail_if: {accuracy: "< -0.5%"}
    report: [plots/*.svg]
"""
REPO = "acme/models"
PROJECT = "ml/models"


def summary(bodies: list[str]) -> str:
    found = [b for b in bodies if "ployd:summary" in b]
    assert len(found) == 1, bodies
    return found[0]


async def test_github_base_branch_metrics_then_pull_request_deltas_and_gate(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        w: GitHubWorld
        base = w.repo(REPO, {".ployd.yml": CONFIG, "acc.txt": "0.908"})
        status, _ = await w.deliver("push", w.push(REPO, "0" * 40, base))
        assert status == 202
        await w.settle()
        assert w.check_runs()["ployd / train"]["conclusion"] == "success"

        head = w.commit(REPO, {"acc.txt": "0.912"}, branch="pr-7")
        w.fake.add_pull(REPO, 7, head_sha=head, user={"login": "alice"})
        await w.deliver("pull_request", w.pull_request(REPO, 7, head))
        await w.settle()
        body = summary([c["body"] for c in w.fake.comments.values()])
        assert "#### Results" in body
        assert f"compared with [main @ {base[:7]}]" in body
        assert "| accuracy | 0.912 (+0.004) | 0.908 | 🟢 ▲ +0.44% |" in body
        assert "| latency\\_ms | 10 (+0) | 10 | = |" in body
        assert "| loss | 1 (+0) | 1 | = |" in body
        # The report image, embedded from its signed artifact link.
        link = re.search(
            r"\[!\[plots/loss\.svg\]\((http://ployd\.test/runs/\d+/artifacts/[^)]+)\)", body
        )
        assert link is not None, body
        plot_url = link.group(1).replace("http://ployd.test", w.h.url)
        async with w.h.http.get(plot_url) as resp:
            assert resp.status == 200 and (await resp.text()).startswith("<svg")
            assert resp.headers["Content-Type"] == "image/svg+xml"
            assert resp.headers["Content-Security-Policy"] == "sandbox"
        # The job page: the table, the curve's chart, the report image.
        job_url = w.check_runs()["ployd / train"]["details_url"]
        code, page = await fetch(w.h.http, job_url.replace("http://ployd.test", w.h.url))
        assert code == 200
        assert "<h2>Results</h2>" in page and f"compared with main @ {base[:7]}" in page
        assert "<td>accuracy</td><td>0.912</td><td>0.908</td>" in page
        assert '<svg class="chart"' in page and 'aria-label="loss: 3 points"' in page
        assert re.search(r'<img src="/runs/\d+/artifacts/plots/loss\.svg\?t=', page)

        # A drop of more than 0.5% fails the job, naming the metric, value, base, threshold.
        bad = w.commit(REPO, {"acc.txt": "0.85"}, branch="pr-8")
        w.fake.add_pull(REPO, 8, head_sha=bad, user={"login": "alice"})
        await w.deliver("pull_request", w.pull_request(REPO, 8, bad))
        await w.settle()
        run = w.check_runs()["ployd / train"]
        assert run["head_sha"] == bad and run["conclusion"] == "failure"
        gate = (
            f"fail_if accuracy '< -0.5%': accuracy is 0.85, against 0.908 on main @ {base[:7]} "
            "(a change of -6.39%)"
        )
        assert gate in run["output"]["summary"] + run["output"].get("text", "")
        pr8 = [c["body"] for c in w.fake.comments.values() if c["_issue"] == 8]
        assert any(f"❌ {escape_md(gate)}" in b for b in pr8), pr8
        # The job's log says it too, as a metrics line.
        pid = max(p for p in _pipelines(w))
        log = w.h.log(pid, "train")
        assert f"metrics: FAILED: {gate}" in log


def _pipelines(w: Any) -> list[int]:
    from app.store.models import Pipeline

    with w.h.engine.db.session() as s:
        return [p.id for p in s.query(Pipeline).all()]


async def test_gitlab_base_branch_metrics_then_merge_request_note_with_deltas(
    gitlab_world: Callable[..., Any],
) -> None:
    async with gitlab_world() as w:
        w: GitLabWorld
        base = w.project(PROJECT, {".ployd.yml": CONFIG, "acc.txt": "0.908"})
        status, _ = await w.deliver("Push Hook", w.push(PROJECT, "0" * 40, base))
        assert status == 202
        await w.settle()
        assert w.statuses(PROJECT)["ployd/train"]["status"] == "success"

        sha = w.commit(PROJECT, {"acc.txt": "0.9"}, branch="mr-3")
        w.fake.set_member(PROJECT, "alice", 30)
        w.fake.add_mr(PROJECT, 3, source_sha=sha, author="alice")
        await w.deliver("Merge Request Hook", w.merge_request(PROJECT, 3, sha))
        await w.settle()
        note = summary([n["body"] for n in w.fake.notes.values()])
        assert f"compared with [main @ {base[:7]}]" in note
        assert "| accuracy | 0.9 (-0.008) | 0.908 | 🔴 ▼ -0.88% |" in note
        assert "❌ fail\\_if accuracy '\\< -0.5%': accuracy is 0.9, against 0.908" in note
        assert w.statuses(PROJECT)["ployd/train"]["status"] == "failed"


BAD = """
version: 1
jobs:
  not-json:
    steps: [{run: "echo '{oops' > m.json"}]
    metrics: m.json
  nan:
    steps: [{run: "echo '{\\"accuracy\\": NaN, \\"loss\\": 0.5}' > m.json"}]
    metrics: m.json
  huge:
    steps: [{run: "head -c 3000000 /dev/zero | tr '\\\\0' ' ' > m.json"}]
    metrics: m.json
  missing:
    steps: [{run: "true"}]
    metrics: m.json
  outside:
    steps: [{run: "ln -s /etc/passwd m.json"}]
    metrics: m.json
"""


async def test_bad_metrics_files_are_a_clear_line_in_the_log_never_a_crash(
    serve: Callable[..., Any], make_repo: Callable[..., Any]
) -> None:
    repo, _ = make_repo({".ployd.yml": BAD})
    async with serve(agents=2) as h:
        pid = await h.start(repo)
        p = await h.finished(pid)
        assert {j.name: j.state for j in p.jobs} == {
            "not-json": "succeeded",
            "nan": "succeeded",
            "huge": "succeeded",
            "missing": "succeeded",
            "outside": "succeeded",
        }
        assert (
            "metrics: m.json: not valid JSON (Expecting property name enclosed in double "
            "quotes at line 1); no metrics recorded" in h.log(pid, "not-json")
        )
        nan = h.log(pid, "nan")
        assert "metrics: recorded 1 value(s) from m.json" in nan
        assert "metrics: accuracy: NaN is not a value PloyD can compare; left out" in nan
        assert "metrics: m.json is 2.9 MB, over the limit of 1.0 MB; not read" in h.log(pid, "huge")
        assert "metrics: m.json was not found in the workspace; no metrics recorded" in h.log(
            pid, "missing"
        )
        assert "metrics: m.json is outside the workspace; not read" in h.log(pid, "outside")
        # The metrics call checks the job token before the body: 401, whatever the body.
        for headers in ({}, {"Authorization": "Bearer nope"}):
            async with h.http.post(
                h.url + f"/api/v1/agent/attempts/{p.jobs[0].attempts[0].id}/metrics",
                data=b"\xff not json",
                headers=headers,
            ) as resp:
                assert resp.status == 401, await resp.text()
