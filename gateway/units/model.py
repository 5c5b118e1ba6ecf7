"""Response units (patrols, fire crews, ambulances, ...): their records, status rules and proposals (pure).

Theory of operation: a unit is ``free`` at its base or on patrol, ``assigned`` once a dispatcher gives
it an incident, then reports ``en_route`` and ``on_scene``, and is ``free`` again when it clears (or
``unavailable``: off shift, refuelling, broken down). ``TRANSITIONS`` is the whole table of ordinary
moves. Anything else is a dispatcher's decision and needs ``force`` plus a reason; even forced, a unit
can only be assigned, en route or on scene *for an incident* (it gets one through an assignment).

``propose`` ranks the free units of a kind by straight-line distance to the incident, fresh positions
before stale ones (a patrol car's last GPS fix from an hour ago says little about where it is now).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec

from gateway.errors import ConfigError, Conflict, GatewayError, InputError
from gateway.geo import distance_m
from gateway.incident.records import Incident, response_location
from gateway.settings.base import Base

UnitStatus = Literal["free", "assigned", "en_route", "on_scene", "unavailable"]
STATUSES: tuple[UnitStatus, ...] = ("free", "assigned", "en_route", "on_scene", "unavailable")
ACTIVE: frozenset[str] = frozenset({"assigned", "en_route", "on_scene"})  # statuses that need an incident
TRANSITIONS: dict[str, frozenset[str]] = {
    "unavailable": frozenset({"free"}),
    "free": frozenset({"assigned", "unavailable"}),
    "assigned": frozenset({"en_route", "on_scene", "free"}),  # on scene at once: it was next door
    "en_route": frozenset({"on_scene", "free"}),  # free: recalled before arriving
    "on_scene": frozenset({"free"}),
}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PERSON_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_PROPOSALS = 50


class UnitError(GatewayError):
    """A unit change or proposal the board refuses."""


class UnitInputError(UnitError, InputError):
    """The request itself is wrong: unknown status or kind, a position off the globe, a missing reason."""


class IllegalTransition(UnitError, Conflict):
    """The unit's current status does not allow the change (without a dispatcher forcing it)."""


class NoLocation(UnitError, Conflict):
    """The incident has no location with coordinates, so nothing can be near it."""


class Unit(msgspec.Struct, frozen=True, kw_only=True):
    """A unit as stored and served. ``position_wall`` 0 means the position is its base, never reported."""

    id: str
    kind: str
    name: str
    status: UnitStatus = "free"
    lat: float
    lon: float
    position_wall: float = 0.0
    incident: str = ""
    members: list[str] = []
    updated_wall: float = 0.0


