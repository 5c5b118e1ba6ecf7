"""Adopting callers after a restart (and in the 5-second safety sweep) against a channel list that changes
under it: a channel that goes while being adopted is closed on the record, never tracked for ever, and does
not stop the others being adopted; a channel the gateway just saw leave is not adopted again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import trio

from gateway import settings as config
from gateway.asterisk.ari import Ari
from gateway.incident.bus import Bus
from gateway.incident.callback_table import CallbackTable
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, SqliteStore, event
from gateway.intake.calls import Intake
from gateway.intake.lost_calls import close_call, was_cut
from gateway.metrics import Metrics
from tests.rest_double import RestDouble

CREATED = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(time.time() - 60))


def in_dial(channel_id: str, incident_id: str) -> dict[str, object]:
    """A caller channel in the dialplan's Dial to pos1, as ARI lists it."""
    return {"id": channel_id, "name": f"PJSIP/operator-trunk-{channel_id}", "state": "Up", "creationtime": CREATED,
            "dialplan": {"context": "ecgw-deliver", "exten": "pos1", "priority": 1, "app_name": "Dial",
                         "app_data": "PJSIP/ecgw-pos-pos1"},
            "channelvars": {"ECGW_ROLE": "caller", "ECGW_INCIDENT": incident_id, "ECGW_SERVICE": "112"}}


class ChangingChannels(RestDouble):
    """Asterisk's REST side listing two callers in Dial; the first hangs up before its subscription."""

    def __init__(self, channels: list[dict[str, object]], gone: set[str]) -> None:
        self.channels, self.gone, self.subscribed = channels, gone, []

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if method == "GET" and path.startswith("channels"):
            return 200, json.dumps(self.channels).encode()
        if "/subscription" in path:
            source = parse_qs(urlsplit(path).query)["eventSource"][0].removeprefix("channel:")
            if source in self.gone:
                return 422, b'{"message": "Event source does not exist"}'
            self.subscribed.append(source)
        return (200, b"[]") if method == "GET" else (204, b"")


async def stored(store: AsyncStore, recorder: Recorder, incident_id: str, channel_id: str) -> None:
    caller = Caller(raw_number="+77011234567", number="+77011234567", display_name="", withheld=False)
    incident = Incident(id=incident_id, service="112", created_wall=time.time() - 60, caller=caller,
                        channel_id=channel_id, state="answered", position="pos1")
    incident.timeline.append(event("call_arrived", "caller"))
    held = recorder.track(Held(incident))
    await recorder.create(held)
    recorder.release(held)


async def test_a_channel_gone_while_adopted_is_closed_and_the_others_are_still_adopted(tmp_path: Path) -> None:
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    recorder = Recorder(store, Bus())
    intake = Intake(config.load(), store, recorder, Metrics())
    rest = ChangingChannels([in_dial("gone", "20261204-000000-1.1"), in_dial("live", "20261204-000000-2.1")],
                            gone={"gone"})
    websocket = SimpleNamespace(process_ws=None)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await stored(store, recorder, "20261204-000000-1.1", "gone")
            await stored(store, recorder, "20261204-000000-2.1", "live")
            await nursery.start(intake.serve, Ari(websocket, "ecgw", rest))  # type: ignore[arg-type]
            while "live" not in rest.subscribed:
                await trio.sleep(0.01)
            await trio.sleep(0.1)
            assert set(intake.calls) == {"live"}  # the gone one is not tracked for ever
            gone = await store.get("20261204-000000-1.1")
            assert [e.kind for e in gone.timeline][-2:] == ["adopted", "hung_up"] and gone.state == "closed"
            live = await store.get("20261204-000000-2.1")
            assert [e.kind for e in live.timeline][-1] == "adopted" and live.state != "closed"
            nursery.cancel_scope.cancel()


async def test_a_channel_just_seen_leaving_is_not_adopted_again(tmp_path: Path) -> None:
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    recorder = Recorder(store, Bus())
    intake = Intake(config.load(), store, recorder, Metrics())
    rest = ChangingChannels([], gone=set())
    websocket = SimpleNamespace(process_ws=None)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await stored(store, recorder, "20261204-000000-3.1", "leaving")
            await nursery.start(intake.serve, Ari(websocket, "ecgw", rest))  # type: ignore[arg-type]
            intake.gone["leaving"] = trio.current_time()  # its ChannelDestroyed came a moment ago
            rest.channels = [in_dial("leaving", "20261204-000000-3.1")]  # Asterisk still lists it, tearing down
            await intake._adopt(Ari(websocket, "ecgw", rest), nursery)  # type: ignore[arg-type]
            assert "leaving" not in intake.calls and rest.subscribed == []
            kinds = [e.kind for e in (await store.get("20261204-000000-3.1")).timeline]
            assert "adopted" not in kinds
            nursery.cancel_scope.cancel()


def position_leg(incident_id: str) -> dict[str, object]:
    """pos1's leg of that caller's Dial, answered."""
    return {"id": f"leg-{incident_id}", "name": "PJSIP/ecgw-pos-pos1-00000001", "state": "Up", "creationtime": CREATED,
            "channelvars": {"ECGW_INCIDENT": incident_id}}


