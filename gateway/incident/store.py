"""Durable incident store. SQLite in WAL mode with full fsync by default.

``Store`` is the interface the service uses (a PostgreSQL backend implements the same methods).
``SqliteStore`` does blocking I/O; ``AsyncStore`` runs it on one thread of its own (``gateway.threads``)
so the Trio loop never waits on the disk and writes stay strictly ordered.

The ``seen`` table holds the replay keys of reports taken in (``gateway.protocols.replay``: a
Twilio MessageSid, an SMSC message id, a Telegram update, an alarm panel's event and time). A
key is written in the transaction of the event it caused (``seen_statements`` as that write's
extra statements), so a crash leaves both or neither; a report whose key is ``seen`` is a replay.
Keys are kept ``SEEN_RETENTION_S`` (every insert prunes older ones): longer than any provider
retries, and a replay older than that is a new report again.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from gateway.errors import NotFound, StoreError
from gateway.files import private_store
from gateway.geo import distance_m
from gateway.incident.records import Incident, IncidentSummary, Location, TimelineEvent, response_location
from gateway.incident.timeline_sql import Statement as Statement
from gateway.incident.timeline_sql import place_events, positions, put_events
from gateway.threads import Batches, Lane

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    created_wall REAL NOT NULL,
    updated_wall REAL NOT NULL,
    service TEXT NOT NULL,
    state TEXT NOT NULL,
    number TEXT NOT NULL,
    lat REAL,
    lon REAL,
    channel_id TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_number ON incidents(number, created_wall);
CREATE INDEX IF NOT EXISTS incidents_created ON incidents(created_wall);
CREATE INDEX IF NOT EXISTS incidents_channel ON incidents(channel_id);
CREATE INDEX IF NOT EXISTS incidents_place ON incidents(lat, created_wall);
CREATE TABLE IF NOT EXISTS timeline (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    seq INTEGER NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
CREATE TABLE IF NOT EXISTS directory (
    number TEXT PRIMARY KEY,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_wall ON seen(wall);
"""

MAX_LINKS = 10
KEYS_KEPT = 20_000  # incidents whose indexed columns are remembered (calls in progress, and then some)
SEEN_RETENTION_S = 7 * 24 * 3600.0
T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
_decode_incident = msgspec.json.Decoder(Incident).decode
_decode_event = msgspec.json.Decoder(TimelineEvent).decode
_decode_location = msgspec.json.Decoder(Location).decode


class Store(Protocol):
    """What the service needs from a store. Every write is durable when the call returns."""

    async def create(self, incident: Incident, extra: Sequence[Statement] = (), again: bool = False) -> None: ...
    async def update(self, incident: Incident, events: list[TimelineEvent],
                     extra: Sequence[Statement] = ()) -> None: ...
    async def get(self, incident_id: str) -> Incident: ...
    async def by_channel(self, channel_id: str) -> Incident | None: ...
    async def recent(self, limit: int = 100, since_wall: float = 0.0) -> list[IncidentSummary]: ...
    async def by_number(self, number: str, since_wall: float, limit: int = 20) -> list[IncidentSummary]: ...
    async def open_since(self, since_wall: float, limit: int) -> list[str]: ...
    async def directory_and_related(self, incident: Incident, window_s: float, radius_m: float,
                                    pick: Callable[[list[Location]], int | None]
                                    ) -> tuple[Location | None, list[tuple[str, str]]]: ...
    async def seen(self, key: str) -> bool: ...
    def seen_statements(self, key: str, wall: float) -> list[Statement]: ...
    async def mark_seen(self, key: str) -> None: ...


def summary(incident: Incident) -> IncidentSummary:
    place = response_location(incident)
    return IncidentSummary(id=incident.id, service=incident.service, state=incident.state,
                           created_wall=incident.created_wall, number=incident.caller.number,
                           category=incident.category, position=incident.position, status=incident.status,
                           source=incident.source, priority=incident.priority, answer_s=incident.answer_s,
                           language=incident.language, ivr_choice=incident.ivr_choice, silent=incident.silent,
                           location_source=place.source if place is not None else "")