class UnitChange(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a unit's audit trail."""

    unit: str
    wall: float
    actor: str
    status: UnitStatus
    previous: UnitStatus
    incident: str = ""
    lat: float | None = None
    lon: float | None = None
    reason: str = ""
    forced: bool = False


class Proposal(msgspec.Struct, frozen=True, kw_only=True):
    """A free unit offered for an incident, with how far it is and roughly how long it needs."""

    unit: str
    kind: str
    name: str
    distance_m: float
    eta_s: float
    stale: bool  # its position is older than the board's limit (or only its base): ranked last
    position_age_s: float | None  # None: never reported, the base position was used
    lat: float
    lon: float


class RosterUnit(Base, frozen=True):
    id: str
    kind: str
    name: str
    lat: float  # base position
    lon: float
    base: str = ""  # the station it works from, for people
    members: list[str] = []


class Roster(msgspec.Struct, frozen=True, kw_only=True):
    kinds: tuple[str, ...]
    units: tuple[RosterUnit, ...]


# -- status changes -----------------------------------------------------------------------------------


def check_change(unit: Unit, status: str, *, force: bool = False, reason: str = "") -> None:
    """Raise unless ``unit`` may move to ``status``: UnitInputError for an unknown status or a forced
    change without a reason, IllegalTransition for a move the table does not allow."""
    if status not in STATUSES:
        raise UnitInputError(f"unknown status {status!r}: expected one of {', '.join(STATUSES)}")
    if force and not reason.strip():
        raise UnitInputError(f"forcing unit {unit.id} to {status} needs a reason")
    if status == unit.status:
        return
    if status in ACTIVE and not unit.incident:
        raise IllegalTransition(f"unit {unit.id} has no incident: it becomes {status} only through an "
                                "assignment (POST /incidents/{id}/assign)")
    if status in TRANSITIONS[unit.status]:
        return
    if not force:
        allowed = ", ".join(sorted(TRANSITIONS[unit.status]))
        raise IllegalTransition(f"unit {unit.id} is {unit.status}: it may go to {allowed}; "
                                "a dispatcher may force another change with a reason")


def check_position(lat: float | None, lon: float | None) -> None:
    """Raise UnitInputError unless both or neither are given and they are on the globe."""
    if (lat is None) != (lon is None):
        raise UnitInputError("a position needs both lat and lon")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UnitInputError(f"position ({lat}, {lon}): expected lat -90..90 and lon -180..180")


def moved(unit: Unit, *, status: str | None, lat: float | None, lon: float | None, incident: str | None,
          now: float) -> Unit:
    """The unit after a checked change. Leaving the active statuses ends its assignment."""
    new_status = status if status is not None else unit.status
    changes: dict[str, object] = {"status": new_status, "updated_wall": now}
    if incident is not None:
        changes["incident"] = incident
    elif new_status not in ACTIVE:
        changes["incident"] = ""
    if lat is not None and lon is not None:
        changes.update(lat=lat, lon=lon, position_wall=now)
    return msgspec.structs.replace(unit, **changes)


def seed(entry: RosterUnit) -> Unit:
    """A roster unit as first stored: free at its base."""
    return Unit(id=entry.id, kind=entry.kind, name=entry.name, lat=entry.lat, lon=entry.lon,
                members=list(entry.members))


def refreshed(stored: Unit, entry: RosterUnit) -> Unit:
    """A stored unit with the roster's static fields (kind, name, crew change between shifts);
    status, position and assignment stay as stored."""
    return msgspec.structs.replace(stored, kind=entry.kind, name=entry.name, members=list(entry.members))


# -- proposals ----------------------------------------------------------------------------------------


def incident_point(incident: Incident) -> tuple[float, float]:
    """Coordinates of the incident's best location; raises NoLocation when it has none."""
    loc = response_location(incident)  # the dispatcher's scene, else the most precise caller candidate
    if loc is not None and loc.lat is not None and loc.lon is not None:
        return loc.lat, loc.lon
    raise NoLocation(f"incident {incident.id} has no location with coordinates: add one "
                     "(or choose units by hand) before asking for the nearest")


def propose(units: Iterable[Unit], kind: str, lat: float, lon: float, limit: int, *, now: float,
            stale_after_s: float, speed_kmh: float) -> list[Proposal]:
    """The ``limit`` nearest free units of ``kind`` ("" for any kind): fresh positions first, then by
    distance, then by id (so equal offers always come in the same order). The ETA is the straight-line
    distance at ``speed_kmh``: rough, for comparing units, not a route."""
    if not 1 <= limit <= MAX_PROPOSALS:
        raise UnitInputError(f"limit {limit}: expected 1-{MAX_PROPOSALS}")
    if speed_kmh <= 0:
        raise UnitInputError(f"speed_kmh {speed_kmh}: expected more than 0")
    offers = []
    for unit in units:
        if unit.status != "free" or (kind and unit.kind != kind):
            continue
        age = now - unit.position_wall if unit.position_wall > 0 else None
        stale = age is None or age > stale_after_s
        metres = distance_m(lat, lon, unit.lat, unit.lon)
        offers.append(Proposal(unit=unit.id, kind=unit.kind, name=unit.name, distance_m=round(metres, 1),
                               eta_s=round(metres / (speed_kmh / 3.6), 1), stale=stale,
                               position_age_s=None if age is None else round(max(0.0, age), 1),
                               lat=unit.lat, lon=unit.lon))
    offers.sort(key=lambda p: (p.stale, p.distance_m, p.unit))
    return offers[:limit]


# -- roster -------------------------------------------------------------------------------------------


def parse_roster(text: str, where: str) -> Roster:
    """Read a roster (``config/units.toml``); raises ConfigError listing every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from exc
    problems: list[str] = []
    extra = sorted(set(raw) - {"kinds", "units"})
    problems.extend(f"{where}: {key}: unknown key (expected kinds and [[units]])" for key in extra)
    kinds = _kinds(raw.get("kinds"), where, problems)
    units = _units(raw.get("units", []), where, problems)
    problems.extend(_unit_problems(units, set(kinds), where))
    if problems:
        raise ConfigError(problems)
    return Roster(kinds=tuple(kinds), units=tuple(u for _, u in units))


def _kinds(value: object, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(k, str) for k in value):
        problems.append(f"{where}: kinds: expected a non-empty list of unit kinds, e.g. [\"patrol\", \"ambulance\"]")
        return []
    problems.extend(f"{where}: kinds: {k!r}: expected lower-case letters, digits or _"
                    for k in value if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", k))
    problems.extend(f"{where}: kinds: {k!r} listed twice" for k in sorted({k for k in value if value.count(k) > 1}))
    return list(value)


def _units(value: object, where: str, problems: list[str]) -> list[tuple[int, RosterUnit]]:
    if not isinstance(value, list):
        problems.append(f"{where}: units: expected [[units]] tables")
        return []
    units = []
    for i, item in enumerate(value):
        try:
            units.append((i, msgspec.convert(item, RosterUnit)))
        except msgspec.ValidationError as exc:
            name = item.get("id", "?") if isinstance(item, dict) else "?"
            problems.append(f"{where}: units[{i}] ({name}): {exc}")
    return units


def _unit_problems(units: list[tuple[int, RosterUnit]], kinds: set[str], where: str) -> list[str]:
    p: list[str] = []
    ids = [u.id for _, u in units]
    for i, u in units:
        at = f"{where}: units[{i}] ({u.id})"
        if not ID_RE.match(u.id):
            p.append(f"{at}: id: expected lower-case letters, digits, - or _ (at most 32)")
        if ids.count(u.id) > 1:
            p.append(f"{at}: id: used by another unit too")
        if kinds and u.kind not in kinds:
            p.append(f"{at}: kind {u.kind!r}: expected one of {', '.join(sorted(kinds))}")
        if not u.name.strip():
            p.append(f"{at}: name: expected the unit's callsign")
        if not (-90 <= u.lat <= 90 and -180 <= u.lon <= 180):
            p.append(f"{at}: lat/lon ({u.lat}, {u.lon}): expected lat -90..90 and lon -180..180")
        p.extend(f"{at}: members: {m!r}: expected a person's name (lower-case letters, digits, _ . -)"
                 for m in u.members if not PERSON_RE.match(m))
        p.extend(f"{at}: members: {m!r} listed twice"
                 for m in sorted({m for m in u.members if u.members.count(m) > 1}))
    return p


def load_roster(path: str | Path) -> Roster:
    """Read and check a roster file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from exc
    return parse_roster(text, str(path))
