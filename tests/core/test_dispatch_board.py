"""Dispatcher bookkeeping that needs no Asterisk: positions never stay taken for nobody."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway import settings as config
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake import call_state as cs
from gateway.intake.call import Call
from gateway.intake.dispatch import Dispatcher
from gateway.metrics import Metrics


def dispatcher(tmp_path: Path) -> Dispatcher:
    cfg = config.load()
    return Dispatcher(cfg.dispatch, Recorder(AsyncStore(SqliteStore(tmp_path / "s.db")), Bus()), Metrics())


def call(incident_id: str) -> Call:
    caller = Caller(raw_number="", number="", display_name="", withheld=True)
    return Call(Held(Incident(id=incident_id, service="112", created_wall=0.0, caller=caller)),
                f"ch-{incident_id}", 0.0)


def test_sweep_frees_positions_held_for_no_tracked_call(tmp_path: Path) -> None:
    d = dispatcher(tmp_path)
    talking = call("a")
    talking.life.handle(cs.Adopted("pos1", answered=True, at=0.0))
    d.calls["a"] = talking
    d.board.set("pos1", "busy")
    d.board.set("pos2", "ringing")  # its call vanished (an event lost in a race)
    d.sweep()
    assert d.board.snapshot() == {"pos1": "busy", "pos2": "free", "pos3": "free"}


def test_release_frees_the_position_of_a_call_that_was_talking(tmp_path: Path) -> None:
    d = dispatcher(tmp_path)
    gone = call("b")
    gone.life.handle(cs.Adopted("pos2", answered=True, at=0.0))
    d.calls["b"] = gone
    d.board.set("pos2", "busy")
    d.queue.push("b", 3, 0.0)
    d.release(gone)
    assert gone.life.gone and "b" not in d.calls and "b" not in d.queue
    assert d.board.state("pos2") == "free"


async def test_a_match_that_raced_a_hang_up_gives_the_position_back(tmp_path: Path) -> None:
    d = dispatcher(tmp_path)
    late = call("c")
    d.enqueue(late, 5)
    d.release(late)  # hung up: out of the queue and the dispatcher's calls
    assert "c" not in d.queue and "c" not in d.calls
    d.board.set("pos1", "ringing")  # matched in the same instant, before the hang-up was seen
    d.apply(late, cs.Matched("pos1", at=0.0))
    assert d.board.state("pos1") == "free"


async def test_a_call_queued_twice_keeps_its_first_place(tmp_path: Path,
                                                       autojump_clock: trio.testing.MockClock) -> None:
    d = dispatcher(tmp_path)
    first, second = call("d"), call("e")
    d.enqueue(first, 5)
    await trio.sleep(1)
    d.enqueue(second, 5)
    first.life.handle(cs.Matched("pos1", at=1.0))  # rang, nobody answered, came back
    first.life.handle(cs.Unanswered("NOANSWER", at=30.0))
    first.life.handle(cs.Returned())
    d.queue.remove("d")
    d.enqueue(first, 5)
    assert d.queue.ordered() == ["d", "e"]  # back at its original place, ahead of the later caller


async def test_a_state_the_table_refuses_is_reported_not_swallowed(tmp_path: Path) -> None:
    d = dispatcher(tmp_path)
    talking = call("f")
    talking.life.handle(cs.Adopted("pos1", answered=True, at=0.0))
    with pytest.raises(cs.CallStateError, match="Queued is not expected in state talking"):
        d.enqueue(talking, 5)  # the intake turns this into a hand-off to the fallback dialplan
    assert "f" not in d.queue


def test_a_position_is_kept_from_a_call_back_only_by_callers_it_could_take(tmp_path: Path) -> None:
    d = dispatcher(tmp_path)  # the shipped config: pos1, pos2 for 102/112, pos3 for 1402 (lent to emergencies)
    d.queue.push("line", 0, 1.0, line="1402")
    assert (d.waiting_for("pos1"), d.waiting_for("pos3")) == (0, 1)
    d.queue.push("fire", 9, 2.0)
    assert (d.waiting_for("pos1"), d.waiting_for("pos3")) == (1, 2)


class Continued:
    """ARI as far as overflow goes: which channels were continued where (and when)."""

    def __init__(self) -> None:
        self.continued: list[tuple[str, str, float]] = []

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, label: str = "") -> None:
        self.continued.append((channel_id, extension, trio.current_time()))


async def test_a_waiting_call_overflows_on_time_and_one_gone_or_talking_does_not(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Every position busy: the call still waiting overflow_after_s after it was first queued goes to the
    backup centre (one timer for all calls, no task each); the one that hung up and the one a dispatcher
    took meanwhile do not; a call queued later overflows at its own time."""
    d = dispatcher(tmp_path)
    for position in ("pos1", "pos2", "pos3"):
        d.board.set(position, "busy")
    ari = Continued()
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run, ari)
        waiting, gone, taken, later = call("w"), call("g"), call("t"), call("l")
        for c in (waiting, gone, taken):
            d.enqueue(c, 5)
            d.watch_overflow(c)
        await trio.sleep(10)
        d.release(gone)
        taken.life.handle(cs.Matched("pos1", at=trio.current_time()))
        taken.life.handle(cs.HandedOff())
        taken.life.handle(cs.Answered(at=trio.current_time()))
        d.enqueue(later, 5)
        d.watch_overflow(later)
        after = d.cfg.overflow_after_s
        await trio.sleep(after - 10 - 1)
        assert waiting.life.state is cs.State.QUEUED
        await trio.sleep(2)  # the state changes at the deadline; the store write and REST follow
        assert (waiting.life.state, taken.life.state, later.life.state) == (
            cs.State.OVERFLOWED, cs.State.TALKING, cs.State.QUEUED)
        await trio.sleep(10)
        assert later.life.state is cs.State.OVERFLOWED
        for _ in range(200):  # the store's thread runs in real time, not the test's clock
            if len(ari.continued) == 2:
                break
            await trio.to_thread.run_sync(time.sleep, 0.05)
        assert sorted(channel for channel, where, _ in ari.continued if where == "overflow") == ["ch-l", "ch-w"]
        nursery.cancel_scope.cancel()


