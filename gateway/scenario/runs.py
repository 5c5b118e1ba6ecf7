"""Where scenario runs are kept: one row per run (``machine.Run`` as JSON), beside the incidents.

A run's progress must be durable in the same transaction as the timeline event that records it
(a crash between the two would resume a step twice or lose it), so the table lives in the incident
store's database and a run's row goes to the writer as a statement attached to that event. This
module owns the table: its schema, its rows and its queries; the incident store only runs them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import msgspec

from gateway.incident.store import AsyncStore, Statement
from gateway.scenario.machine import Run

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS escalation_runs (
    key TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    done INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS escalation_runs_open ON escalation_runs(done);
CREATE INDEX IF NOT EXISTS escalation_runs_incident ON escalation_runs(incident_id);
"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Run).decode
CHUNK = 500  # ids per IN (...) query: SQLite's limit on bound parameters is far above


class RunStore:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        store.sync.apply_schema(SCHEMA)

    @staticmethod
    def row(run: Run) -> Statement:
        """The statement that stores ``run`` as it is now (attach it to the event that records it)."""
        return ("INSERT INTO escalation_runs (key, incident_id, done, doc) VALUES (?,?,?,?) ON CONFLICT (key)"
                " DO UPDATE SET incident_id=excluded.incident_id, done=excluded.done, doc=excluded.doc",
                (run.key, run.incident_id, int(run.phase == "done"), _encode(run)))

    async def write(self, run: Run, fence: Sequence[Statement] = ()) -> None:
        """Store a run on its own (one whose incident is gone, so no event can carry it), after ``fence``
        (``scenario.leases``: the write fails unless this node still holds the run's lease)."""
        await self.store.write([*fence, self.row(run)])

    async def claimable(self, now_wall: float, own: str = "") -> dict[str, str]:
        """Unfinished runs whose lease (``scenario.leases``) is free or expired, or held by ``own``: key → the
        node that held it last ("" for none)."""
        rows = await self.store.read(
            "SELECT r.key, COALESCE(l.owner, '') FROM escalation_runs r LEFT JOIN scenario_leases l ON l.key = r.key"
            " WHERE r.done=0 AND (l.key IS NULL OR l.expires_wall<? OR l.owner=?) ORDER BY r.key",
            (now_wall, own))
        return {str(key): str(owner) for key, owner in rows}

    async def unfinished(self) -> list[Run]:
        """Every run not done; a row that no longer decodes is logged and skipped."""
        runs = []
        for (doc,) in await self.store.read("SELECT doc FROM escalation_runs WHERE done=0"):
            try:
                runs.append(_decode(doc))  # type: ignore[arg-type]
            except msgspec.ValidationError as exc:
                log.error("escalation: unreadable stored run skipped: %s", exc)
        return runs

    async def get(self, key: str) -> Run | None:
        rows = await self.store.read("SELECT doc FROM escalation_runs WHERE key=?", (key,))
        return _decode(rows[0][0]) if rows else None  # type: ignore[arg-type]

    async def of_incident(self, incident_id: str) -> list[Run]:
        """Every run of an incident, finished or not, as last written."""
        rows = await self.store.read("SELECT doc FROM escalation_runs WHERE incident_id=? ORDER BY key",
                                     (incident_id,))
        return [_decode(doc) for (doc,) in rows]  # type: ignore[arg-type]

    async def incidents_with_runs(self, incident_ids: Iterable[str]) -> set[str]:
        """Those of ``incident_ids`` that have had any run."""
        ids, found = list(incident_ids), set[str]()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = await self.store.read("SELECT DISTINCT incident_id FROM escalation_runs"
                                         f" WHERE incident_id IN ({marks})",
                                         tuple(chunk))
            found.update(str(r[0]) for r in rows)
        return found
