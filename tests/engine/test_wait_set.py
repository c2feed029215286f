"""``wait_set``: the one way the server's loops wait for news with a time limit. It must
keep a cancellation that arrives as the event is set (``asyncio.wait_for`` on Python 3.11
drops it, and a stopping inbox worker then ran on, hanging the server's shutdown)."""

from __future__ import annotations

import asyncio

import pytest

from app.engine.notify import Broadcast, wait_set


async def test_it_answers_true_when_set_and_false_when_the_time_runs_out() -> None:
    ev = asyncio.Event()
    assert await wait_set(ev, 0) is False
    assert await wait_set(ev, 0.01) is False
    ev.set()
    assert await wait_set(ev, 0) is True
    assert await wait_set(ev, None) is True
    later = asyncio.Event()
    asyncio.get_running_loop().call_soon(later.set)
    assert await wait_set(later, None) is True


async def test_a_cancel_arriving_as_the_event_is_set_is_kept() -> None:
    ev = asyncio.Event()
    waiter = asyncio.create_task(wait_set(ev, 30))
    await asyncio.sleep(0)  # the task now waits on the event
    ev.set()  # both in one turn of the loop: news, and the stop
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()


async def test_a_loop_stopped_while_news_arrives_stops() -> None:
    """The shape of the inbox worker's loop: clear, work, wait for news."""
    ev = asyncio.Event()
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            ev.clear()
            turns += 1
            await wait_set(ev, 30)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    ev.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turns == 1


async def test_broadcast_wakes_its_current_waiters_and_keeps_cancels() -> None:
    b = Broadcast()
    waiter = asyncio.create_task(b.wait(30))
    await asyncio.sleep(0)
    b.notify()
    assert await waiter is True
    assert await b.wait(0) is False  # the next notify, not the last one
    waiter = asyncio.create_task(b.wait(30))
    await asyncio.sleep(0)
    b.notify()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
