"""Who a notify step reaches and how each of them is told: the people of its roles and names, the crews of
the nearest free units, and one notification's delivery written down as timeline notes. The engine
(``scenario.engine``) decides when; these only carry a step out, with the engine's directory, dynamic roles,
units board, notifier and catalogue (``Reach``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import msgspec

from gateway.errors import GatewayError
from gateway.incident.records import Incident
from gateway.scenario import facts as F
from gateway.scenario import machine as M
from gateway.scenario.catalogue import Catalogue
from gateway.scenario.notifier import ACK_DIGIT, Notifier
from gateway.scenario.people import Directory, Person

log = logging.getLogger(__name__)
Value = str | int | float | bool | None
Notes = list[tuple[str, dict[str, Value]]]  # (event kind, its fields), written with the run's next event


class UnitBoard(Protocol):
    """What the engine needs from the units board (``gateway.units.board``)."""

    async def nearest_for(self, incident_id: str, kind: str) -> tuple[str, str, list[str]] | None:
        """(unit id, callsign, member names) of the nearest free unit of ``kind``, or None."""
        ...

    async def on_member_ack(self, person: str, incident_id: str) -> bool:
        """Assign the member's unit and send it; False when no unit of theirs can take the incident."""
        ...


class Reach(Protocol):
    """The engine's parts a step uses to reach people."""

    directory: Directory
    dynamic_people: dict[str, Callable[[Incident], list[Person]]]
    board: UnitBoard | None
    notifier: Notifier
    catalogue: Catalogue


async def targets(ctx: Reach, incident: Incident, spec: M.Spec) -> list[M.Target]:
    """The notifications a step sends: one per person of its roles and names, one per crew member of the
    nearest free unit of each of its unit kinds."""
    people: dict[str, Person] = {}
    for role in spec.roles:
        found = ctx.dynamic_people[role](incident) if role in ctx.dynamic_people else ctx.directory.with_role(role)
        people.update((p.name, p) for p in found)
    for name in spec.people:
        person = find(ctx, name)
        if person is not None:
            people[name] = person
    chosen = [M.new_target(f"person:{name}", name) for name in people]
    for kind in spec.units:
        found_unit = await ctx.board.nearest_for(incident.id, kind) if ctx.board else None
        if found_unit is None:
            continue
        unit_id, callsign, members = found_unit
        chosen += [M.new_target(f"unit:{unit_id}", m, unit=unit_id, unit_name=callsign)
                   for m in members if find(ctx, m)]
    return chosen


def find(ctx: Reach, name: str, incident: Incident | None = None) -> Person | None:
    """A directory person, a centre, or (given the incident) someone a dynamic role names."""
    if name.startswith("centre:"):
        centre = ctx.directory.centres.get(name[7:])
        return centre.as_person() if centre else None
    found = ctx.directory.people.get(name)
    if found is None and incident is not None:
        dynamic = (p for resolve in ctx.dynamic_people.values() for p in resolve(incident))
        found = next((p for p in dynamic if p.name == name), None)
    return found


async def notify_one(ctx: Reach, run: M.Run, spec: M.Spec, incident: Incident, target: M.Target,
                     notes: Notes) -> None:
    """Send one notification of the run's current attempt; what happened goes to ``notes`` (and a voice
    call's acknowledging digit straight to the run)."""
    person = find(ctx, target.person, incident)
    if person is None:
        notes.append(("notify_failed", {"person": target.person, "reason": "no longer in the directory"}))
        return
    extra = {"unit": target.unit_name or target.unit, "centre": person.display if spec.kind == "forward" else ""}
    told = msgspec.structs.replace(incident, status=run.status) if run.status else incident  # type: ignore[arg-type]
    fields = F.template_fields(told, ctx.catalogue, person.language, **extra)
    needs_ack = spec.ack != "none"
    route = person.route(spec.channels)
    console = "console" in spec.channels
    delivery = await ctx.notifier.send(person, route, spec.template, fields, target, attempt=run.attempt,
                                       needs_ack=needs_ack, incident_id=incident.id) if route else None
    for channel, why in delivery.tried if delivery else []:
        notes.append(("channel_failed", {"person": person.name, "channel": channel, "reason": why[:200]}))
    if delivery is not None and delivery.channel:
        target.channel, target.failed = delivery.channel, ""
        notes.append(("notified", {"person": person.name, "channel": delivery.channel, "attempt": run.attempt,
                                   "unit": target.unit or None, "code": target.code if needs_ack else None}))
        if needs_ack and delivery.channel == "voice" and delivery.reply == ACK_DIGIT:
            if await unit_ack(ctx.board, target, run.incident_id):
                M.acknowledge(run, target.token, person.name, "voice", time.time())
                notes.append(("acknowledged", {"person": person.name, "via": "voice", "unit": target.unit or None}))
            else:
                notes.append(("unit_unavailable", {"person": person.name, "unit": target.unit, "via": "voice"}))
    elif console:
        target.channel = "console"
        notes.append(("notified", {"person": person.name, "channel": "console", "attempt": run.attempt}))
    else:
        target.failed = "unreachable"
        notes.append(("notify_failed", {"person": person.name, "attempt": run.attempt,
                                        "reason": "no channel reached them" if route else "no usable channel"}))


async def unit_ack(board: UnitBoard | None, target: M.Target, incident_id: str) -> bool:
    """For a unit's crew member: their unit takes the incident. False when it cannot (busy elsewhere,
    the board down): then the press is no acknowledgement and the scenario goes on looking."""
    if not target.unit or board is None:
        return True
    try:
        return await board.on_member_ack(target.person, incident_id)
    except GatewayError as exc:
        log.error("incident %s: unit %s acknowledged but the board refused: %s", incident_id, target.unit, exc)
        return False
