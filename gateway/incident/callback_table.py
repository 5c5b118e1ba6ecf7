"""The call-back list's table, kept beside the incidents (``incident.callback_list`` says what it means).

A row is written with the timeline event that tells of it, through the incident ``Recorder``: the
``hung_up`` of an unanswered call adds its row, a call-back's ``callback_outcome`` counts the attempt
and, once the caller was reached, clears the number's rows; a ``callback_reached`` (the caller called
again and was answered) clears its incident's row. So the list and the incidents' histories
never disagree, and a restart loses nothing: the list is read from this table every time.
"""

from __future__ import annotations

import msgspec
import trio

from gateway.incident.callback_list import Abandoned, Entry, Outcome, entries
from gateway.incident.records import Incident
from gateway.incident.store import AsyncStore, Statement

SCHEMA = """
CREATE TABLE IF NOT EXISTS callbacks (
    incident_id TEXT PRIMARY KEY,
    number TEXT NOT NULL,
    service TEXT NOT NULL,
    category TEXT NOT NULL,
    priority INTEGER NOT NULL,
    wall REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT '',
    cleared_wall REAL
);
CREATE INDEX IF NOT EXISTS callbacks_open ON callbacks(cleared_wall, wall);
CREATE INDEX IF NOT EXISTS callbacks_number ON callbacks(number, cleared_wall);
"""
_COLUMNS = ("incident_id", "number", "service", "category", "priority", "wall", "attempts", "outcome")
# A page of the open rows after the last one read (its wall and incident id): from the index's range, ties kept
_OPEN_PAGE = (f"SELECT {', '.join(_COLUMNS)} FROM callbacks WHERE cleared_wall IS NULL AND wall>=?"
              " AND (wall>? OR incident_id>?) ORDER BY wall, incident_id LIMIT ?")
PAGE = 2000


def abandoned(incident: Incident, wall: float) -> Statement:
    """The row of an incident whose call ended unanswered (write it with its ``hung_up`` event). A caller
    reached by a call-back who hangs up again before a dispatcher answers is listed again (attempts kept)."""
    return ("INSERT INTO callbacks (incident_id, number, service, category, priority, wall)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT(incident_id) DO UPDATE SET cleared_wall=NULL, wall=excluded.wall",
            (incident.id, incident.caller.number, incident.service, incident.category, incident.priority, wall))


def attempted(incident_ids: list[str], outcome: Outcome, wall: float, cleared: bool) -> list[Statement]:
    """Count a call-back attempt on the rows of ``incident_ids``; ``cleared``: the caller was reached."""
    marks = ",".join("?" * len(incident_ids))
    return [(f"UPDATE callbacks SET attempts=attempts+1, outcome=?, cleared_wall=? WHERE incident_id IN ({marks})",
             (outcome, wall if cleared else None, *incident_ids))]


def reached_again(incident_id: str, wall: float) -> Statement:
    """Clear the row of ``incident_id``: its caller called again and was answered (with ``callback_reached``)."""
    return ("UPDATE callbacks SET outcome='called_again', cleared_wall=? WHERE incident_id=? AND cleared_wall IS NULL",
            (wall, incident_id))


class CallbackTable:
    """Reads of the table (writes go through the incident recorder with their events)."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        store.sync.apply_schema(SCHEMA)

    async def open_rows(self, since_wall: float) -> list[Abandoned]:
        """Rows not cleared, abandoned since ``since_wall``, oldest first."""
        return _rows(await self._open(since_wall))

    async def open_entries(self, since_wall: float) -> list[Entry]:
        """``callback_list.entries`` of ``open_rows``, merged on a worker thread, not Trio's (in a surge the rows
        are many: 20,000 took ~90 ms of CPU to read and merge)."""
        return await trio.to_thread.run_sync(_entries, await self._open(since_wall), abandon_on_cancel=True)

    async def _open(self, since_wall: float) -> list[tuple[object, ...]]:
        """The open rows as read, ``PAGE`` at a time: the store's thread, which every incident write waits
        behind, is held milliseconds at a time."""
        rows: list[tuple[object, ...]] = []
        wall, incident_id = since_wall, ""  # the last row read (every id sorts after "")
        while len(page := await self.store.read(_OPEN_PAGE, (wall, wall, incident_id, PAGE))) == PAGE:
            rows += page
            incident_id, wall = str(page[-1][0]), float(page[-1][5])  # type: ignore[arg-type]
        return rows + page

    async def open_rows_of(self, number: str) -> list[Abandoned]:
        """The rows of one number not cleared, oldest first."""
        return _rows(await self.store.read(f"SELECT {', '.join(_COLUMNS)} FROM callbacks WHERE number=?"
                                           " AND cleared_wall IS NULL ORDER BY wall", (number,)))


def _entries(rows: list[tuple[object, ...]]) -> list[Entry]:
    return entries(_rows(rows))


def _rows(rows: list[tuple[object, ...]]) -> list[Abandoned]:
    return [msgspec.convert(dict(zip(_COLUMNS, row, strict=True)), Abandoned) for row in rows]
