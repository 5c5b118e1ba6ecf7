"""A repeat caller's links to their earlier incidents on the record: written with the Dial's outcome when a
position took the call (one durable write fewer per call), at once when the caller waits in the queue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import trio

from gateway.incident.records import Incident, new_incident_id
from gateway.incident.store import AsyncStore
from gateway.intake import call_state as cs
from gateway.intake.calls import Intake
from gateway.protocols import ari_events as ev
from gateway.protocols.caller import Caller
from tests.core.test_queued_record import CALLER, Rest, all_busy, arrive, arrived, kinds, stasis_start, written


async def earlier_call(store: AsyncStore) -> str:
    """An incident of the same number a minute ago."""
    wall = time.time() - 60
    incident = Incident(id=new_incident_id(wall), service="112", created_wall=wall, channel_id="ch-earlier",
                        caller=Caller(raw_number="+77011234567", number="+77011234567", display_name="",
                                      withheld=False))
    await store.create(incident)
    return incident.id


async def linked_in_memory(intake: Intake) -> None:
    while not (await arrived(intake)).incident.linked_to:
        await trio.sleep(0.01)


@asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[AsyncStore, Intake, SimpleNamespace, str]]:
    """The intake serving, with an earlier incident of the caller's number in its store; yields the store, the
    intake, the websocket to send events on and the earlier incident's id."""
    store, intake, websocket, ari = await arrive(tmp_path, Rest())
    earlier = await earlier_call(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, ari)
            yield store, intake, websocket, earlier
            nursery.cancel_scope.cancel()


async def test_a_repeat_caller_a_position_takes_has_the_link_written_with_the_ringing(tmp_path: Path) -> None:
    async with served(tmp_path) as (store, intake, websocket, earlier):
        await stasis_start(websocket)
        await linked_in_memory(intake)
        call = intake.calls[CALLER]
        assert call.life.state in cs.DIALLED
        assert "linked" not in await kinds(store, call.id)  # noted, not a write of its own
        await websocket.process_ws(ev.decode({"type": "Dial", "dialstatus": "RINGING",
                                              "caller": {"id": CALLER}, "peer": {"id": "pos-leg"}}))
        stored = await written(store, call.id, "ringing")
        assert stored.index("linked") < stored.index("ringing")
        incident = await store.get(call.id)
        assert (incident.linked_to, incident.link_reasons) == ([earlier], ["same_number"])


async def test_a_repeat_caller_who_waits_has_the_link_written_at_once(tmp_path: Path) -> None:
    async with served(tmp_path) as (store, intake, websocket, earlier):
        all_busy(intake)
        await stasis_start(websocket)
        call = await arrived(intake)
        await written(store, call.id, "linked")
        assert (await store.get(call.id)).linked_to == [earlier]
        assert call.life.state is cs.State.QUEUED