def index_keys(incident: Incident) -> tuple[object, ...]:
    """The incident's indexed columns as a write sets them (service, number, place, channel)."""
    return (incident.service, incident.caller.number, *_best_coords(incident), incident.channel_id)


def _best_coords(incident: Incident) -> tuple[float | None, float | None]:
    loc = response_location(incident)
    return (loc.lat, loc.lon) if loc is not None else (None, None)


def connect(path: Path, synchronous: str, schema: str, what: str) -> sqlite3.Connection:
    """A WAL-mode connection in autocommit mode (transactions are explicit), schema applied.
    Raises StoreError naming ``what`` and the path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        private_store(path)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA cache_size=-32000")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    return db


class Queries:
    """The incident store's statements and queries: the same SQL on every backend (portable: ``?``
    placeholders, ``INSERT ... ON CONFLICT``). A backend supplies the connection: ``write`` (statements in
    one transaction, durable on return), ``_read``, ``apply_schema`` and ``close``. Blocking."""

    seen_retention_s: float = SEEN_RETENTION_S
    shared = False  # several nodes write it: an incident's events are placed so none overwrites another's

    def write(self, statements: list[Statement]) -> None:
        raise NotImplementedError

    def write_many(self, writes: list[list[Statement]]) -> None:
        """Several writes in one transaction (a group commit); a backend that keeps writes for later keeps
        them one by one."""
        self.write([st for statements in writes for st in statements])

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def apply_schema(self, schema: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _row_args(incident: Incident) -> tuple[object, ...]:
        lat, lon = _best_coords(incident)
        head = msgspec.structs.replace(incident, timeline=[])
        return (incident.updated_wall, incident.service, incident.state, incident.caller.number,
                lat, lon, incident.channel_id, _encode(head), incident.id)

    def create(self, incident: Incident) -> None:
        """Insert a new incident with its timeline so far, in one transaction."""
        self.write(self.create_statements(incident))

    def update(self, incident: Incident, events: list[TimelineEvent]) -> None:
        """Store the incident's new head and append ``events`` (already in ``incident.timeline``)."""
        self.write(self.update_statements(incident, events))

    def seen(self, key: str, now: float) -> bool:
        """Whether the report with replay key ``key`` was taken within the retention."""
        return bool(self._read("SELECT 1 FROM seen WHERE key=? AND wall>=?", (key, now - self.seen_retention_s)))

    def seen_statements(self, key: str, wall: float) -> list[Statement]:
        """Record ``key`` as taken at ``wall`` (write them with the event it caused) and forget keys
        past the retention."""
        return [("INSERT INTO seen (key, wall) VALUES (?,?) ON CONFLICT (key) DO NOTHING", (key, wall)),
                ("DELETE FROM seen WHERE wall<?", (wall - self.seen_retention_s,))]

    def create_statements(self, incident: Incident) -> list[Statement]:
        statements: list[Statement] = [(
            "INSERT INTO incidents (updated_wall, service, state, number, lat, lon, channel_id, doc, id, created_wall)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)", (*self._row_args(incident), incident.created_wall))]
        return statements + self._event_rows(incident.id, 0, incident.timeline)

    def create_again(self, incident_id: str, channel_id: str, fresh: list[Statement], whole: list[Statement]) -> None:
        """Write a new incident whose first write failed, perhaps only in saying so (a connection lost during
        PostgreSQL's COMMIT): ``fresh`` (its create statements) if that write is not there, else ``whole`` (its
        head and every event, completing it). Raises StoreError, also when the id is another call's (that
        incident is never overwritten)."""
        found = self._read("SELECT channel_id FROM incidents WHERE id=?", (incident_id,))
        if found and found[0][0] != channel_id:
            raise StoreError(f"incident id {incident_id} is already another call's (channel {found[0][0]})")
        self.write(whole if found else fresh)

    def update_statements(self, incident: Incident, events: list[TimelineEvent],
                          keys_as_stored: bool = False) -> list[Statement]:
        """The incident's new head and ``events``. ``keys_as_stored``: its indexed columns (``index_keys``) are
        as last written, so only the rest is set; SQLite then leaves the indexes alone (an UPDATE naming an
        indexed column rewrites that index's entry even when the value is the same: measured, 87 against
        13 µs of CPU per transaction)."""
        row = self._row_args(incident)
        head: Statement = (
            ("UPDATE incidents SET updated_wall=?, state=?, doc=? WHERE id=?", (row[0], row[2], row[7], row[8]))
            if keys_as_stored else
            ("UPDATE incidents SET updated_wall=?, service=?, state=?, number=?, lat=?, lon=?, channel_id=?, doc=?"
             " WHERE id=?", row))
        return [head, *self._events_at(incident.id, positions(incident, events), events)]

    def _event_rows(self, incident_id: str, first_seq: int, events: list[TimelineEvent]) -> list[Statement]:
        return self._events_at(incident_id, list(range(first_seq, first_seq + len(events))), events)

    def _events_at(self, incident_id: str, seqs: list[int], events: list[TimelineEvent]) -> list[Statement]:
        placed = list(zip(seqs, [_encode(e) for e in events], strict=True))
        return place_events(incident_id, placed) if self.shared else put_events(incident_id, placed)

    def get(self, incident_id: str) -> Incident:
        rows = self._read("SELECT doc FROM incidents WHERE id=?", (incident_id,))
        if not rows:
            raise NotFound(f"no incident {incident_id!r}")
        incident = _decode_incident(rows[0][0])  # type: ignore[arg-type]
        events = self._read("SELECT doc FROM timeline WHERE incident_id=? ORDER BY seq", (incident_id,))
        incident.timeline = [_decode_event(r[0]) for r in events]  # type: ignore[arg-type]
        return incident

    def by_channel(self, channel_id: str) -> Incident | None:
        rows = self._read("SELECT id FROM incidents WHERE channel_id=? ORDER BY created_wall DESC LIMIT 1",
                          (channel_id,))
        return self.get(str(rows[0][0])) if rows else None

    def recent(self, limit: int = 100, since_wall: float = 0.0) -> list[IncidentSummary]:
        rows = self._read("SELECT doc FROM incidents WHERE created_wall >= ? ORDER BY created_wall DESC LIMIT ?",
                          (since_wall, limit))
        return [summary(_decode_incident(doc)) for (doc,) in rows]  # type: ignore[arg-type]

    def by_number(self, number: str, since_wall: float, limit: int = 20) -> list[IncidentSummary]:
        """Incidents of one caller number since ``since_wall``, newest first."""
        rows = self._read("SELECT doc FROM incidents WHERE number=? AND created_wall>=? ORDER BY created_wall DESC"
                          " LIMIT ?", (number, since_wall, limit))
        return [summary(_decode_incident(doc)) for (doc,) in rows]  # type: ignore[arg-type]

    def open_since(self, since_wall: float, limit: int) -> list[str]:
        """Ids of incidents created since ``since_wall`` whose call is not closed, newest first."""
        rows = self._read("SELECT id FROM incidents WHERE created_wall>=? AND state<>'closed'"
                          " ORDER BY created_wall DESC LIMIT ?", (since_wall, limit))
        return [str(r[0]) for r in rows]

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM incidents")[0][0])  # type: ignore[call-overload]

    def related(self, incident: Incident, window_s: float, radius_m: float) -> list[tuple[str, str]]:
        """Earlier incidents within the window from the same number or near the same place.

        At most ``MAX_LINKS`` of each kind, newest first: a number calling a hundred times
        must not make every new call slower. The same-place candidates come from one bounded query of the
        box around the circle (at most ``MAX_LINKS * 3`` rows, ~78 % of a box's area is in its circle: a place
        many called from fills the links from its first few; measured, a third of the time of the latitude
        band alone with 100 rows).
        """
        since = incident.created_wall - window_s
        links: dict[str, str] = {}
        if incident.caller.number:
            for (other,) in self._read("SELECT id FROM incidents WHERE number=? AND created_wall>=? AND id<>?"
                                       " ORDER BY created_wall DESC LIMIT ?",
                                       (incident.caller.number, since, incident.id, MAX_LINKS)):
                links[str(other)] = "same_number"
        lat, lon = _best_coords(incident)
        if lat is not None and lon is not None:
            dlat = radius_m / 111_000 + 1e-6
            dlon = dlat / max(math.cos(math.radians(lat)), 1e-3)
            west, east = (lon - dlon, lon + dlon) if -180 < lon - dlon and lon + dlon < 180 else (-180.0, 180.0)
            for other, olat, olon in self._read("SELECT id, lat, lon FROM incidents WHERE lat BETWEEN ? AND ? AND"
                                                " lon BETWEEN ? AND ? AND created_wall>=? AND id<>? LIMIT ?",
                                                (lat - dlat, lat + dlat, west, east, since, incident.id,
                                                 MAX_LINKS * 3)):
                if len(links) >= 2 * MAX_LINKS:
                    break
                if distance_m(lat, lon, olat, olon) <= radius_m:  # type: ignore[arg-type]
                    links.setdefault(str(other), "same_address")
        return sorted(links.items())

    def directory_lookup(self, number: str) -> Location | None:
        rows = self._read("SELECT doc FROM directory WHERE number=?", (number,))
        return _decode_location(rows[0][0]) if rows else None  # type: ignore[arg-type]

    def directory_put(self, entries: list[tuple[str, Location]]) -> None:
        self.write([("INSERT INTO directory (number, doc) VALUES (?,?)"
                     " ON CONFLICT (number) DO UPDATE SET doc=excluded.doc", (n, _encode(loc))) for n, loc in entries])


