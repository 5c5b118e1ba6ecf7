"""One caller's channel in the gateway and the incident it belongs to."""

from __future__ import annotations

import time

import trio

from gateway import ari_events as ev
from gateway.bus import Bus
from gateway.records import Incident, IncidentState, IncidentSummary, TimelineEvent
from gateway.store import AsyncStore, event


def summary(incident: Incident) -> IncidentSummary:
    return IncidentSummary(id=incident.id, service=incident.service, state=incident.state,
                           created_wall=incident.created_wall, number=incident.caller.number,
                           category=incident.category, position=incident.position)


class Call:
    """A caller channel being served. Owned by the Intake; mutated only from Trio tasks."""

    def __init__(self, incident: Incident, channel_id: str, arrived_mono: float) -> None:
        self.incident = incident
        self.channel_id = channel_id
        self.arrived_mono = arrived_mono
        self.inbox_send, self.inbox = trio.open_memory_channel[ev.Event](64)
        self.scope = trio.CancelScope()
        self.gone = False
        self.enqueued_mono: float | None = None
        self.first_enqueued_mono: float | None = None
        self.ring_position: str | None = None  # the position being rung (or talking, once answered)
        self.ring_started_mono: float | None = None
        self.delivering = False  # handed to the dialplan's Dial: out of Stasis until it comes back
        self.subscribed = False  # our app receives its events even outside Stasis
        self.hold_scope = trio.CancelScope()  # ringback/announcements while queued
        self.answered = trio.Event()
        self.saved = False  # the incident row exists in the store
        self.pending: list[TimelineEvent] = []  # noted, written with the next recorded event

    @property
    def id(self) -> str:
        return self.incident.id


class Recorder:
    """Appends timeline events to incidents and makes them durable, then tells subscribers."""

    def __init__(self, store: AsyncStore, bus: Bus) -> None:
        self.store = store
        self.bus = bus

    async def create(self, call: Call) -> None:
        call.incident.updated_wall = time.time()
        await self.store.create(call.incident)
        call.saved = True
        self.bus.publish(summary(call.incident))

    def note(self, call: Call, kind: str, actor: str = "gateway", **data: str | int | float | bool | None) -> None:
        """Add an event that is made durable with the next ``record`` (saves a write per call for
        events whose loss in a crash would change nothing: the next event implies them)."""
        item = event(kind, actor, **data)
        call.incident.timeline.append(item)
        call.pending.append(item)

    async def record(self, call: Call, kind: str, actor: str = "gateway", state: IncidentState | None = None,
                     changes: dict[str, object] | None = None, **data: str | int | float | bool | None) -> None:
        """Add one event (and optional field changes) to the incident; durable on return."""
        item = event(kind, actor, **data)
        inc = call.incident
        if changes:
            for key, value in changes.items():
                setattr(inc, key, value)
        if state is not None:
            inc.state = state
        inc.timeline.append(item)
        await self.commit(call, item)

    async def commit(self, call: Call, item: TimelineEvent) -> None:
        """Make ``item`` (already on the timeline) durable, with every event noted before it."""
        call.incident.updated_wall = item.wall
        events, call.pending = [*call.pending, item], []
        await self.append(call, events)

    async def append(self, call: Call, events: list[TimelineEvent]) -> None:
        """Persist ``events`` (already on the timeline). If the first write failed, the whole
        incident is written now: a disk hiccup at call arrival must not lose the record."""
        if call.saved:
            await self.store.update(call.incident, events)
        else:
            await self.store.create(call.incident)
            call.saved = True
        self.bus.publish(summary(call.incident))
