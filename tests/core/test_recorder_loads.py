"""``Recorder.acquire``: one load per incident at a time. Two loads that crossed a third task's whole
acquire-write-release made a copy without that write live, whose next event took the written one's place."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, SqliteStore


class SlowFirstLoad(AsyncStore):
    """The first ``get`` reads the incident, then waits at a gate before returning it (a slow reader)."""

    def __init__(self, path: Path) -> None:
        super().__init__(SqliteStore(path))
        self.gate, self.read = trio.Event(), trio.Event()

    async def get(self, incident_id: str) -> Incident:
        found = await super().get(incident_id)
        if not self.read.is_set():
            self.read.set()
            await self.gate.wait()
        return found


async def test_a_load_under_way_is_shared_and_no_write_is_lost(tmp_path: Path) -> None:
    store = SlowFirstLoad(tmp_path / "s.db")
    recorder = Recorder(store, Bus())
    caller = Caller(raw_number="", number="", display_name="", withheld=True)
    made = recorder.track(Held(Incident(id="i-1", service="112", created_wall=time.time(), caller=caller)))
    await recorder.create(made)
    recorder.release(made)

    async def write(kind: str) -> None:
        held = await recorder.acquire("i-1")
        try:
            await recorder.record(held, kind)
        finally:
            recorder.release(held)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, "engine_step")  # its load is slow
            await store.read.wait()
            nursery.start_soon(write, "scene_set")  # a dispatcher's change meanwhile
            await trio.sleep(0.05)
            store.gate.set()
    kinds = [e.kind for e in (await store.get("i-1")).timeline]
    assert sorted(kinds[-2:]) == ["engine_step", "scene_set"], kinds
    assert recorder.live == {}
