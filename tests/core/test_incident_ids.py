"""Incident ids: unique by construction, sortable by creation; a burst of reports loses none."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.incident.bus import Bus
from gateway.incident.desk import Desk, no_caller
from gateway.incident.recorder import Recorder
from gateway.incident.records import IncidentIds
from gateway.incident.store import AsyncStore, SqliteStore

BURST = 5000


def test_ids_of_one_second_are_distinct_and_in_creation_order() -> None:
    ids = IncidentIds(node="n1")
    made = [ids(1_764_800_000.0) for _ in range(BURST)]
    assert len(set(made)) == BURST and made == sorted(made)
    assert made[0] == "20251203-221320-n1.00000001"
    assert IncidentIds()(1_764_800_000.0) != IncidentIds()(1_764_800_000.0)  # two processes, two nodes


async def test_a_burst_of_reports_from_every_source_is_stored_whole(tmp_path: Path) -> None:
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    desk = Desk(store, Recorder(store, Bus()))
    opened: list[str] = []

    async def report(n: int) -> None:
        source = ("api", "alarm", "sms")[n % 3]
        incident = await desk.open(service="112", source=source, caller=no_caller(f"r{n}"),  # type: ignore[arg-type]
                                   kind="reported", actor="test", reporter=f"{source}:{n}")
        opened.append(incident.id)

    try:
        with trio.fail_after(120):
            async with trio.open_nursery() as burst:
                for n in range(BURST):
                    burst.start_soon(report, n)
        assert len(opened) == len(set(opened)) == BURST
        assert store.sync.count() == BURST
    finally:
        store.sync.close()
