"""The index of call recordings and the legal holds on incidents, kept beside the incidents.

A recording's row is written with the timeline event that tells of it (``recording_indexed``,
``recording_purged``; a hold with ``legal_hold_set``/``legal_hold_released``) through the incident
``Recorder``, so the index and the incident's history never disagree. This module owns the two
tables: their schema, the statements the recorder attaches, the queries, and the pure rule of what
the purge removes (``expired``). A purged recording keeps its row (``purged_wall``): the index says
what existed and when it went; a file missing or altered is reported, never dropped from it.

An incident may have several recordings: its call (``<incident id>.WAV``, id = the incident id, as
every row before call-backs were recorded) and each call-back leg (``<incident id>-cb<leg>.WAV``,
id = the file's stem). ``owner`` tells a file's incident from its name alone: an incident id has
exactly two hyphens (``INCIDENT_ID``), so whatever follows a third one is the leg.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import msgspec

from gateway.incident.store import AsyncStore, Statement
from gateway.settings.recordings import MIN_KEEP_DAYS

SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    file TEXT NOT NULL,
    codec TEXT NOT NULL,
    start_wall REAL NOT NULL,
    duration_s REAL NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    indexed_wall REAL NOT NULL,
    purged_wall REAL
);
CREATE INDEX IF NOT EXISTS recordings_incident ON recordings(incident_id);
CREATE INDEX IF NOT EXISTS recordings_live ON recordings(purged_wall, start_wall);
CREATE TABLE IF NOT EXISTS legal_holds (
    incident_id TEXT PRIMARY KEY,
    wall REAL NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""
DAY_S = 86_400.0
INCIDENT_ID = re.compile(r"^\d{8}-\d{6}-[0-9A-Za-z.]{1,40}$")  # as the dialplan and the desk make them (one rule)
LEG = re.compile(r"^cb[0-9a-f]{1,32}$")  # a call-back leg: "cb" and the hex of its channel id
CALLBACK_CHANNEL = "callback-"  # the channel ids the gateway gives call-back legs: callback-<hex>
_COLUMNS = "id, incident_id, file, codec, start_wall, duration_s, size, sha256, indexed_wall, purged_wall"
_NAMES = tuple(_COLUMNS.split(", "))
PAGE = 2000  # recordings per read of the archive (``live_page``)
LOOKUP_CHUNK = 500  # ids per read when asking which the index lacks (``unknown``)


class Recording(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded call: ``file`` is its name in the recordings directory; ``start_wall`` when the
    recording began (Unix time), ``sha256`` of the whole file as indexed."""

    id: str
    incident_id: str
    file: str
    codec: str
    start_wall: float
    duration_s: float
    size: int
    sha256: str
    indexed_wall: float
    purged_wall: float | None = None

    @property
    def end_wall(self) -> float:
        return self.start_wall + self.duration_s


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """A legal hold: the incident's recordings are kept past ``keep_days`` until it is released."""

    incident_id: str
    wall: float
    actor: str
    reason: str


def expired(recordings: Iterable[Recording], held: set[str], now: float, keep_days: int) -> list[Recording]:
    """The recordings the purge removes: not purged yet, ended more than ``keep_days`` days before ``now``
    (never fewer than ``MIN_KEEP_DAYS``, whatever the caller says), and their incident not on hold."""
    cutoff = now - max(keep_days, MIN_KEEP_DAYS) * DAY_S
    return [r for r in recordings if r.purged_wall is None and r.end_wall < cutoff and r.incident_id not in held]


def owner(stem: str) -> str | None:
    """The incident a recording file (its name without the extension) belongs to: ``<incident id>`` or
    ``<incident id>-cb<leg>``; None for any other name (an orphan, never guessed at)."""
    parts = stem.split("-")
    incident_id, leg = "-".join(parts[:3]), "-".join(parts[3:])
    if not INCIDENT_ID.match(incident_id) or (len(parts) > 3 and not LEG.match(leg)):
        return None
    return incident_id