async def test_a_call_gone_is_not_kept_alive_until_its_overflow_time(tmp_path: Path,
                                                                     autojump_clock: trio.testing.MockClock) -> None:
    """Nothing of the dispatcher's holds a call that hung up (a task sleeping until each call's overflow time
    did, for two minutes: tens of thousands of objects at 50 calls/s, and the garbage collector's full passes
    over them stalled every call)."""
    import gc
    import weakref

    d = dispatcher(tmp_path)
    for position in ("pos1", "pos2", "pos3"):
        d.board.set(position, "busy")  # it waits in the queue, then hangs up
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run, Continued())
        short = call("s")
        d.enqueue(short, 5)
        d.watch_overflow(short)
        await trio.sleep(1)
        d.release(short)
        kept = weakref.ref(short)
        del short
        await trio.sleep(1)
        gc.collect()
        assert kept() is None
        nursery.cancel_scope.cancel()


async def test_a_dial_result_recorded_after_the_hang_up_leaves_the_incident_closed(tmp_path: Path) -> None:
    """A Dial's result and the caller's hang-up in one websocket read: their records run in either order, and
    the last made must not reopen the call (found by the failover drill: left ``queued`` after ``hung_up``)."""
    d = dispatcher(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run, Continued())
        for result in (cs.Unanswered("CANCEL", at=1.0), cs.Ringing(), cs.Answered(at=1.0)):
            gone = call(f"x-{type(result).__name__}")
            gone.life.handle(cs.Queued(at=0.0))
            gone.life.handle(cs.Matched("pos1", at=0.0))
            gone.life.handle(cs.HandedOff())
            gone.life.handle(result)
            d.release(gone)  # its hang-up seen right after the result
            await d.recorder.record(gone.held, "hung_up", actor="caller", state="closed")  # its record first
            await d._record_progress(gone, "position_unanswered", {"position": "pos1"})  # then the result's
            assert gone.incident.state == "closed"
            stored = await d.recorder.store.get(gone.id)
            assert stored.state == "closed" and [e.kind for e in stored.timeline][-1] == "position_unanswered"
        talking = call("y")
        for event in (cs.Queued(at=0.0), cs.Matched("pos2", at=0.0), cs.HandedOff(), cs.Ringing()):
            talking.life.handle(event)
        await d._record_progress(talking, "ringing", {"position": "pos2"})
        assert talking.incident.state == "ringing"
        talking.life.handle(cs.Answered(at=2.0))
        await d._record_progress(talking, "answered", {"position": "pos2"})
        assert talking.incident.state == "answered"
        nursery.cancel_scope.cancel()


async def test_a_call_queued_while_the_dispatcher_closes_waits_and_starts_no_hand_off(tmp_path: Path) -> None:
    """The connection ended: the dispatcher's loop and its nursery close, and a call task that had not yet seen
    the cancellation queues its caller. It waits (adopted by the next connection's dispatcher), no error."""
    d = dispatcher(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run, Continued())
        nursery.cancel_scope.cancel()
    late = call("z")
    d.enqueue(late, 5)  # a free position, but nobody to hand off with
    assert late.life.state is cs.State.QUEUED and "z" in d.queue
