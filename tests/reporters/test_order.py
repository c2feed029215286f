"""What every reporter shares (``PipelineReporter``): one pipeline's reports go out one
after the other, in order, changes coming in meanwhile coalesce into one more report; and
different pipelines do not wait for each other."""

from __future__ import annotations

import asyncio

from tests.reporters.world import World


async def test_reports_of_one_pipeline_go_out_in_order_and_coalesce(world: World) -> None:
    w, fake = world, world.github
    pid = w.start("github", pr=7)
    reporter = w.github_reporter()
    fake.hold()
    reporter.on_change({pid})
    await fake.until_in_flight(1)  # the first report is on its way, held at GitHub
    _attempt, _token, name = await w.claim()
    assert name == "unit"
    reporter.on_change({pid})  # news while the first report is out: one more, after it
    reporter.on_change({pid})
    await asyncio.sleep(0)
    assert fake.ops() == ["create_check_run"]
    fake.release()
    await reporter.idle()
    assert fake.most_in_flight == 1  # never two calls for the pipeline at once
    first, second = fake.ops()[:4], fake.ops()[4:]
    assert first == ["create_check_run"] * 3 + ["create_comment"]
    assert second == ["update_check_run", "edit_comment"]  # the latest state, once
    unit = next(r for r in fake.check_runs.values() if r["name"] == "ployd / unit")
    assert unit["status"] == "in_progress"


async def test_different_pipelines_report_side_by_side(world: World) -> None:
    w, fake = world, world.github
    one, two = w.start("github", pr=7), w.start("github", pr=8, head=2)
    reporter = w.github_reporter()
    fake.hold()
    reporter.on_change({one, two})
    await fake.until_in_flight(2)
    fake.release()
    await reporter.idle()
    assert len(fake.check_runs) == 6 and len(fake.comments) == 2