def leg_stem(incident_id: str, channel_id: str) -> str | None:
    """The file stem of a call-back leg's recording (``[ecgw-callback]`` names it so: the incident, "-cb",
    the hex of the leg's channel id ``callback-<hex>``); None for a channel that is no call-back leg."""
    leg = "cb" + channel_id.removeprefix(CALLBACK_CHANNEL)
    return f"{incident_id}-{leg}" if channel_id.startswith(CALLBACK_CHANNEL) and LEG.match(leg) else None


def insert(rec: Recording) -> Statement:
    """Index a recording (attach to its ``recording_indexed`` event); indexing the same file again is a no-op."""
    return (f"INSERT INTO recordings ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
            (rec.id, rec.incident_id, rec.file, rec.codec, rec.start_wall, rec.duration_s, rec.size, rec.sha256,
             rec.indexed_wall, rec.purged_wall))


def mark_purged(recording_id: str, wall: float) -> Statement:
    return ("UPDATE recordings SET purged_wall=? WHERE id=? AND purged_wall IS NULL", (wall, recording_id))


def set_hold(hold: Hold) -> Statement:
    return ("INSERT INTO legal_holds (incident_id, wall, actor, reason) VALUES (?,?,?,?) ON CONFLICT (incident_id)"
            " DO UPDATE SET wall=excluded.wall, actor=excluded.actor, reason=excluded.reason",
            (hold.incident_id, hold.wall, hold.actor, hold.reason))


def release_hold(incident_id: str) -> Statement:
    return ("DELETE FROM legal_holds WHERE incident_id=?", (incident_id,))


class RecordingIndex:
    """Reads of the two tables (writes go through the incident recorder with their events)."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        store.sync.apply_schema(SCHEMA)

    async def of_incident(self, incident_id: str) -> list[Recording]:
        return _rows(await self.store.read(f"SELECT {_COLUMNS} FROM recordings WHERE incident_id=? "
                                           "ORDER BY start_wall", (incident_id,)))

    async def get(self, recording_id: str) -> Recording | None:
        found = _rows(await self.store.read(f"SELECT {_COLUMNS} FROM recordings WHERE id=?", (recording_id,)))
        return found[0] if found else None

    async def live_page(self, after: tuple[float, str] | None = None) -> list[Recording]:
        """Recordings not purged, oldest first, the next ``PAGE`` after ``after`` (the last one's ``start_wall``
        and ``id``). The purge reads the archive a page at a time: each read holds the store's thread (which
        every incident write waits behind) for milliseconds, where the whole 90 days took a second at 300,000
        recordings, and the memory is a page's."""
        where, args = "", tuple[object, ...]()
        if after is not None:
            # ">=" first: it gives SQLite the index's range (with the OR alone it scanned from the first row:
            # 26 ms for a page near the end of 300,000, against 1.6 ms)
            where, args = " AND start_wall>=? AND (start_wall>? OR id>?)", (after[0], after[0], after[1])
        return _rows(await self.store.read(f"SELECT {_COLUMNS} FROM recordings WHERE purged_wall IS NULL{where}"
                                           " ORDER BY start_wall, id LIMIT ?", (*args, PAGE)))

    async def unknown(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` the index has no row of (purged ones are known), in their order, asked
        ``LOOKUP_CHUNK`` at a time for the same reason as ``live_page`` (and between the reads, Trio's other
        tasks run: the first sweep after a start asks about every file)."""
        missing: list[str] = []
        for at in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[at:at + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = await self.store.read(f"SELECT id FROM recordings WHERE id IN ({marks})", tuple(chunk))
            found = {i for (i,) in rows}
            missing += [i for i in chunk if i not in found]
        return missing

    async def hold(self, incident_id: str) -> Hold | None:
        rows = await self.store.read("SELECT incident_id, wall, actor, reason FROM legal_holds WHERE incident_id=?",
                                     (incident_id,))
        return _hold(rows[0]) if rows else None

    async def held(self) -> set[str]:
        return {str(i) for (i,) in await self.store.read("SELECT incident_id FROM legal_holds")}


def _rows(rows: list[tuple[object, ...]]) -> list[Recording]:
    return [msgspec.convert(dict(zip(_NAMES, row, strict=True)), Recording) for row in rows]


def _hold(row: tuple[object, ...]) -> Hold:
    return msgspec.convert(dict(zip(("incident_id", "wall", "actor", "reason"), row, strict=True)), Hold)
