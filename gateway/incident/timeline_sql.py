"""The statements writing an incident's timeline (pure): where each event goes, and how it is put there on a
store one node writes (``put_events``) or several (``place_events``). Portable SQL, ``?`` placeholders."""

from __future__ import annotations

import functools

from gateway.incident.records import Incident, TimelineEvent

Statement = tuple[str, tuple[object, ...]]  # "?" placeholders; portable SQL (SQLite and PostgreSQL), no literal "?"
PUT_EVENT = ("INSERT INTO timeline (incident_id, seq, doc) VALUES (?,?,?)"
             " ON CONFLICT (incident_id, seq) DO UPDATE SET doc=excluded.doc")
# Events in one statement at most (three parameters each: well under SQLite's and PostgreSQL's limits).
EVENTS_PER_STATEMENT = 100
# A store several nodes write (PostgreSQL): each places an incident's events from its own copy, so two nodes
# may give one place to two events (a call's on one node, a dispatcher's on the other). An event goes to its
# place unless another holds it; then after the last one (the head's UPDATE, first in the transaction, holds
# the incident's row lock, so the last is stable). An event is never overwritten, and one written already
# (a replay) is not written again.
PLACE_EVENT = "INSERT INTO timeline (incident_id, seq, doc) VALUES (?,?,?) ON CONFLICT (incident_id, seq) DO NOTHING"
APPEND_DISPLACED = ("INSERT INTO timeline (incident_id, seq, doc) SELECT ?, (SELECT COALESCE(MAX(seq), -1) + 1"
                    " FROM timeline WHERE incident_id=?), ? WHERE NOT EXISTS (SELECT 1 FROM timeline"
                    " WHERE incident_id=? AND doc=?)")


def positions(incident: Incident, events: list[TimelineEvent]) -> list[int]:
    """Each event's place on the incident's timeline, found by identity from the end (events are
    recent), so an event whose first write failed is written at its own place later; an event not
    on the timeline is taken to be at the end."""
    timeline, found = incident.timeline, []
    for n, item in enumerate(events):
        at = next((i for i in range(len(timeline) - 1, -1, -1) if timeline[i] is item), None)
        found.append(at if at is not None else len(timeline) - len(events) + n)
    return found


def place_events(incident_id: str, placed: list[tuple[int, bytes]]) -> list[Statement]:
    """An incident's events, (place, doc) each, into a timeline several nodes write (``PLACE_EVENT``)."""
    return [st for seq, doc in placed for st in ((PLACE_EVENT, (incident_id, seq, doc)),
                                                 (APPEND_DISPLACED, (incident_id, incident_id, doc, incident_id, doc)))]


def put_events(incident_id: str, placed: list[tuple[int, bytes]]) -> list[Statement]:
    """``PUT_EVENT`` for an incident's events, (place, doc) each, in one statement per ``EVENTS_PER_STATEMENT``.
    Why: each statement is a trip through sqlite3's Python layer and out of the store thread's GIL and back.
    The same place twice (an event written again) keeps a statement each: PostgreSQL refuses one upsert
    touching a row twice."""
    if len({seq for seq, _ in placed}) < len(placed):
        return [(PUT_EVENT, (incident_id, seq, doc)) for seq, doc in placed]
    return [(_put_events_sql(len(chunk)), tuple(v for seq, doc in chunk for v in (incident_id, seq, doc)))
            for chunk in (placed[i:i + EVENTS_PER_STATEMENT] for i in range(0, len(placed), EVENTS_PER_STATEMENT))]


@functools.cache
def _put_events_sql(rows: int) -> str:
    return PUT_EVENT.replace("VALUES (?,?,?)", "VALUES " + ",".join(["(?,?,?)"] * rows))
