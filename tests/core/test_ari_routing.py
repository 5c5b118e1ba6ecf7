"""``Ari.route_to``: the websocket's reader hands each event to the intake's handler itself, in order, after
the events that waited for it; a handler's bug on one event is logged and the others still come."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from gateway.asterisk.ari import Ari
from gateway.protocols import ari_events as ev


def dtmf(digit: str) -> ev.Event:
    event = ev.decode({"type": "ChannelDtmfReceived", "channel": {"id": "c1"}, "digit": digit})
    assert event is not None
    return event


async def test_waiting_events_first_then_each_from_the_reader_in_order(caplog: pytest.LogCaptureFixture) -> None:
    websocket = SimpleNamespace(process_ws=None)
    ari = Ari(websocket, "ecgw", None)  # type: ignore[arg-type]
    for digit in "12":  # before anyone routes them (the intake adopting calls): they wait in the channel
        await websocket.process_ws(dtmf(digit))
    got: list[str] = []

    def handler(event: ev.Event) -> None:
        assert isinstance(event, ev.ChannelDtmfReceived)
        if event.digit == "4":
            raise ValueError("a bug in handling one event")
        got.append(event.digit)

    ari.route_to(handler)
    assert got == ["1", "2"]
    for digit in "345":
        await websocket.process_ws(dtmf(digit))  # handled there and then, by the reader's own call
    assert got == ["1", "2", "3", "5"]
    assert "ARI event ChannelDtmfReceived not handled" in caplog.text and "a bug in handling" in caplog.text
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ari.closed)
            await trio.sleep(0.01)
            ari._send.close()  # what the reader does when the websocket ends
    assert got == ["1", "2", "3", "5"]
