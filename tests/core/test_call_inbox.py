"""Under overload the record lags, never loses: a call whose task is behind keeps every ARI event,
in order, and the one reader of the websocket keeps serving every other call meanwhile; a caller who
hangs up while being handed to a position still gets their hang-up on the record."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import trio
import trio.testing

from gateway import settings as config
from gateway.asterisk.ari import Ari
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.call import INBOX_HIGH_WATER, Call
from gateway.intake.calls import Intake
from gateway.metrics import Metrics
from gateway.protocols import ari_events as ev
from tests.rest_double import RestDouble

FLOOD = 10 * INBOX_HIGH_WATER  # far more than the old 64-event buffer


class NoCallsRest(RestDouble):
    """Asterisk's REST side with no channel in the app: every request succeeds."""

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        return (200, b"[]") if method == "GET" else (204, b"")


def call(intake: Intake, incident_id: str) -> Call:
    caller = Caller(raw_number="", number="", display_name="", withheld=True)
    held = intake.recorder.track(Held(Incident(id=incident_id, service="112", created_wall=0.0, caller=caller)))
    accepted = Call(held, f"ch-{incident_id}", trio.current_time())
    intake.calls[accepted.channel_id] = accepted
    return accepted


def finished(channel_id: str, playback_id: str) -> dict[str, Any]:
    return {"type": "PlaybackFinished", "playback": {"id": playback_id, "target_uri": f"channel:{channel_id}"}}


def dtmf(channel_id: str, digit: str) -> dict[str, Any]:
    return {"type": "ChannelDtmfReceived", "channel": {"id": channel_id}, "digit": digit}


SLOW_S = 0.005  # the slow call's time per event: its 640 take 3.2 s, the reader's work far less


async def test_a_flooded_call_keeps_every_event_in_order_and_others_are_served(tmp_path: Path) -> None:
    # On the real clock: an autojump clock leaps to the next deadline while a task waits on the store's
    # worker thread, which under load made the test's own timeout fire.
    metrics = Metrics()
    intake = Intake(config.load(), store := AsyncStore(SqliteStore(tmp_path / "s.db")), Recorder(store, Bus()),
                    metrics)
    websocket = SimpleNamespace(process_ws=None)  # asyncari's reader hands each raw event to process_ws
    ari = Ari(websocket, "ecgw", NoCallsRest())  # type: ignore[arg-type]
    slow_seen: list[str] = []
    fast_seen: list[tuple[str, float]] = []

    async def slow_call_task(slow: Call) -> None:  # e.g. a call whose task waits on a slow disk
        async for event in slow.inbox:
            assert isinstance(event, ev.PlaybackFinished)
            await trio.sleep(SLOW_S)
            slow_seen.append(event.playback.id)

    async def fast_call_task(fast: Call) -> None:
        async for event in fast.inbox:
            assert isinstance(event, ev.ChannelDtmfReceived)
            fast_seen.append((event.digit, trio.current_time()))

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, ari)
            slow, fast = call(intake, "slow"), call(intake, "fast")
            nursery.start_soon(slow_call_task, slow)
            nursery.start_soon(fast_call_task, fast)
            sent: list[tuple[str, float]] = []
            for n in range(FLOOD):
                await websocket.process_ws(ev.decode(finished(slow.channel_id, f"p{n}")))
                if n % 100 == 99:
                    sent.append((str(n // 100 % 10), trio.current_time()))
                    await websocket.process_ws(ev.decode(dtmf(fast.channel_id, sent[-1][0])))
            await trio.sleep(0.2)
            assert len(slow_seen) < FLOOD // 2, "the slow call was meant to be behind"
            # every other call served at once, in order, while the slow one lags
            assert [digit for digit, _ in fast_seen] == [digit for digit, _ in sent]
            assert max(got - put for (_, got), (_, put) in zip(fast_seen, sent, strict=True)) < 1.0
            await websocket.process_ws(ev.decode({"type": "ChannelDestroyed", "channel": {"id": fast.channel_id}}))
            while fast.channel_id in intake.calls:  # its hang-up handled too
                await trio.sleep(0.01)
            while len(slow_seen) < FLOOD:
                await trio.sleep(0.05)
            assert slow_seen == [f"p{n}" for n in range(FLOOD)]  # late, but nothing lost and in order
            behind = metrics.registry.get_sample_value("ecgw_call_inbox_behind_total")
            assert behind == 1  # the high-water mark crossed once: counted once
            nursery.cancel_scope.cancel()


class HungUpDuringHandOff(RestDouble):
    """Asterisk's REST side for a caller who hangs up while the gateway hands them to a position: the
    StasisEnd arrives (read as the hand-off's), then the subscription finds no channel (422, not 404)."""

    def __init__(self, websocket: SimpleNamespace) -> None:
        self.websocket = websocket
        self.subscriptions = 0

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if "/subscription" in path:
            self.subscriptions += 1
            await self.websocket.process_ws(ev.decode({"type": "StasisEnd", "channel": {"id": "ch-1"}}))
            await trio.sleep(0.05)  # the reader has seen it before the reply comes
            return 422, b'{"message": "Event source does not exist"}'
        return (200, b"[]") if method == "GET" else (204, b"")


async def test_a_caller_gone_during_the_hand_off_is_closed_not_redialled_forever(tmp_path: Path) -> None:
    cfg = config.load()
    cfg = msgspec.structs.replace(cfg, ivr=msgspec.structs.replace(cfg.ivr, enabled=False))
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    intake = Intake(cfg, store, Recorder(store, Bus()), Metrics())
    websocket = SimpleNamespace(process_ws=None)
    rest = HungUpDuringHandOff(websocket)
    ari = Ari(websocket, "ecgw", rest)  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.serve, ari)
            await websocket.process_ws(ev.decode({"type": "StasisStart", "args": ["caller", "112"], "channel": {
                "id": "ch-1", "name": "PJSIP/operator-trunk-1", "caller": {"number": "+77011234567"},
                "channelvars": {"ECGW_INCIDENT": "20261204-204841-1796417321.1"}}}))
            while not rest.subscriptions or "ch-1" in intake.calls:
                await trio.sleep(0.01)
            await trio.sleep(0.5)  # time enough to try every position again, were it still queued
            assert rest.subscriptions == 1
            incident = await store.get("20261204-204841-1796417321.1")
            assert [e.data["answered"] for e in incident.timeline if e.kind == "hung_up"] == [False]
            assert set(intake.dispatcher.board.snapshot().values()) == {"free"}
            nursery.cancel_scope.cancel()
