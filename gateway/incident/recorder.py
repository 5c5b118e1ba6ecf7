"""The one writer of incidents: every change to an incident reaches the store through ``Recorder``.

Theory of operation: a live incident is held in memory once (``Held``), shared by every task
working on it (its call, its scenario runs, the desk's callers), so heads and timeline numbering
never diverge. A change appends timeline events to the held incident and writes them, with the
incident's new head, in one store transaction (optionally with statements another feature attaches:
a scenario run's progress); only then are subscribers (the live event stream) and listeners (the
scenario triggers, the bots) told. Events ``note``d are written with the next recorded one. A write
that fails leaves its events pending: they are written at their own places with the next write,
together with the statements that belong to them (``with_event``: the replay key of the report that
caused the event), so an event is never durable without its key, nor a key without its event.

The call intake and the scenario engine keep their incidents held while they work on them and
record on that ``Held`` directly; everything else goes through ``gateway.incident.desk``, which
says what each change means. Nothing else writes the incident tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import trio

from gateway.errors import StoreError
from gateway.incident.bus import Bus
from gateway.incident.merge import Head, head_of, merge, take
from gateway.incident.records import Incident, IncidentState, TimelineEvent
from gateway.incident.store import AsyncStore, Statement, event, summary


class Held:
    """An incident being worked on in memory. Every task touching a live incident (its call, its
    scenario, the API) shares one ``Held``, so heads and timeline numbering never diverge."""

    def __init__(self, incident: Incident, saved: bool = False) -> None:
        self.incident = incident
        self.saved = saved  # the incident row exists in the store
        self.create_tried = saved  # a create was asked: one that failed may yet have been committed
        self.pending: list[TimelineEvent] = []  # noted, written with the next recorded event
        self.riders: list[tuple[TimelineEvent, list[Statement]]] = []  # written with that event, whenever
        self.users = 0
        self.base: Head | None = None  # a shared store: the head as last written or read (``incident.merge``)


class Recorder:
    """Appends timeline events to incidents and makes them durable, then tells subscribers.

    It also keeps the registry of live incidents: ``acquire`` returns the one shared ``Held`` of
    an incident (loading it from the store if nobody holds it), ``release`` forgets it once its
    last user is done.
    """

    def __init__(self, store: AsyncStore, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        self.live: dict[str, Held] = {}
        self._loading: dict[str, trio.Event] = {}  # incident id -> its load under way (``acquire``)
        self.listeners: list[Callable[[Incident, TimelineEvent], None]] = []  # after every durable write
        self.created_listeners: list[Callable[[Incident], None]] = []  # after an incident's first write
        self.merging = bool(getattr(store.sync, "shared", False))  # other nodes write the same incidents

    def track(self, held: Held) -> Held:
        """Register a new incident (or return the one already live under its id)."""
        found = self.live.setdefault(held.incident.id, held)
        found.users += 1
        return found

    async def acquire(self, incident_id: str) -> Held:
        """The live incident, loaded from the store if needed; raises NotFound or StoreError.

        One load per incident at a time: a task that finds another's load under way waits for it and shares
        its result. Two loads could otherwise cross a third task's whole acquire-write-release, and the later
        one would make a copy without that write live; its next event then took the written one's place on
        the timeline (seen as a lost ``scene_set`` once writes got faster)."""
        while True:
            held = self.live.get(incident_id)
            if held is not None:
                held.users += 1
                return held
            loading = self._loading.get(incident_id)
            if loading is None:
                return await self._load(incident_id)
            await loading.wait()  # then live (or failed: loaded here again, which raises the same)

    async def _load(self, incident_id: str) -> Held:
        done = self._loading[incident_id] = trio.Event()
        try:
            loaded = Held(await self.store.get(incident_id), saved=True)
            loaded.base = head_of(loaded.incident) if self.merging else None
            held = self.live.setdefault(incident_id, loaded)  # one ``track``ed meanwhile (an adoption) wins
            held.users += 1  # live before the waiters run: they take it from there
            return held
        finally:
            del self._loading[incident_id]
            done.set()

    async def merge_remote(self, incident_id: str) -> bool:
        """Another node changed ``incident_id``: if this node holds it, take that node's changes into the
        held copy (``incident.merge``), so this node's next write does not undo them. Raises StoreError."""
        held = self.live.get(incident_id)
        if held is None or held.base is None:
            return False
        theirs = await self.store.get(incident_id)
        if self.live.get(incident_id) is not held or held.base is None:
            return False
        taken, events = merge(held.base, held.incident, theirs)
        take(held.incident, theirs, taken, events)
        held.base = head_of(theirs)
        return bool(taken or events)

    def keep(self, incident_id: str) -> Held | None:
        """One more user of a live incident (None if nobody holds it): for a listener that works on it later
        without loading it again. Pair with ``release``."""
        held = self.live.get(incident_id)
        if held is not None:
            held.users += 1
        return held

    def release(self, held: Held) -> None:
        held.users -= 1
        if held.users <= 0 and self.live.get(held.incident.id) is held:
            del self.live[held.incident.id]

    async def create(self, call: Held, extra: Sequence[Statement] = ()) -> None:
        """Write a new incident (with ``extra`` statements, atomically); durable on return."""
        call.incident.updated_wall = time.time()
        again, call.create_tried = call.create_tried, True
        written = head_of(call.incident) if self.merging else None
        await self.store.create(call.incident, extra, again)
        call.saved, call.base = True, written
        self._created(call.incident)

    def note(self, call: Held, kind: str, actor: str = "gateway", state: IncidentState | None = None,
             **data: str | int | float | bool | None) -> None:
        """Add an event (and optionally a new state) that is made durable with the next ``record`` (saves a
        write per call for events whose loss in a crash would change nothing: the next event implies them)."""
        if state is not None:
            call.incident.state = state
        self.note_event(call, event(kind, actor, **data))

    def note_event(self, call: Held, item: TimelineEvent) -> None:
        call.incident.timeline.append(item)
        call.pending.append(item)

    def pend(self, call: Held, item: TimelineEvent) -> None:
        """``note`` for an event already on the timeline."""
        call.pending.append(item)

    async def record(self, call: Held, kind: str, actor: str = "gateway", state: IncidentState | None = None,
                     changes: dict[str, object] | None = None, extra: Sequence[Statement] = (),
                     with_event: Sequence[Statement] = (), **data: str | int | float | bool | None) -> None:
        """Add one event (and optional field changes) to the incident; durable on return."""
        await self.record_event(call, event(kind, actor, **data), state=state, changes=changes, extra=extra,
                                with_event=with_event)

    async def record_event(self, call: Held, item: TimelineEvent, *, state: IncidentState | None = None,
                           changes: dict[str, object] | None = None, extra: Sequence[Statement] = (),
                           with_event: Sequence[Statement] = ()) -> None:
        """``record`` for an event built by the caller. ``extra`` goes with this write; ``with_event``
        with the write that makes ``item`` durable (a later one, if this one fails)."""
        inc = call.incident
        if changes:
            for key, value in changes.items():
                setattr(inc, key, value)
        if state is not None:
            inc.state = state
        inc.timeline.append(item)
        if with_event:
            call.riders.append((item, list(with_event)))
        await self.commit(call, item, extra)

    async def commit(self, call: Held, item: TimelineEvent, extra: Sequence[Statement] = ()) -> None:
        """Make ``item`` (already on the timeline) durable, with every event noted before it."""
        call.incident.updated_wall = item.wall
        events, call.pending = [*call.pending, item], []
        await self._write(call, events, extra)

    def withdraw(self, call: Held, events: Sequence[TimelineEvent]) -> None:
        """Take back events whose write was refused for good (a scenario step of a run another node now
        executes, ``scenario.leases``): off the timeline in memory and never written later."""
        gone = {id(e) for e in events}
        call.pending = [e for e in call.pending if id(e) not in gone]
        call.incident.timeline = [e for e in call.incident.timeline if id(e) not in gone]

    async def flush(self, call: Held) -> None:
        """Write events noted (or left by a failed write) and not yet durable."""
        if call.pending:
            events, call.pending = call.pending, []
            await self._write(call, events)

    async def _write(self, call: Held, events: list[TimelineEvent], extra: Sequence[Statement] = ()) -> None:
        try:
            await self.append(call, events, extra)
        except StoreError:
            # Still on the timeline in memory: written at their own places with the next write.
            call.pending = [*events, *call.pending]
            raise

    async def append(self, call: Held, events: list[TimelineEvent], extra: Sequence[Statement] = ()) -> None:
        """Persist ``events`` (already on the timeline). If the first write failed, the whole
        incident is written now: a disk hiccup at call arrival must not lose the record."""
        creating = not call.saved
        written = call.incident.timeline if creating else events
        riding = [r for r in call.riders if any(r[0] is e for e in written)]
        extra = [*(st for _, statements in riding for st in statements), *extra]
        head = head_of(call.incident) if self.merging else None
        if creating:
            again, call.create_tried = call.create_tried, True
            await self.store.create(call.incident, extra, again)
            call.saved = True
        else:
            await self.store.update(call.incident, events, extra)
        call.base = head
        call.riders = [r for r in call.riders if not any(r is done for done in riding)]
        if creating:
            self._created(call.incident)
        else:
            self._published(call.incident, events)

    def _published(self, incident: Incident, events: list[TimelineEvent]) -> None:
        """Tell live subscribers, and in-process listeners (escalation, bots) of each event just made
        durable: the timeline's last event may be another task's, written meanwhile."""
        self.bus.publish(summary(incident))
        for item in events:
            for listener in self.listeners:
                listener(incident, item)

    def _created(self, incident: Incident) -> None:
        self._published(incident, list(incident.timeline))
        for listener in self.created_listeners:
            listener(incident)
