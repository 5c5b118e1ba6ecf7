"""Events that came in one websocket read are routed in one step, so the tasks they start begin in any order:
a caller who hangs up in the same read as their StasisStart is recorded, closed, and never answered."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import trio

from gateway import settings as config
from gateway.asterisk.ari import Ari
from gateway.incident.bus import Bus
from gateway.incident.recorder import Recorder
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.calls import Intake
from gateway.metrics import Metrics
from gateway.protocols import ari_events as ev
from tests.core.test_queued_record import CALLER, Rest, written


async def test_a_hang_up_in_the_same_read_as_the_stasis_start_closes_the_call_unanswered(tmp_path: Path) -> None:
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    intake = Intake(config.load(), store, Recorder(store, Bus()), Metrics())
    websocket, rest = SimpleNamespace(process_ws=None), Rest()
    ari = Ari(websocket, "ecgw", rest)  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, ari)
            await websocket.process_ws(ev.decode({"type": "StasisStart", "args": ["caller", "112"], "channel": {
                "id": CALLER, "name": "PJSIP/operator-trunk-1", "caller": {"number": "+77011234567"}}}))
            incident_id = intake.calls[CALLER].id
            # no checkpoint in between: what the reader does with two events of one read
            await websocket.process_ws(ev.decode({"type": "ChannelDestroyed", "cause": 16,
                                                  "channel": {"id": CALLER}}))
            await written(store, incident_id, "hung_up")  # closed in the same write
            await trio.sleep(0.2)  # time for a wrongly running serving task to answer or queue
            assert not any("/answer" in asked for asked in rest.asked)
            kinds = [e.kind for e in (await store.get(incident_id)).timeline]
            assert kinds[0] == "call_arrived" and "hung_up" in kinds and "queued" not in kinds
            assert (await store.get(incident_id)).state == "closed"
            nursery.cancel_scope.cancel()
