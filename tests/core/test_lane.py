"""gateway.threads.Lane: blocking calls on one thread of its own, in order, results and errors back."""

from __future__ import annotations

import threading
import time

import pytest
import trio
import trio.lowlevel

from gateway import threads
from gateway.threads import Lane


async def test_results_errors_and_order() -> None:
    lane, seen = Lane("t-order"), list[int]()

    def slow_then_record(n: int) -> int:
        time.sleep(0.001 * (5 - n % 5))  # later calls are quicker: only the lane keeps them in order
        seen.append(n)
        return n * n

    results: dict[int, int] = {}

    async def one(n: int) -> None:
        results[n] = await lane.run(slow_then_record, n)

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(one, n)
            await trio.lowlevel.checkpoint()  # asked in this order
    assert seen == list(range(20))
    assert results == {n: n * n for n in range(20)}
    with pytest.raises(ZeroDivisionError):
        await lane.run(lambda: 1 / 0)
    assert await lane.run(lambda: "still serving") == "still serving"
    lane.close()


async def test_one_named_thread_not_trios() -> None:
    lane = Lane("t-name")
    names = {await lane.run(lambda: threading.current_thread().name) for _ in range(5)}
    assert names == {"t-name"}
    assert threading.current_thread().name != "t-name"
    lane.close()


async def test_a_started_call_is_not_abandoned_by_cancellation() -> None:
    lane, finished = Lane("t-cancel"), threading.Event()

    def work() -> None:
        time.sleep(0.2)
        finished.set()

    with trio.move_on_after(0.05) as scope:
        await lane.run(work)
    assert not scope.cancelled_caught or finished.is_set()
    assert finished.is_set()  # the caller waited for the work it had started
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await lane.run(finished.clear)  # already cancelled: never started
    assert finished.is_set()
    lane.close()


async def test_idle_thread_ends_and_a_new_one_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "IDLE_EXIT_S", 0.05)
    lane = Lane("t-idle")
    first = await lane.run(threading.get_ident)
    with trio.fail_after(5):
        while lane._thread is not None:
            await trio.sleep(0.02)
    assert "t-idle" not in {t.name for t in threading.enumerate()}
    assert isinstance(await lane.run(threading.get_ident), int)  # served by a fresh thread
    lane.close()
    assert lane._thread is None
    assert first  # the first call was served too


async def test_close_drains_then_a_later_call_starts_again() -> None:
    lane, done = Lane("t-close"), list[int]()
    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(lane.run, done.append, n)
            await trio.lowlevel.checkpoint()  # asked in this order
    lane.close()
    assert done == list(range(5))
    assert await lane.run(lambda: 7) == 7
    lane.close()


async def test_closing_as_the_thread_goes_idle_never_deadlocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "IDLE_EXIT_S", 0.001)  # the idle path and close() meet again and again
    lane = Lane("t-race")
    with trio.fail_after(20):
        for n in range(200):
            assert await lane.run(lambda n=n: n) == n
            await trio.sleep(0.001 * (n % 3))
            await trio.to_thread.run_sync(lane.close, abandon_on_cancel=True)
    assert lane._thread is None
