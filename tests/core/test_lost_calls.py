"""Calls cut off with a node that died (``gateway.intake.lost_calls``), on both store backends: the lost
node's live call incidents are closed once (``call_lost``) and listed for call-back; its finished calls,
other nodes' calls and calls it took after it was last heard of are left alone; two live nodes closing the
same calls record each once."""

from __future__ import annotations

import time

import trio

from gateway.incident.bus import Bus
from gateway.incident.callback_table import CallbackTable
from gateway.incident.nodes import Nodes, NodeState
from gateway.incident.recorder import Held, Recorder
from gateway.incident.store import AsyncStore
from gateway.intake.lost_calls import LostCalls, close_vanished
from tests.core.test_cluster_nodes import store_of
from tests.core.test_store import incident
from tests.store_backends import Backend

LAST_HEARD = time.time() - 60


def lost(node: str = "node-a") -> NodeState:
    return NodeState(node=node, started_wall=LAST_HEARD - 600, seen_wall=LAST_HEARD, status="ok", active_calls=2,
                     queue_length=0, scenario_runs=0, alive=False)


async def made(store: AsyncStore, incident_id: str, channel: str, state: str, *, number: str = "+77011234567",
               created: float = LAST_HEARD - 5, answer_s: float | None = None) -> None:
    inc = incident(incident_id, number, created=created)
    inc.channel_id, inc.state, inc.answer_s = channel, state, answer_s  # type: ignore[assignment]
    await Recorder(store, Bus()).create(Held(inc))


async def test_a_lost_nodes_live_calls_are_closed_once_and_listed_for_call_back(backend: Backend) -> None:
    with trio.fail_after(30):
        async with store_of(backend) as b_store, store_of(backend) as c_store:
            await made(b_store, "talking", "nodea-1764800000.1", "answered", answer_s=4.0)
            await made(b_store, "waiting", "nodea-1764800000.4", "queued", number="+77017654321")
            await made(b_store, "withheld", "nodea-1764800000.6", "ringing", number="")
            await made(b_store, "done", "nodea-1764800000.7", "closed")
            await made(b_store, "b-call", "nodeb-1764800000.1", "answered")
            await made(b_store, "after", "nodea-1764800999.1", "queued", created=LAST_HEARD + 30)  # a's next life
            await made(b_store, "ancient", "nodea-1.1", "answered", created=LAST_HEARD - 3 * 86400)  # not looked at
            b = LostCalls(b_store, Recorder(b_store, Bus()), Nodes(b_store, "node-b", 1.0), callbacks=True)
            c = LostCalls(c_store, Recorder(c_store, Bus()), Nodes(c_store, "node-c", 1.0), callbacks=True)
            assert await b.close_calls_of(lost()) == 3
            assert await c.close_calls_of(lost()) == 0  # closed already: read as closed, left alone
            states = {i: (await b_store.get(i)).state for i in ("talking", "waiting", "withheld", "done", "b-call",
                                                                 "after", "ancient")}
            assert states == {"talking": "closed", "waiting": "closed", "withheld": "closed", "done": "closed",
                              "b-call": "answered", "after": "queued", "ancient": "answered"}
            talking = await b_store.get("talking")
            [note] = [e for e in talking.timeline if e.kind == "call_lost"]
            assert (note.actor, note.data["node"], note.data["answered"], note.data["callback"]) == \
                ("node:node-b", "node-a", True, True)
            listed = await CallbackTable(b_store).open_rows(0.0)
            assert sorted(r.number for r in listed) == ["+77011234567", "+77017654321"]  # no number: nobody to call
            assert await b.close_calls_of(lost("node-b-gone-without-systemname!")) == 0


async def test_two_live_nodes_closing_the_same_calls_at_once_record_each_once(backend: Backend) -> None:
    with trio.fail_after(30):
        async with store_of(backend) as b_store, store_of(backend) as c_store:
            for n in range(20):
                await made(b_store, f"i{n}", f"nodea-1764800000.{n}", "answered", answer_s=2.0)
            b = LostCalls(b_store, Recorder(b_store, Bus()), Nodes(b_store, "node-b", 1.0), callbacks=False)
            c = LostCalls(c_store, Recorder(c_store, Bus()), Nodes(c_store, "node-c", 1.0), callbacks=False)
            counts: list[int] = []

            async def close(side: LostCalls) -> None:
                counts.append(await side.close_calls_of(lost()))  # a close the other made first is skipped

            async with trio.open_nursery() as nursery:
                nursery.start_soon(close, b)
                nursery.start_soon(close, c)
            for n in range(20):
                timeline = (await b_store.get(f"i{n}")).timeline
                assert [e.kind for e in timeline].count("call_lost") == 1, timeline
            assert b.closed + c.closed == sum(counts) == 20


