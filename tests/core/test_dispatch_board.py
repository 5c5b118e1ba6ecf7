"""Dispatcher bookkeeping that needs no Asterisk: positions never stay taken for nobody."""

from __future__ import annotations

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
