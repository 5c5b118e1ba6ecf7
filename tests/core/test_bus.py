"""The incident-change bus: only changes reach subscribers, and a slow one is dropped, never waited for."""

from __future__ import annotations

import msgspec
import pytest
import trio

from gateway.incident.bus import Bus
from gateway.incident.records import IncidentSummary

SUMMARY = IncidentSummary(id="i1", service="112", state="queued", created_wall=1.0, number="+77011234567",
                          category="", position="")


async def test_an_unchanged_summary_is_not_sent_again() -> None:
    bus = Bus()
    async with bus.subscribe() as changes:
        for summary in (SUMMARY, SUMMARY, msgspec.structs.replace(SUMMARY, state="ringing"),
                        msgspec.structs.replace(SUMMARY, state="ringing"), SUMMARY):
            bus.publish(summary)
        got = [changes.receive_nowait().state for _ in range(3)]
        assert got == ["queued", "ringing", "queued"]
        with pytest.raises(trio.WouldBlock):
            changes.receive_nowait()


async def test_a_subscriber_that_falls_behind_is_dropped() -> None:
    bus = Bus(buffer=2)
    async with bus.subscribe() as changes:
        for n in range(4):
            bus.publish(msgspec.structs.replace(SUMMARY, id=f"i{n}"))
        assert [changes.receive_nowait().id for _ in range(2)] == ["i0", "i1"]
        with pytest.raises(trio.EndOfChannel):
            changes.receive_nowait()


def test_it_remembers_a_bounded_number_of_incidents() -> None:
    bus = Bus(remember=3)
    for n in range(10):
        bus.publish(msgspec.structs.replace(SUMMARY, id=f"i{n}"))
    assert list(bus._last) == ["i7", "i8", "i9"]