class SqliteStore(Queries):
    """The incident store in a SQLite file (WAL, full fsync by default). One connection, guarded by a lock."""

    def __init__(self, path: str | Path, synchronous: str = "FULL", seen_retention_s: float = SEEN_RETENTION_S) -> None:
        self.path = Path(path)
        self.seen_retention_s = seen_retention_s
        self._db = connect(self.path, synchronous, SCHEMA, "store")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def apply_schema(self, schema: str) -> None:
        """Create another feature's tables in this database, so its rows can be written in the same
        transaction as an incident's events (a scenario run's progress with the event recording it)."""
        with self._lock:
            try:
                self._db.executescript(schema)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot apply a schema to {self.path}: {exc}") from exc

    def write(self, statements: list[Statement]) -> None:
        """Run statements in one transaction; durable on return."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"store write failed: {exc}") from exc

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"store read failed: {exc}") from exc


class AsyncStore:
    """The Store interface for Trio code, over a SqliteStore on one worker thread.

    Writes are group-committed (``threads.Batches``): every write asked while a transaction runs
    goes into the next one (one fsync), so the disk's sync rate bounds transactions, not calls. A
    write returns only once it is durable. Rows are encoded in the caller's task, so later changes
    to the incident cannot race with the writer thread.
    """

    def __init__(self, store: Queries, commit_window_s: float = 0.0) -> None:
        """``commit_window_s``: how long a write may wait for others to share its transaction while writers
        meet (``threads.Batches``); a new incident never waits."""
        self.sync = store
        self._lane = Lane("store")  # one thread, in order: reads see every write asked before them
        self._keys: dict[str, tuple[object, ...]] = {}  # incident id -> its indexed columns as stored
        self._writes = Batches[list[Statement]](self._lane, self._commit, commit_window_s)

    def _commit(self, writes: list[list[Statement]]) -> list[BaseException | None]:
        """On the store's thread: the writes in one transaction; if that fails, one by one, so a single bad
        write does not fail its neighbours."""
        try:
            self.sync.write_many(writes)
            return [None] * len(writes)
        except StoreError as exc:
            if len(writes) == 1:
                return [exc]
        return [self._one(statements) for statements in writes]

    def _one(self, statements: list[Statement]) -> StoreError | None:
        try:
            self.sync.write(statements)
        except StoreError as exc:
            return exc
        return None

    async def _write(self, statements: list[Statement], urgent: bool = False) -> None:
        await self._writes.put(statements, urgent)

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await self._lane.run(fn, *args)

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)``, a blocking function of the store's, on its thread: in order with its writes."""
        return await self._lane.run(fn, *args)

    async def create(self, incident: Incident, extra: Sequence[Statement] = (), again: bool = False) -> None:
        """Write a new incident and ``extra`` statements (e.g. its report's replay key) atomically.
        ``again``: an earlier create of it failed (``Queries.create_again``)."""
        keys = index_keys(incident)
        if again:  # statements made here, in Trio's thread: the incident may change meanwhile
            fresh = [*self.sync.create_statements(incident), *extra]
            whole = [*self.sync.update_statements(incident, list(incident.timeline)), *extra]
            await self._run(self.sync.create_again, incident.id, incident.channel_id, fresh, whole)
        else:
            await self._write([*self.sync.create_statements(incident), *extra], urgent=True)  # a call's first record
        self._stored_keys(incident, keys)

    async def update(self, incident: Incident, events: list[TimelineEvent],
                     extra: Sequence[Statement] = ()) -> None:
        """Write the incident's changes and ``extra`` statements (e.g. a scenario's progress) atomically."""
        keys = index_keys(incident)
        await self._write([*self.sync.update_statements(incident, events, self._keys.get(incident.id) == keys),
                           *extra])
        self._stored_keys(incident, keys)

    def _stored_keys(self, incident: Incident, keys: tuple[object, ...]) -> None:
        """Remember an incident's indexed columns once durable (a failed write leaves the next one wide), while
        its call lasts: an update after that sets them all again."""
        if incident.state == "closed" or len(self._keys) >= KEYS_KEPT:
            self._keys.pop(incident.id, None)
            return
        self._keys[incident.id] = keys

    async def write(self, statements: list[Statement]) -> None:
        await self._write(statements)

    async def read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return await self._run(self.sync._read, sql, args)  # type: ignore[no-any-return]

    async def get(self, incident_id: str) -> Incident:
        return await self._run(self.sync.get, incident_id)  # type: ignore[no-any-return]

    async def by_channel(self, channel_id: str) -> Incident | None:
        return await self._run(self.sync.by_channel, channel_id)  # type: ignore[no-any-return]

    async def recent(self, limit: int = 100, since_wall: float = 0.0) -> list[IncidentSummary]:
        return await self._run(self.sync.recent, limit, since_wall)  # type: ignore[no-any-return]

    async def by_number(self, number: str, since_wall: float, limit: int = 20) -> list[IncidentSummary]:
        return await self._run(self.sync.by_number, number, since_wall, limit)  # type: ignore[no-any-return]

    async def open_since(self, since_wall: float, limit: int) -> list[str]:
        return await self._run(self.sync.open_since, since_wall, limit)  # type: ignore[no-any-return]

    async def directory_and_related(self, incident: Incident, window_s: float, radius_m: float,
                                    pick: Callable[[list[Location]], int | None]
                                    ) -> tuple[Location | None, list[tuple[str, str]]]:
        """A new call's caller in the directory, and the incidents related to it counting that entry as
        one more candidate (``pick`` chooses the best), in one trip to the store's thread instead of two."""
        def both() -> tuple[Location | None, list[tuple[str, str]]]:
            entry = self.sync.directory_lookup(incident.caller.number) if incident.caller.number else None
            seen = incident
            if entry is not None:  # a copy: the live incident changes only in Trio's thread
                candidates = [*incident.locations, entry]
                seen = msgspec.structs.replace(incident, locations=candidates, best_location=pick(candidates))
            return entry, self.sync.related(seen, window_s, radius_m)

        return await self._run(both)  # type: ignore[no-any-return]

    async def seen(self, key: str) -> bool:
        """Whether a report with this replay key was already taken (see the module docstring)."""
        return await self._run(self.sync.seen, key, time.time())  # type: ignore[no-any-return]

    def seen_statements(self, key: str, wall: float) -> list[Statement]:
        return self.sync.seen_statements(key, wall)

    async def mark_seen(self, key: str) -> None:
        """Record a replay key on its own, for a report whose effect is written elsewhere."""
        await self._write(self.seen_statements(key, time.time()))


def event(kind: str, actor: str = "gateway", **data: str | int | float | bool | None) -> TimelineEvent:
    """A timeline event stamped now (wall and monotonic)."""
    return TimelineEvent(kind=kind, wall=time.time(), mono=time.monotonic(), actor=actor, data=data)
