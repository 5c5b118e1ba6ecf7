"""The units board: where every response unit is and what it is doing (its routes: ``web.units``).

Theory of operation: unit state lives in its own SQLite file (WAL, full fsync). A change is one
transaction holding the unit's new row, its audit entry and, when an incident must hear of it, a
*note* (an outbox row). Notes are then delivered to the incident desk in order (a timeline event,
the incident's unit list, its response status moved forward) and deleted. If the incident store is
slow or down, the unit change still stands and its notes wait; ``run`` retries them, so a restart
between the two writes loses nothing. All changes go through one lock: a unit is given to one
incident at a time.

On PostgreSQL (``[store] backend``; tables from migration 6) two nodes share the board. A unit's row is
its whole document, so every write is a compare-and-swap on the body it replaces (``UPDATE ... WHERE
body = <the one read>``): a change computed from a unit the other node has changed since writes nothing,
the unit is read again and the change is decided anew (its rules checked on the fresh state), so
neither node's update is lost. Before a change the unit is read from the database; every ``RETRY_S`` the
whole board is, for the lists. A note carries its own replay key (the incident store's ``seen``): one the
other node (or this one, before a restart) delivered already is not recorded again. (Two nodes delivering
one note at the very same moment could both record it; a node starting holds the notes waiting then. The
notes of a node that died wait for a node to start.)
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import trio

from gateway.errors import NotFound, StoreError
from gateway.incident.desk import STATUS_ORDER, Desk, DeskError
from gateway.incident.records import ResponseStatus
from gateway.incident.sqldb import Db, Execute, SqliteDb
from gateway.settings import UnitsConfig, project_path
from gateway.units.model import (
    TRANSITIONS,
    IllegalTransition,
    NoLocation,
    Proposal,
    Roster,
    Unit,
    UnitChange,
    UnitInputError,
    check_change,
    check_position,
    incident_point,
    load_roster,
    moved,
    propose,
    refreshed,
    seed,
)

log = logging.getLogger(__name__)
RETRY_S = 5.0  # how often waiting notes are offered to the incident desk again
MAX_REASON = 500
STALE_RETRIES = 10  # a unit another node keeps changing under us: decide again this many times...
STALE_BACKOFF_S = 0.01  # ...after a random pause of up to this times the attempts so far (so one node gives way)
_json = msgspec.json.Encoder()

SCHEMA = """
CREATE TABLE IF NOT EXISTS units (id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS unit_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, unit TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS unit_log_by_unit ON unit_log (unit, seq);
CREATE TABLE IF NOT EXISTS unit_notes (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL);
"""


class Proposals(msgspec.Struct, frozen=True, kw_only=True):
    incident: str
    kind: str
    lat: float
    lon: float
    units: list[Proposal]


class Note(msgspec.Struct, frozen=True, kw_only=True):
    """What an incident must hear of a unit change: an event, the unit joining or leaving its unit
    list, and the response status to move forward to ("" for none)."""

    incident: str
    kind: str
    actor: str
    unit: str
    join: bool | None = None  # True: add to incident.units, False: remove, None: leave
    status: str = ""
    data: dict[str, str | float | bool] = {}
    id: str = msgspec.field(default_factory=lambda: secrets.token_hex(8))  # its replay key: delivered once


class _Stale(Exception):
    """Another node changed the unit since it was read: nothing was written."""

    def __init__(self, unit_id: str) -> None:
        super().__init__(unit_id)
        self.unit_id = unit_id


class UnitBoard:
    """Owns the units store and the live copy of every unit.

    ``db``: a SQLite file (its tables made here) or a ``Db`` (``gateway.stores.open_units_db``), owned
    and closed by ``close``. ``__init__`` reads the roster and the store (ConfigError, StoreError).
    """

    def __init__(self, cfg: UnitsConfig, desk: Desk, db: str | Path | Db) -> None:
        self.cfg = cfg
        self.desk = desk
        roster = load_roster(project_path(cfg.roster_file))
        self.kinds = roster.kinds
        self._db = db if isinstance(db, Db) else SqliteDb(db, SCHEMA, "units store")
        self._lock = trio.Lock()
        self._bodies: dict[str, bytes] = {}  # unit id -> its row's body as last read or written here
        self._units = self._open(roster)
        self._notes: list[tuple[int, Note]] = [
            (int(seq), msgspec.json.decode(body, type=Note))
            for seq, body in self._db.rows("SELECT seq, body FROM unit_notes ORDER BY seq")]

    def close(self) -> None:
        self._db.close()

    # -- reading ---------------------------------------------------------------------------------

    def units(self, kind: str = "", status: str = "") -> list[Unit]:
        """Units in roster order, optionally of one kind and/or status."""
        return [u for u in self._units.values() if (not kind or u.kind == kind) and (not status or u.status == status)]

    def get(self, unit_id: str) -> Unit:
        """One unit; raises NotFound."""
        try:
            return self._units[unit_id]
        except KeyError:
            raise NotFound(f"no unit {unit_id!r}") from None

    async def history(self, unit_id: str, limit: int = 50) -> list[UnitChange]:
        """The unit's latest status changes, newest first; raises NotFound."""
        self.get(unit_id)
        return await trio.to_thread.run_sync(self._history, unit_id, limit)

    def pending(self) -> int:
        """Notes not yet delivered to the incident desk."""
        return len(self._notes)

    # -- changing --------------------------------------------------------------------------------

    async def update(self, unit_id: str, *, status: str | None = None, lat: float | None = None,
                     lon: float | None = None, actor: str, reason: str = "", force: bool = False) -> Unit:
        """Report a unit's status and/or position. Raises NotFound, UnitInputError, IllegalTransition
        (``force`` with a ``reason`` lets a dispatcher make any move except into an active status
        without an incident), StoreError when the change could not be made durable."""
        check_position(lat, lon)
        if len(reason) > MAX_REASON:
            raise UnitInputError(f"reason: at most {MAX_REASON} characters, got {len(reason)}")
        if status is None and lat is None:
            raise UnitInputError("nothing to change: give a status, a position (lat and lon) or both")
        async with self._lock:
            return await self._decided(unit_id, lambda unit: self._change(unit, status, lat, lon, actor, reason,
                                                                          force))

    async def assign(self, incident_id: str, unit_id: str, *, actor: str) -> Unit:
        """Give a free unit to an incident; the incident hears of it (event, unit list, status
        "assigned" if it was new). Raises NotFound (unit or incident), IllegalTransition."""
        async with self._lock:
            return await self._decided(unit_id, lambda unit: self._assign(incident_id, unit, actor))

    async def propose(self, incident_id: str, kind: str = "", limit: int = 3) -> Proposals:
        """The nearest free units (of ``kind``, "" for any) to the incident's best location.
        Raises UnitInputError (kind, limit), NotFound, NoLocation."""
        if kind and kind not in self.kinds:
            raise UnitInputError(f"unknown unit kind {kind!r}: expected one of {', '.join(self.kinds)}")
        lat, lon = incident_point(await self.desk.get(incident_id))
        offers = propose(self._units.values(), kind, lat, lon, limit, now=time.time(),
                         stale_after_s=self.cfg.stale_after_s, speed_kmh=self.cfg.speed_kmh)
        return Proposals(incident=incident_id, kind=kind, lat=lat, lon=lon, units=offers)

    async def nearest_for(self, incident_id: str, kind: str) -> tuple[str, str, list[str]] | None:
        """(unit id, callsign, members) of the free unit of ``kind`` a scenario should call for this
        incident: the first proposal, or, when the incident has no coordinates yet, the first free unit
        of the kind in id order (calling someone beats calling nobody). None when none is free.
        Raises NotFound for an unknown incident."""
        if kind not in self.kinds:
            log.error("incident %s: a scenario asks for unit kind %r, which the roster does not define",
                      incident_id, kind)
            return None
        try:
            offers = (await self.propose(incident_id, kind, 1)).units
            chosen = self.get(offers[0].unit) if offers else None
        except NoLocation:
            free = sorted(self.units(kind, "free"), key=lambda u: u.id)
            chosen = free[0] if free else None
            log.warning("incident %s has no coordinates: %s unit chosen by id (%s)", incident_id, kind,
                        chosen.id if chosen else "none free")
        return (chosen.id, chosen.name, list(chosen.members)) if chosen else None

    async def on_member_ack(self, person: str, incident_id: str) -> bool:
        """A unit member acknowledged the dispatch for ``incident_id`` (DTMF, SMS, Telegram): their
        unit is en route. A unit already assigned to the incident moves on; a free unit of theirs (it
        was called by a scenario, not yet assigned) is assigned by that acknowledgement first. A member
        whose units are busy elsewhere changes nothing (logged). True when a unit of theirs is on the
        incident afterwards. Raises StoreError, NotFound."""
        async with self._lock:
            fresh = self._db.shared
            for attempt in range(STALE_RETRIES):
                if fresh:
                    await trio.to_thread.run_sync(self._reload)
                try:
                    return await self._member_ack(person, incident_id)
                except _Stale:
                    fresh = True
                    await trio.sleep(random.uniform(0, STALE_BACKOFF_S * (attempt + 1)))
            raise StoreError(f"acknowledgement by {person}: their unit changed on another node {STALE_RETRIES}"
                             " times while deciding; try again")

    async def _member_ack(self, person: str, incident_id: str) -> bool:
        mine = [u for u in self._units.values() if person in u.members]
        unit = next((u for u in mine if u.incident == incident_id), None)
        if unit is None:
            unit = next((u for u in mine if u.status == "free"), None)
            if unit is None:
                log.warning("acknowledgement by %s for %s: no unit of theirs is free or on it (%s)", person,
                            incident_id, ", ".join(f"{u.id} {u.status}" for u in mine) or "in no unit")
                return False
            unit = await self._assign(incident_id, unit, person)
        if unit.status == "assigned":  # else already moving or there: a late or repeated acknowledgement
            await self._change(unit, "en_route", None, None, person, "acknowledged the dispatch", False)
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver notes left from before a restart, then keep retrying any the desk could not take."""
        async with self._lock:
            await self._deliver()
        task_status.started()
        while True:
            await trio.sleep(RETRY_S)
            if self._notes or self._db.shared:
                async with self._lock:
                    if self._db.shared:  # the other nodes' changes, for the lists
                        await trio.to_thread.run_sync(self._reload)
                    await self._deliver()

    async def _decided(self, unit_id: str, decide: Callable[[Unit], Awaitable[Unit]]) -> Unit:
        """``decide`` on the unit as stored; again on the fresh one while another node changed it first."""
        self.get(unit_id)
        fresh = self._db.shared
        for attempt in range(STALE_RETRIES):
            if fresh:
                await trio.to_thread.run_sync(self._reload, unit_id)
            try:
                return await decide(self.get(unit_id))
            except _Stale:
                fresh = True
                await trio.sleep(random.uniform(0, STALE_BACKOFF_S * (attempt + 1)))
        raise StoreError(f"unit {unit_id} changed on another node {STALE_RETRIES} times while deciding; try again")

    # -- inside the lock -------------------------------------------------------------------------

    async def _assign(self, incident_id: str, unit: Unit, actor: str) -> Unit:
        incident = await self.desk.get(incident_id)
        if incident.status == "closed":
            raise IllegalTransition(f"incident {incident_id} is closed")
        if unit.status != "free":
            busy = f" for incident {unit.incident}" if unit.incident else ""
            raise IllegalTransition(f"unit {unit.id} is {unit.status}{busy}: only a free unit can be assigned")
        new = moved(unit, status="assigned", lat=None, lon=None, incident=incident_id, now=time.time())
        note = Note(incident=incident_id, kind="unit_assigned", actor=actor, unit=unit.id, join=True,
                    status="assigned", data={"unit_kind": unit.kind, "name": unit.name})
        await self._commit(unit, new, actor, "", False, note)
        return new

    async def _change(self, unit: Unit, status: str | None, lat: float | None, lon: float | None,
                      actor: str, reason: str, force: bool) -> Unit:
        forced = False
        if status is not None:
            check_change(unit, status, force=force, reason=reason)
            forced = status != unit.status and status not in TRANSITIONS[unit.status]
            if status == unit.status:
                status = None
        if status is None and lat is None:
            return unit  # the unit already is where and how it says
        new = moved(unit, status=status, lat=lat, lon=lon, incident=None, now=time.time())
        await self._commit(unit, new, actor, reason, forced, _note_for(unit, new, actor, reason, forced))
        return new

    async def _commit(self, old: Unit, new: Unit, actor: str, reason: str, forced: bool, note: Note | None) -> None:
        change = None
        if new.status != old.status or new.incident != old.incident:
            change = UnitChange(unit=new.id, wall=new.updated_wall, actor=actor, status=new.status,
                                previous=old.status, incident=new.incident or old.incident,
                                lat=new.lat, lon=new.lon, reason=reason, forced=forced)
            log.info("unit %s: %s -> %s (%s) by %s%s", new.id, old.status, new.status, change.incident or "-",
                     actor, f", forced: {reason}" if forced else "")
        seq = await trio.to_thread.run_sync(self._save, old, new, change, note)
        self._units[new.id] = new
        if note is not None and seq is not None:
            self._notes.append((seq, note))
            await self._deliver()

    async def _deliver(self) -> None:
        """Hand waiting notes to the desk in order; stop at the first the store cannot take."""
        while self._notes:
            seq, note = self._notes[0]
            try:
                await self._apply(note)
            except (DeskError, NotFound) as exc:
                log.error("unit %s: incident %s refused %s: %s", note.unit, note.incident, note.kind, exc)
            except StoreError as exc:
                log.error("unit %s: %s for incident %s waits for the store: %s", note.unit, note.kind,
                          note.incident, exc)
                return
            await trio.to_thread.run_sync(self._forget, seq)
            self._notes.pop(0)

    async def _apply(self, note: Note) -> None:
        incident = await self.desk.get(note.incident)
        changes: dict[str, object] | None = None
        if note.join is True and note.unit not in incident.units:
            changes = {"units": [*incident.units, note.unit]}
        elif note.join is False and note.unit in incident.units:
            changes = {"units": [u for u in incident.units if u != note.unit]}
        key = f"unit-note:{note.id}"  # a note delivered before (by another node, or before a restart): not again
        if not await self.desk.seen(key):
            await self.desk.record_report(note.incident, note.kind, seen_key=key, actor=note.actor, changes=changes,
                                          unit=note.unit, **note.data)
        current = (await self.desk.get(note.incident)).status
        if note.status in STATUS_ORDER and current != "closed" and STATUS_ORDER[note.status] > STATUS_ORDER[current]:
            status: ResponseStatus = note.status  # type: ignore[assignment]
            await self.desk.set_status(note.incident, status, actor=note.actor, unit=note.unit)

    # -- the store (worker threads) ---------------------------------------------------------------

    def _open(self, roster: Roster) -> dict[str, Unit]:
        """Roster units with their stored state; new roster units are stored free at their base."""
        for _ in range(STALE_RETRIES):
            rows = self._db.rows("SELECT id, body FROM units")
            self._bodies = {str(i): bytes(b) for i, b in rows}
            stored = {i: msgspec.json.decode(b, type=Unit) for i, b in self._bodies.items()}
            units = {e.id: refreshed(stored[e.id], e) if e.id in stored else seed(e) for e in roster.units}
            try:
                with self._db.transaction() as execute:
                    written = {unit.id: self._put(execute, unit.id, self._bodies.get(unit.id), unit)
                               for unit in units.values() if _json.encode(unit) != self._bodies.get(unit.id)}
            except _Stale:  # another node changed or made it meanwhile: read them all again
                continue
            self._bodies.update(written)
            for orphan in sorted(set(stored) - set(units)):
                log.warning("unit %s is in the units store but not in the roster: not served (was %s%s)",
                            orphan, stored[orphan].status, f" on {stored[orphan].incident}" if stored[orphan].incident
                            else "")
            return units
        raise StoreError(f"units store: the units changed on another node {STALE_RETRIES} times while opening")

    @staticmethod
    def _put(execute: Execute, unit_id: str, old: bytes | None, unit: Unit) -> bytes:
        """Write the unit over the body ``old`` read (None: no row yet); its new body. Raises _Stale if
        the row holds another body by now."""
        body = _json.encode(unit)
        if old is None:
            done = execute("INSERT INTO units (id, body) VALUES (?, ?) ON CONFLICT (id) DO NOTHING RETURNING id",
                           (unit_id, body))
        else:
            done = execute("UPDATE units SET body = ? WHERE id = ? AND body = ? RETURNING id", (body, unit_id, old))
        if not done:
            raise _Stale(unit_id)
        return body

    def _reload(self, unit_id: str = "") -> None:
        """The stored state of one unit (or every one) into the live copy (roster units only)."""
        rows = self._db.rows("SELECT id, body FROM units WHERE id = ?", (unit_id,)) if unit_id \
            else self._db.rows("SELECT id, body FROM units")
        for found, body in rows:
            if found in self._units and bytes(body) != self._bodies.get(found):
                self._bodies[found] = bytes(body)
                self._units[found] = msgspec.json.decode(body, type=Unit)

    def _save(self, old: Unit, unit: Unit, change: UnitChange | None, note: Note | None) -> int | None:
        """The unit's new state with its log entry and note, in one transaction; the note's number.
        Raises _Stale (nothing written) when another node changed the unit since it was read."""
        seq = None
        with self._db.transaction() as execute:
            body = self._put(execute, unit.id, self._bodies.get(old.id), unit)
            if change is not None:
                execute("INSERT INTO unit_log (unit, body) VALUES (?, ?)", (unit.id, _json.encode(change)))
            if note is not None:
                seq = int(execute("INSERT INTO unit_notes (body) VALUES (?) RETURNING seq",
                                  (_json.encode(note),))[0][0])
        self._bodies[unit.id] = body
        return seq

    def _forget(self, seq: int) -> None:
        with self._db.transaction() as execute:
            execute("DELETE FROM unit_notes WHERE seq = ?", (seq,))

    def _history(self, unit_id: str, limit: int) -> list[UnitChange]:
        rows = self._db.rows("SELECT body FROM unit_log WHERE unit = ? ORDER BY seq DESC LIMIT ?", (unit_id, limit))
        return [msgspec.json.decode(row[0], type=UnitChange) for row in rows]


def _note_for(old: Unit, new: Unit, actor: str, reason: str, forced: bool) -> Note | None:
    """What the incident must hear of a unit change: its release, or its progress."""
    data: dict[str, str | float | bool] = {"status": new.status, "previous": old.status}
    if reason:
        data["reason"] = reason
    if forced:
        data["forced"] = True
    if old.incident and new.incident != old.incident:
        return Note(incident=old.incident, kind="unit_released", actor=actor, unit=new.id, join=False, data=data)
    if new.incident and new.status != old.status:
        progress = new.status if new.status in ("en_route", "on_scene") else ""
        return Note(incident=new.incident, kind="unit_status", actor=actor, unit=new.id, status=progress, data=data)
    return None