async def test_a_close_from_a_stale_copy_meets_the_guard_and_is_taken_back(backend: Backend) -> None:
    with trio.fail_after(30):
        async with store_of(backend) as b_store, store_of(backend) as c_store:
            await made(b_store, "x", "nodea-1764800000.1", "answered", answer_s=2.0)
            c_recorder = Recorder(c_store, Bus())
            b = LostCalls(b_store, Recorder(b_store, Bus()), Nodes(b_store, "node-b", 1.0), callbacks=True)
            c = LostCalls(c_store, c_recorder, Nodes(c_store, "node-c", 1.0), callbacks=True)
            stale = await c_recorder.acquire("x")  # c holds it as it was: answered
            assert await b._close("x", lost())
            assert not await c._close("x", lost())  # its write refused whole (the guard), nothing of it kept
            assert stale.incident.state == "answered"
            assert not any(e.kind == "call_lost" for e in stale.incident.timeline)
            c_recorder.release(stale)
            stored = await b_store.get("x")
            assert [e.kind for e in stored.timeline].count("call_lost") == 1 and stored.state == "closed"
            assert len(await CallbackTable(b_store).open_rows(0.0)) == 1


async def test_calls_that_ended_while_the_gateway_was_away_are_closed_as_what_they_were(backend: Backend) -> None:
    """After a restart: a call still up (its channel there, or adopted) is left alone; one whose channel is gone
    ended unseen (the unanswered one listed for call-back); one older than Asterisk's own start was cut by it."""
    started = LAST_HEARD  # Asterisk's startup time
    with trio.fail_after(30):
        async with store_of(backend) as store:
            await made(store, "up", "nodea-1.1", "answered", created=started + 5, answer_s=2.0)
            await made(store, "adopted", "nodea-1.2", "queued", created=started + 6)
            await made(store, "talked", "nodea-1.3", "answered", created=started + 7, answer_s=2.0)
            await made(store, "gave-up", "nodea-1.4", "ringing", number="+77017654321", created=started + 8)
            await made(store, "cut", "nodea-0.9", "answered", number="+77019990000", created=started - 30,
                       answer_s=3.0)
            await made(store, "other-node", "nodeb-1.1", "answered", created=started + 5)
            recorder = Recorder(store, Bus())
            CallbackTable(store)  # the intake's, made when it starts

            async def channels() -> set[str]:
                return {"nodea-1.1", "nodeb-1.1"}

            closed = await close_vanished(store, recorder, "node-a", lambda: {"nodea-1.2"}, channels, started,
                                          callbacks=True)
            assert closed == 3
            states = {i: (await store.get(i)).state for i in ("up", "adopted", "talked", "gave-up", "cut",
                                                               "other-node")}
            assert states == {"up": "answered", "adopted": "queued", "talked": "closed", "gave-up": "closed",
                              "cut": "closed", "other-node": "answered"}
            last = {i: (await store.get(i)).timeline[-1] for i in ("talked", "gave-up", "cut")}
            assert (last["talked"].kind, last["talked"].data["unseen"], last["talked"].data["callback"]) == \
                ("hung_up", True, False)
            assert (last["gave-up"].kind, last["gave-up"].data["callback"]) == ("hung_up", True)
            assert (last["cut"].kind, last["cut"].data["reason"], last["cut"].data["callback"]) == \
                ("call_lost", "asterisk_restarted", True)
            listed = sorted(r.number for r in await CallbackTable(store).open_rows(0.0))
            assert listed == ["+77017654321", "+77019990000"]
            assert await close_vanished(store, recorder, "node-a", lambda: {"nodea-1.2"}, channels, started,
                                        callbacks=True) == 0  # once only
