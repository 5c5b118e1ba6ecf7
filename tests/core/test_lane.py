"""gateway.threads.Lane: blocking calls on one thread of its own, in order, results and errors back."""

from __future__ import annotations

import functools
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


# --- Batches: group commit on a lane, no task of its own -----------------------------------------

def _recording_commit(batches: list[list[int]], gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def commit(items: list[int]) -> list[BaseException | None]:
        if gate is not None:
            gate.wait(5)
        batches.append(list(items))
        return [ValueError(f"bad {n}") if n < 0 else None for n in items]
    return commit


async def test_batches_group_what_waits_and_keep_order() -> None:
    lane, batches, gate = Lane("t-batch"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate))
    done: list[int] = []

    async def put(n: int) -> None:
        await writes.put(n)
        done.append(n)

    async with trio.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(put, n)
            await trio.lowlevel.checkpoint()
        await trio.sleep(0.05)  # 0 is being committed (held at the gate); 1..5 wait for the next batch
        assert done == []
        gate.set()
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert sorted(done) == list(range(6))
    lane.close()


async def test_batches_give_each_writer_its_own_error() -> None:
    lane, batches, gate = Lane("t-batch-err"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate))
    outcomes: dict[int, str] = {}

    async def put(n: int) -> None:
        try:
            await writes.put(n)
            outcomes[n] = "ok"
        except ValueError as exc:
            outcomes[n] = str(exc)

    async with trio.open_nursery() as nursery:
        for n in (1, -2, 3):
            nursery.start_soon(put, n)
            await trio.lowlevel.checkpoint()
        gate.set()
    assert outcomes == {1: "ok", -2: "bad -2", 3: "ok"}
    lane.close()


async def test_batches_a_commit_that_raises_fails_its_writers_and_the_next_batch_runs() -> None:
    lane, calls = Lane("t-batch-bug"), list[list[int]]()

    def commit(items: list[int]) -> list[BaseException | None]:
        calls.append(items)
        if items == [7]:
            raise RuntimeError("a bug in the commit")
        return [None] * len(items)

    writes = threads.Batches[int](lane, commit)
    with pytest.raises(RuntimeError, match="a bug"):
        await writes.put(7)
    await writes.put(8)  # the batches go on
    assert calls == [[7], [8]]
    lane.close()


async def test_batches_a_cancelled_writer_leaves_and_its_item_is_still_committed() -> None:
    lane, batches, gate = Lane("t-batch-cancel"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate))
    with trio.move_on_after(0.05) as scope:
        await writes.put(1)
    assert scope.cancelled_caught  # left while the commit was held
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await writes.put(99)  # already cancelled: never asked
    gate.set()
    with trio.fail_after(5):
        await writes.put(2)
    assert batches == [[1], [2]]
    lane.close()


# --- the window: while writers meet, a batch waits for company ------------------------------------

async def _writers_meet(writes: threads.Batches[int], gate: threading.Event) -> None:
    """Two items in one batch (the first held at the gate while the others wait): writers have met. The last
    is urgent, so their batch, started as the first ends, waits for no window."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writes.put, 100)
        await trio.sleep(0.02)  # 100 is held at the gate
        nursery.start_soon(writes.put, 101)
        await trio.sleep(0.01)
        nursery.start_soon(functools.partial(writes.put, 102, urgent=True))
        await trio.sleep(0.02)
        gate.set()


async def test_a_lone_writer_never_waits_for_the_window() -> None:
    lane, batches = Lane("t-window-lone"), list[list[int]]()
    writes = threads.Batches[int](lane, _recording_commit(batches), window_s=60.0)
    with trio.fail_after(5):  # a window of a minute, never waited: no two writers ever met
        for n in range(5):
            await writes.put(n)
    assert batches == [[0], [1], [2], [3], [4]]
    lane.close()


async def test_once_writers_met_a_batch_takes_what_comes_in_its_window() -> None:
    lane, batches, gate = Lane("t-window-gather"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate), window_s=0.3)
    await _writers_meet(writes, gate)
    assert [sorted(b) for b in batches] == [[100], [101, 102]]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for n in range(3):  # one at a time, each its own batch without the window
                nursery.start_soon(writes.put, n)
                await trio.sleep(0.03)
    assert batches[2:] == [[0, 1, 2]]
    lane.close()


async def test_a_batch_started_as_the_last_ends_waits_out_its_oldest_items_window() -> None:
    lane, batches, gate = Lane("t-window-chain"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate), window_s=0.3)
    await _writers_meet(writes, gate)
    gate.clear()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writes.put, 1)  # its window: held at the gate after it
            await trio.sleep(0.35)
            nursery.start_soon(writes.put, 2)  # asked while 1 commits
            await trio.sleep(0.02)
            gate.set()  # 1 ends; 2's batch waits its window, and 3 comes within it
            await trio.sleep(0.1)
            nursery.start_soon(writes.put, 3)
    assert [sorted(b) for b in batches[2:]] == [[1], [2, 3]]
    lane.close()


async def test_an_urgent_item_ends_the_wait_and_takes_the_others_with_it() -> None:
    lane, batches, gate = Lane("t-window-urgent"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate), window_s=60.0)
    await _writers_meet(writes, gate)
    with trio.fail_after(5):  # not the minute
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writes.put, 1)
            nursery.start_soon(writes.put, 2)
            await trio.sleep(0.03)
            assert len(batches) == 2  # 1 and 2 wait in the window
            await writes.put(3, urgent=True)
    assert [sorted(b) for b in batches[2:]] == [[1, 2, 3]]
    lane.close()


async def test_a_read_asked_in_the_window_sees_the_writes_asked_before_it() -> None:
    lane, batches, gate = Lane("t-window-read"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate), window_s=0.2)
    await _writers_meet(writes, gate)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writes.put, 7)
            await trio.sleep(0.02)  # 7 waits in the window
            seen = await lane.run(lambda: [list(b) for b in batches])
    assert seen[-1] == [7]
    lane.close()


async def test_company_is_forgotten_and_writes_go_at_once_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "COMPANY_S", 0.05)
    lane, batches, gate = Lane("t-window-forget"), list[list[int]](), threading.Event()
    writes = threads.Batches[int](lane, _recording_commit(batches, gate), window_s=60.0)
    await _writers_meet(writes, gate)
    await trio.sleep(0.1)
    with trio.fail_after(5):
        await writes.put(1)
    assert batches[-1] == [1]
    lane.close()


async def test_a_commit_that_answers_the_wrong_count_fails_its_writers() -> None:
    lane = Lane("t-batch-count")
    writes = threads.Batches[int](lane, lambda items: [])
    with pytest.raises(RuntimeError, match="answered 0 items of 1"):
        await writes.put(1)
    lane.close()


async def test_a_commit_that_raises_after_a_window_fails_its_writers_and_the_next_batch_runs() -> None:
    lane, calls, gate = Lane("t-window-bug"), list[list[int]](), threading.Event()

    def commit(items: list[int]) -> list[BaseException | None]:
        gate.wait(5)
        calls.append(sorted(items))
        if 7 in items:
            raise RuntimeError("a bug in the commit")
        return [None] * len(items)

    writes = threads.Batches[int](lane, commit, window_s=0.05)
    await _writers_meet(writes, gate)
    with trio.fail_after(5):
        with pytest.raises(RuntimeError, match="a bug"):
            await writes.put(7)  # waited in a window, then failed
        await writes.put(8)
    assert calls[2:] == [[7], [8]]
    lane.close()
