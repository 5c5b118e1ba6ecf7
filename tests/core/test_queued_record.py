"""``queued`` on the record: durable at once for a caller who waits, written with the ``ringing`` for a caller a
free position takes at once (one durable write fewer per call), and never lost when the hand-off fails."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import msgspec
import trio

from gateway import settings as config
from gateway.asterisk.ari import Ari
from gateway.errors import NotFound
from gateway.incident.bus import Bus
from gateway.incident.recorder import Recorder
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake import call_state as cs
from gateway.intake.call import Call
from gateway.intake.calls import Intake
from gateway.metrics import Metrics
from gateway.protocols import ari_events as ev
from tests.rest_double import RestDouble

CALLER = "ch-q"


class Rest(RestDouble):
    """Asterisk's REST side: every request succeeds, except hand-offs when ``refuse_continue``."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.refuse_continue = False

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.asked.append(f"{method} {path.split('?')[0]}")
        if self.refuse_continue and "/continue" in path:
            return 500, b'{"message": "Internal Server Error"}'
        return (200, b"[]") if method == "GET" else (204, b"")


async def kinds(store: AsyncStore, incident_id: str) -> list[str]:
    try:
        return [e.kind for e in (await store.get(incident_id)).timeline]
    except NotFound:  # not stored yet
        return []


async def arrive(tmp_path: Path, rest: Rest):  # type: ignore[no-untyped-def]
    cfg = config.load()
    cfg = msgspec.structs.replace(cfg, ivr=msgspec.structs.replace(cfg.ivr, enabled=False))
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    intake = Intake(cfg, store, Recorder(store, Bus()), Metrics())
    websocket = SimpleNamespace(process_ws=None)
    return store, intake, websocket, Ari(websocket, "ecgw", rest)  # type: ignore[arg-type]


async def stasis_start(websocket: SimpleNamespace) -> None:
    await websocket.process_ws(ev.decode({"type": "StasisStart", "args": ["caller", "112"], "channel": {
        "id": CALLER, "name": "PJSIP/operator-trunk-1", "caller": {"number": "+77011234567"}}}))


async def written(store: AsyncStore, incident_id: str, kind: str) -> list[str]:
    """The incident's stored timeline once ``kind`` is on it."""
    while kind not in (found := await kinds(store, incident_id)):
        await trio.sleep(0.01)
    return found


def all_busy(intake: Intake) -> None:
    """Every position busy: a caller now waits in the queue."""
    for position in intake.dispatcher.board.snapshot():
        intake.dispatcher.board.set(position, "busy")


async def arrived(intake: Intake) -> Call:
    while CALLER not in intake.calls:
        await trio.sleep(0.01)
    return intake.calls[CALLER]


async def test_a_call_a_free_position_takes_has_queued_written_with_its_ringing(tmp_path: Path) -> None:
    rest = Rest()
    store, intake, websocket, ari = await arrive(tmp_path, rest)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, ari)
            await stasis_start(websocket)
            while not any("/continue" in asked for asked in rest.asked):
                await trio.sleep(0.01)
            call = intake.calls[CALLER]
            assert call.life.state is cs.State.DIALLING
            assert "queued" not in await kinds(store, call.id)  # noted, not yet written
            await websocket.process_ws(ev.decode({"type": "Dial", "dialstatus": "RINGING",
                                                  "caller": {"id": CALLER}, "peer": {"id": "pos-leg"}}))
            stored = await written(store, call.id, "ringing")
            assert stored.index("queued") < stored.index("position_dialled") < stored.index("ringing")
            assert (await store.get(call.id)).state == "ringing"
            nursery.cancel_scope.cancel()


async def test_a_caller_who_waits_has_queued_written_at_once(tmp_path: Path) -> None:
    rest = Rest()
    store, intake, websocket, ari = await arrive(tmp_path, rest)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, ari)
            all_busy(intake)
            await stasis_start(websocket)
            call = await arrived(intake)
            await written(store, call.id, "queued")
            assert call.life.state is cs.State.QUEUED and (await store.get(call.id)).state == "queued"
            assert not any("/continue" in asked for asked in rest.asked)
            nursery.cancel_scope.cancel()


async def test_a_failed_hand_off_writes_what_was_noted_for_the_ringing(tmp_path: Path) -> None:
    rest = Rest()
    rest.refuse_continue = True  # every position "fails": the caller stays queued in Stasis
    store, intake, websocket, ari = await arrive(tmp_path, rest)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, ari)
            await stasis_start(websocket)
            call = await arrived(intake)
            await written(store, call.id, "queued")
            assert (await store.get(call.id)).state == "queued"
            assert any("/continue" in asked for asked in rest.asked)  # it was being handed off when noted
            nursery.cancel_scope.cancel()
