"""The incident desk: what opening and changing an incident means, for everything but the call intake.

Alarm panels, the Telegram 102 bot, SMS to 112, AML, the units board and dispatchers (through the
API) come here: open an incident, add an event, attach a location, change the category, move the
response status forward (never back). The desk writes through the recorder (``incident.recorder``,
the one writer of incidents) on its one shared ``Held`` per live incident, so a call, its scenario
and a dispatcher editing it never overwrite each other's fields or timeline.

A report that a provider may send again carries its replay key (``protocols.replay``): ``seen``
says whether it was taken already, and ``seen_key`` (``open``, ``record_report``, ``attach_location``)
writes the key with the event the report caused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.errors import Conflict
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident, IncidentSource, Location, ResponseStatus, new_incident_id
from gateway.incident.store import AsyncStore, Statement, event

Value = str | int | float | bool | None
# Response status may only move forward (a unit can report "on scene" without "en route"); closed is final.
STATUS_ORDER: dict[str, int] = {"new": 0, "assigned": 1, "en_route": 2, "on_scene": 3, "closed": 4}


class DeskError(Conflict):
    """A change the desk refuses (unknown status, going backwards, a closed incident)."""


def no_caller(raw: str = "") -> Caller:
    """The caller of an incident nobody phoned in (an alarm panel, an API report)."""
    return Caller(raw_number=raw, number="", display_name="", withheld=False)


def best_location(locations: Sequence[Location]) -> int | None:
    """Index of the most precise candidate: the smallest stated radius, points before civic."""
    ranked = [(loc.radius_m if loc.radius_m is not None else 1e9, i) for i, loc in enumerate(locations)
              if loc.lat is not None and loc.lon is not None]
    return min(ranked)[1] if ranked else None


class Desk:
    def __init__(self, store: AsyncStore, recorder: Recorder) -> None:
        self.store = store
        self.recorder = recorder

    async def open(self, *, service: str, source: IncidentSource, caller: Caller, kind: str, actor: str,
                   category: str = "", priority: int = 1, language: str = "", reporter: str = "",
                   locations: Sequence[Location] = (), seen_key: str = "", **data: Value) -> Incident:
        """Create an incident from a report; durable on return. ``kind`` names its first timeline event."""
        now = time.time()
        incident = Incident(id=new_incident_id(now), service=service, created_wall=now, caller=caller,
                            source=source, reporter=reporter, category=category, priority=priority,
                            language=language, locations=list(locations), best_location=best_location(locations))
        incident.timeline.append(event(kind, actor, source=source, category=category, **data))
        held = self.recorder.track(Held(incident))
        try:
            await self.recorder.create(held, self._seen_rows(seen_key))
        finally:
            self.recorder.release(held)
        return incident

    async def record(self, incident_id: str, kind: str, *, actor: str = "gateway",
                     changes: dict[str, object] | None = None, **data: Value) -> Incident:
        """Append one event (and optional field changes); durable on return. Raises NotFound."""
        return await self._record(incident_id, kind, actor, changes, [], data)

    async def record_report(self, incident_id: str, kind: str, *, seen_key: str, actor: str = "gateway",
                            changes: dict[str, object] | None = None, **data: Value) -> Incident:
        """``record`` the event a report caused, with the report's replay key ("" for none)."""
        return await self._record(incident_id, kind, actor, changes, self._seen_rows(seen_key), data)

    async def _record(self, incident_id: str, kind: str, actor: str, changes: dict[str, object] | None,
                      with_event: list[Statement], data: dict[str, Value]) -> Incident:
        held = await self.recorder.acquire(incident_id)
        try:
            await self.recorder.record(held, kind, actor, changes=changes, with_event=with_event,
                                       **data)  # type: ignore[arg-type]
            return held.incident
        finally:
            self.recorder.release(held)

    async def seen(self, seen_key: str) -> bool:
        """Whether the report with this replay key was already taken ("" never was)."""
        return bool(seen_key) and await self.store.seen(seen_key)

    async def mark_seen(self, seen_key: str) -> None:
        """Record a replay key on its own: for a report whose effect is not an incident event."""
        if seen_key:
            await self.store.mark_seen(seen_key)

    def _seen_rows(self, seen_key: str) -> list[Statement]:
        return self.store.seen_statements(seen_key, time.time()) if seen_key else []

    async def get(self, incident_id: str) -> Incident:
        """The live copy when one is held, else the stored one."""
        held = self.recorder.live.get(incident_id)
        return held.incident if held is not None else await self.store.get(incident_id)

    async def attach_location(self, incident_id: str, location: Location, *, actor: str, seen_key: str = "",
                              **data: Value) -> Incident:
        """Add a location candidate; it becomes the best one if it is the most precise."""
        held = await self.recorder.acquire(incident_id)
        try:
            inc = held.incident
            locations = [*inc.locations, location]
            await self.recorder.record(held, "location_added", actor,
                                       changes={"locations": locations, "best_location": best_location(locations)},
                                       with_event=self._seen_rows(seen_key), source=location.source,
                                       lat=location.lat, lon=location.lon, radius_m=location.radius_m,
                                       **data)  # type: ignore[arg-type]
            return inc
        finally:
            self.recorder.release(held)

    async def set_scene(self, incident_id: str, *, actor: str, copy: int | None = None,
                        place: Location | None = None) -> Incident:
        """Settle where the incident is: a copy of the caller's candidate ``copy``, or ``place`` as the
        dispatcher corrected it. The caller's candidates stay as received. Raises DeskError for a
        candidate that does not exist or has no coordinates."""
        held = await self.recorder.acquire(incident_id)
        try:
            inc = held.incident
            if copy is not None:
                if not 0 <= copy < len(inc.locations):
                    raise DeskError(f"incident {incident_id} has no caller location #{copy}")
                place = inc.locations[copy]
            if place is None or ((place.lat is None or place.lon is None) and not place.address):
                raise DeskError("the incident's location needs coordinates or an address")
            before = inc.scene
            await self.recorder.record(held, "scene_set", actor, changes={"scene": place},
                                       copied_from=copy, source=place.source, lat=place.lat, lon=place.lon,
                                       address=place.address or None,
                                       previous_lat=before.lat if before else None,
                                       previous_lon=before.lon if before else None)
            return inc
        finally:
            self.recorder.release(held)

    async def set_category(self, incident_id: str, category: str, priority: int, *, actor: str) -> Incident:
        held = await self.recorder.acquire(incident_id)
        try:
            before = held.incident.category
            await self.recorder.record(held, "category_changed", actor,
                                       changes={"category": category, "priority": priority},
                                       category=category, previous=before, priority=priority)
            return held.incident
        finally:
            self.recorder.release(held)

    async def set_status(self, incident_id: str, status: ResponseStatus, *, actor: str, **data: Value) -> Incident:
        """Move the response status forward; raises DeskError for an unknown or backward move."""
        if status not in STATUS_ORDER:
            raise DeskError(f"unknown status {status!r}: expected one of {', '.join(STATUS_ORDER)}")
        held = await self.recorder.acquire(incident_id)
        try:
            current = held.incident.status
            if current == "closed":
                raise DeskError(f"incident {incident_id} is closed")
            if STATUS_ORDER[status] < STATUS_ORDER[current]:
                raise DeskError(f"incident {incident_id} is {current}; cannot go back to {status}")
            if status != current:
                await self.recorder.record(held, "status_changed", actor, changes={"status": status},
                                           status=status, previous=current, **data)  # type: ignore[arg-type]
            else:
                await self.recorder.flush(held)  # a retry after a failed write: make that write now
            return held.incident
        finally:
            self.recorder.release(held)

    async def open_for_number(self, number: str, within_s: float) -> Incident | None:
        """The newest incident of this caller number created within ``within_s`` and not closed."""
        if not number:
            return None
        for summary in await self.store.by_number(number, time.time() - within_s):
            if summary.status != "closed":
                return await self.get(summary.id)
        return None
