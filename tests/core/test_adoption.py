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
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, SqliteStore, event
from gateway.intake.calls import Intake
from gateway.metrics import Metrics

CREATED = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(time.time() - 60))


def in_dial(channel_id: str, incident_id: str) -> dict[str, object]:
    """A caller channel in the dialplan's Dial to pos1, as ARI lists it."""
    return {"id": channel_id, "name": f"PJSIP/operator-trunk-{channel_id}", "state": "Up", "creationtime": CREATED,
            "dialplan": {"context": "ecgw-deliver", "exten": "pos1", "priority": 1, "app_name": "Dial",
                         "app_data": "PJSIP/ecgw-pos-pos1"},
            "channelvars": {"ECGW_ROLE": "caller", "ECGW_INCIDENT": incident_id, "ECGW_SERVICE": "112"}}


class ChangingChannels:
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
            await nursery.start(store.run)
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
            await nursery.start(store.run)
            await stored(store, recorder, "20261204-000000-3.1", "leaving")
            await nursery.start(intake.serve, Ari(websocket, "ecgw", rest))  # type: ignore[arg-type]
            intake.gone["leaving"] = trio.current_time()  # its ChannelDestroyed came a moment ago
            rest.channels = [in_dial("leaving", "20261204-000000-3.1")]  # Asterisk still lists it, tearing down
            await intake._adopt(Ari(websocket, "ecgw", rest), nursery)  # type: ignore[arg-type]
            assert "leaving" not in intake.calls and rest.subscribed == []
            kinds = [e.kind for e in (await store.get("20261204-000000-3.1")).timeline]
            assert "adopted" not in kinds
            nursery.cancel_scope.cancel()
