"""The gateway's incidents as a drill reads them: straight from its store (read only; SQLite or PostgreSQL,
as ``[store]`` says), and whether their scenario runs have settled."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.errors import StoreError
from gateway.incident.records import Incident
from gateway.settings.config import StoreConfig
from gateway.stores import open_incident_store
from sim import report


def settled(incidents: list[Incident]) -> bool:
    """Every incident has a scenario run and none is still running."""
    return all(any(e.kind in report.RUN_STARTS for e in inc.timeline) and not report.unfinished_runs(inc)
               for inc in incidents)


async def wait_settled(store: StoreConfig, since_wall: float, max_wait_s: float, notes: list[str]) -> None:
    """Until every incident since ``since_wall`` has run its scenarios to the end, at most ``max_wait_s``."""
    with trio.move_on_after(max_wait_s) as scope:
        while True:
            found = await trio.to_thread.run_sync(read_incidents, store, since_wall - 1.0, 10_000, [])
            if settled(found):
                return
            await trio.sleep(0.5)
    if scope.cancelled_caught:
        notes.append(f"scenario runs still going after {max_wait_s:g} s: the report shows them as unfinished")


def read_incidents(store: StoreConfig, since_wall: float, limit: int, notes: list[str]) -> list[Incident]:
    """Incidents created since ``since_wall`` in the gateway's store (read only)."""
    if store.backend == "sqlite" and not Path(store.path).exists():
        notes.append(f"store {store.path} does not exist: is the gateway running with this config?")
        return []
    try:
        opened = open_incident_store(store)
        try:
            return [opened.get(s.id) for s in opened.recent(limit, since_wall)]
        finally:
            opened.close()
    except StoreError as exc:
        notes.append(f"cannot read incidents: {exc}")
        return []