async def test_a_call_closed_as_lost_with_its_node_but_still_up_is_reopened_when_adopted(tmp_path: Path) -> None:
    """Node A's gateway died, its Asterisk did not: node B closed A's calls as cut off and listed them for
    call-back. A's gateway, back, adopts a call still talking to pos1: the incident is answered again, off
    the call-back list, and a second loss of the node could close it again (its guard is given back)."""
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    recorder = Recorder(store, Bus())
    cfg = config.load()
    intake = Intake(cfg, store, recorder, Metrics())
    incident_id = "20261204-000000-nodea.4.1"
    rest = ChangingChannels([in_dial("talking", incident_id), position_leg(incident_id)], gone=set())
    websocket = SimpleNamespace(process_ws=None)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await stored(store, recorder, incident_id, "talking")
            assert await close_call(recorder, incident_id, "call_lost", "node:node-b", listed=lambda _: True,
                                    node="node-a", last_heard_wall=time.time() - 10)
            assert [row.incident_id for row in await CallbackTable(store).open_rows(0.0)] == [incident_id]
            await nursery.start(intake.serve, Ari(websocket, "ecgw", rest))  # type: ignore[arg-type]
            while "talking" not in rest.subscribed:
                await trio.sleep(0.01)
            incident = await store.get(incident_id)
            assert incident.state == "answered"
            kinds = [e.kind for e in incident.timeline]
            assert kinds[-2:] == ["call_lost", "adopted"] and incident.timeline[-1].data["resumed"] is True
            assert await CallbackTable(store).open_rows(0.0) == []
            assert await store.read("SELECT outcome FROM callbacks WHERE incident_id=?", (incident_id,)) == [
                ("still_connected",)]
            assert await store.read("SELECT key FROM seen WHERE key=?", (f"node-lost:{incident_id}",)) == []
            assert not was_cut(incident)
            nursery.cancel_scope.cancel()


def test_only_a_call_whose_last_word_is_call_lost_is_taken_for_cut() -> None:
    caller = Caller(raw_number="1", number="1", display_name="", withheld=False)
    incident = Incident(id="x", service="112", created_wall=0.0, caller=caller, state="closed")
    incident.timeline.append(event("call_lost", "node:b"))
    assert was_cut(incident)
    incident.timeline.append(event("hung_up", "caller"))
    assert not was_cut(incident)  # ended after all
    incident.timeline.append(event("call_lost", "node:b"))
    incident.state = "answered"
    assert not was_cut(incident)  # not closed: nothing to reopen


class FactsByRest(ChangingChannels):
    """Also answers ``GET channels/<id>/variable``: ECGW_FACTS as the dialplan set it, or Asterisk's 404 for a
    variable a channel does not have."""

    def __init__(self, channels: list[dict[str, object]], variables: dict[tuple[str, str], str]) -> None:
        super().__init__(channels, gone=set())
        self.variables, self.asked = variables, list[tuple[str, str]]()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if "/variable?" in path:
            channel_id = path.split("/")[1]
            name = parse_qs(urlsplit(path).query)["variable"][0]
            self.asked.append((channel_id, name))
            value = self.variables.get((channel_id, name))
            if value is None:
                return 404, b'{"message": "Provided variable was not found"}'
            return 200, json.dumps({"value": value}).encode()
        return await super().request(method, path, body)


async def test_a_caller_never_stored_is_adopted_with_the_facts_read_by_rest(tmp_path: Path) -> None:
    """A call that reached a dispatcher while no gateway had stored it: its facts came with no StasisStart
    this gateway saw, so they are read from ECGW_FACTS (one request); a channel without them (an older
    dialplan) has each variable asked for, and is still recorded."""
    from tests.core.test_call_facts import asterisk_line

    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    recorder = Recorder(store, Bus())
    intake = Intake(config.load(), store, recorder, Metrics())
    line = asterisk_line({"ECGW_SERVICE": "1402", "ECGW_PRES": "prohib", "ECGW_CALL_ID": "abc@op.kz",
                          "ECGW_LOCATION_FORMAT": "GML", "ECGW_LOCATION": "shape=Point,crs=2d,pos=43.25 76.95"})
    rest = FactsByRest([in_dial("with", "20261205-000000-5.1"), in_dial("without", "20261205-000000-6.1")],
                       {("with", "ECGW_FACTS"): line, ("without", "ECGW_PRES"): "allowed"})
    websocket = SimpleNamespace(process_ws=None)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, Ari(websocket, "ecgw", rest))  # type: ignore[arg-type]
            while not {"with", "without"} <= set(rest.subscribed):
                await trio.sleep(0.01)
            found = await store.get("20261205-000000-5.1")
            assert (found.service, found.caller.withheld, found.call_id) == ("1402", True, "abc@op.kz")
            assert [(loc.lat, loc.lon) for loc in found.locations] == [(43.25, 76.95)]
            assert [name for channel, name in rest.asked if channel == "with"] == ["ECGW_FACTS"]
            bare = await store.get("20261205-000000-6.1")
            assert (bare.service, bare.call_id, bare.locations) == ("112", "", [])
            assert "adopted" in [e.kind for e in bare.timeline]
            assert len([name for channel, name in rest.asked if channel == "without"]) == 1 + 8
            nursery.cancel_scope.cancel()
