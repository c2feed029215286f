"""The dashboard through real HTTP: what failed lately (linked), the charts with axes
and values, this server's local agents with their hardware and job."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.protocol import Gpu, Hardware, Registration
from app.web.charts import bar_chart, line_chart
from tests.logs.world import one_job

ADMIN = {"Authorization": "Bearer root-token"}
GPU = "version: 1\njobs:\n  train:\n    hardware: l4\n    retry: {max: 0}\n    steps: [{run: x}]\n"


async def test_the_dashboard_answers_what_failed(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        pid = w.pipeline(GPU, forge="github", tenant="4", repo="acme/train")
        c = await w.claim(price_hourly=36.0)
        w.finish(c, "failed", failed_step=0, code=3, ran_s=600)
        ok = w.pipeline(one_job(), repo="acme/app")
        d = await w.claim(price_hourly=0.5)
        w.finish(d, "succeeded", ran_s=60)  # $0.008333
        # An agent this server started itself, running a job.
        token = w.engine.new_registration_token()
        l4 = Gpu(name="NVIDIA L4", model="l4", memory_mb=23034)
        w.engine.register(token, Registration("local-7", "0.1.0", Hardware(8, 32000, 200, (l4,))))
        w.pipeline(one_job("busy"), repo="acme/app")
        await w.claim(agent_id="local-7")
        async with w.http.get(w.url + "/", headers=ADMIN) as r:
            assert r.status == 200
            page = await r.text()
        failures = page.split('id="failures"', 1)[1].split("</section>", 1)[0]
        job = w.job_id(pid, "train")
        assert f'href="/runs/{job}"' in failures and f'href="/pipelines/{pid}"' in failures
        assert "acme/train" in failures and "exit 3" in failures
        assert f"/runs/{w.job_id(ok)}" not in failures
        for chart in ("chart-wait", "chart-duration", "chart-spend", "chart-outcomes"):
            svg = page.split(f'id="{chart}"', 1)[1].split("</svg>", 1)[0]
            assert svg.count('class="axis"') == 2, chart
            assert len(re.findall(r'class="tick y"', svg)) == 5, chart
            assert "<title>" in svg, chart
        spend = page.split('id="chart-spend"', 1)[1].split("</svg>", 1)[0]
        assert "acme/train" in spend and "acme/app" in spend
        outcomes = page.split('id="chart-outcomes"', 1)[1].split("</svg>", 1)[0]
        assert "succeeded · " in outcomes and "failed · " in outcomes
        wait = page.split('id="chart-wait"', 1)[1].split("</svg>", 1)[0]
        assert 'data-name="l4 p95"' in wait and 'data-name="cpu p50"' in wait
        agents = page.split("<h2>Agents</h2>", 1)[1].split("</section>", 1)[0]
        assert "local-7" in agents and "l4:1" in agents and "acme/app · busy" in agents


def test_charts_have_axes_values_and_a_budget_line() -> None:
    labels = ["11-01", "11-02", "11-03"]
    svg = bar_chart(
        "spend",
        labels,
        {"a/x": [1.0, 0.0, 2.5], "b/y": [0.5, 0, 0]},
        lambda v: f"${v:.2f}",
        reference=("daily budget", 3.0),
    )
    assert 'class="reference"' in svg and "daily budget: $3.00" in svg
    assert "<title>a/x · 11-03: $2.50</title>" in svg and ">$1.50</text>" in svg
    assert [t for t in re.findall(r'class="tick x"[^>]*>([^<]+)<', svg)] == labels
    assert re.findall(r'class="tick y"[^>]*>([^<]+)<', svg) == [
        "$0.00",
        "$1.25",
        "$2.50",
        "$3.75",
        "$5.00",
    ]  # the top rounded up to 5: 1, 2, 2.5 or 5 times a power of ten
    line = line_chart("w", labels, {"l4 p50": [1.0, None, 4.0]}, lambda v: f"{v:g}s")
    assert line.count("<circle") == 2 and ">4s</text>" in line
    assert bar_chart("e", labels, {"x": [0, 0, 0]}, str, empty="none") == (
        '<p class="empty" id="e">none</p>'
    )
