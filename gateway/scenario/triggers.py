"""What starts, switches and stops scenarios, watching every durable incident change.

- A category becoming known (IVR choice, dispatcher, a report that came with one) starts its
  scenario; a later change switches to the new category's scenario.
- An incident reported outside a call starts at once ("unclassified" when nobody classified it);
  a call nobody classified within ``unclassified_after_s`` starts "unclassified".
- A call not answered by a dispatcher within ``answer_sla_s`` records ``sla_breach`` and runs the
  SLA scenario (the shift supervisor), itself a scenario run of kind "sla".
- A response status change is told to the category's watchers (``category_watchers``) by a run
  of its own, as durable as any scenario.

The recorder calls ``on_change`` synchronously after each write; work is queued to a task so a
slow notification never delays call handling. Deadlines are kept in a heap; after a restart the
recent incidents are scanned so a deadline that passed while we were down still fires.
"""

from __future__ import annotations

import heapq
import logging
import math
import time

import msgspec
import trio

from gateway.errors import GatewayError
from gateway.incident.records import Incident, TimelineEvent
from gateway.scenario.engine import Engine
from gateway.scenario.notifier import Notifier
from gateway.settings import LINE_1402

log = logging.getLogger(__name__)
CATEGORY_EVENTS = frozenset({"ivr_category", "category_changed"})
WAITING_STATES = frozenset({"new", "queued", "ringing"})
SCAN_BACK_S = 3600.0
SCAN_MAX = 5000
STALE_CALL_S = 300.0  # a call "waiting" longer than this across a restart is gone, not waiting


class TriggerSettings(msgspec.Struct, frozen=True, kw_only=True):
    answer_sla_s: float = 15.0
    unclassified_after_s: float = 60.0
    sla_scenario: str = "answer_sla"
    start_on_ivr_category: bool = True


class Triggers:
    def __init__(self, engine: Engine, notifier: Notifier, settings: TriggerSettings | None = None) -> None:
        self.engine = engine
        self.notifier = notifier
        self.settings = settings or TriggerSettings()
        self._send, self._receive = trio.open_memory_channel[tuple[str, Incident, TimelineEvent]](math.inf)
        self._deadlines: list[tuple[float, str, str]] = []  # (Trio time, kind "answer"|"classify", incident id)
        # The deadlines still to act on, (kind, incident id) -> Trio time: one an answer or a category made moot
        # leaves it, so its turn in the heap costs no incident load (the incident is long out of memory by then).
        self._due: dict[tuple[str, str], float] = {}
        self._new_deadline = trio.Event()
        self._waiting_until = math.inf  # the deadline ``_deadline_loop`` sleeps until
        self.breaches = 0

    def on_change(self, incident: Incident, last: TimelineEvent) -> None:
        """Recorder listener: called after every durable incident write, must not block."""
        if last.kind in CATEGORY_EVENTS or last.kind in ("status_changed", "answered"):
            self._send.send_nowait((last.kind, incident, last))

    def on_created(self, incident: Incident) -> None:
        self._send.send_nowait(("created", incident, incident.timeline[-1] if incident.timeline else
                                TimelineEvent(kind="created", wall=incident.created_wall, mono=0.0)))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.engine.recorder.listeners.append(self.on_change)
        self.engine.recorder.created_listeners.append(self.on_created)
        try:
            async with trio.open_nursery() as nursery:
                await self._scan_recent()
                nursery.start_soon(self._deadline_loop)
                task_status.started()
                async for what, incident, last in self._receive:
                    try:
                        await self._handle(what, incident, last)
                    except GatewayError as exc:
                        log.error("escalation trigger %s on %s failed: %s", what, incident.id, exc)
                    except Exception:  # one odd incident must not stop the triggers of all the others
                        log.exception("escalation trigger %s on %s crashed", what, incident.id)
        finally:
            self.engine.recorder.listeners.remove(self.on_change)
            self.engine.recorder.created_listeners.remove(self.on_created)

    async def _handle(self, what: str, incident: Incident, last: TimelineEvent) -> None:
        if what == "created":
            await self._created(incident)
        elif what == "ivr_category" and not self.settings.start_on_ivr_category:
            return  # waits for a dispatcher's classification (or the unclassified deadline)
        elif what in CATEGORY_EVENTS:
            category = str(last.data.get("category") or incident.category)
            if category:
                self._due.pop(("classify", incident.id), None)
            await self._classified(incident, category, reason=what, actor=last.actor)
        elif what == "answered":  # a dispatcher has the caller: the supervisor need not be chased further
            self._due.pop(("answer", incident.id), None)
            await self.engine.stop(incident.id, "sla", "call answered")
        elif what == "status_changed":
            status = str(last.data.get("status", incident.status))
            if status == "closed":
                for kind in ("category", "sla"):
                    await self.engine.stop(incident.id, kind, "incident closed")  # type: ignore[arg-type]
            await self.engine.tell_watchers(incident, status)

    async def _created(self, incident: Incident) -> None:
        if incident.source == "call":
            now = time.time()
            if incident.state in WAITING_STATES and now - incident.created_wall < STALE_CALL_S:
                self._schedule(incident.created_wall + self.settings.answer_sla_s, "answer", incident.id)
            if not incident.category:
                self._schedule(max(now, incident.created_wall + self.settings.unclassified_after_s), "classify",
                               incident.id)
                return
        await self._classified(incident, incident.category or "unclassified", reason="reported",
                               actor=incident.source)

    async def _classified(self, incident: Incident, category: str, *, reason: str, actor: str) -> None:
        if incident.status == "closed":
            return  # closed before anyone classified it (or before the deadline): nothing to run
        known = self.engine.catalogue.categories.get(category)
        scenario = self.engine.catalogue.scenario_for(category).name
        await self.engine.start(incident, "category", scenario, category if known else "unclassified",
                                reason=reason, by=actor)
        if reason in ("reported", "ivr_category", "classify"):
            await self.engine.tell_watchers(incident, "new")

    def _schedule(self, wall: float, kind: str, incident_id: str) -> None:
        """A deadline given as wall time (an incident's creation is), waited for on Trio's clock."""
        at = trio.current_time() + (wall - time.time())
        heapq.heappush(self._deadlines, (at, kind, incident_id))
        self._due[kind, incident_id] = at
        if at < self._waiting_until:  # a call's deadline comes after those of the calls before it
            self._new_deadline.set()

    def _earliest(self) -> float:
        """The earliest deadline still to act on; the moot ones before it are dropped (most calls are answered
        and classified long before their deadlines: the loop need not wake for each of them)."""
        while self._deadlines and self._due.get(self._deadlines[0][1:]) != self._deadlines[0][0]:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else math.inf

    async def _deadline_loop(self) -> None:
        while True:
            self._new_deadline = trio.Event()
            self._waiting_until = self._earliest()
            with trio.move_on_at(self._waiting_until):
                await self._new_deadline.wait()
            while self._earliest() <= trio.current_time():  # moot ones (answered, classified, moved) dropped
                due, kind, incident_id = heapq.heappop(self._deadlines)
                del self._due[kind, incident_id]
                try:
                    await self._deadline(due, kind, incident_id)
                except GatewayError as exc:
                    log.error("escalation %s deadline on %s failed: %s", kind, incident_id, exc)

    async def _deadline(self, due: float, kind: str, incident_id: str) -> None:
        incident = await self.engine.incident(incident_id)
        if kind == "classify":
            if not incident.category and f"{incident_id}/category" not in self.engine.runs:
                await self._classified(incident, "unclassified", reason="classify", actor="gateway")
            return
        if incident.state not in WAITING_STATES or incident.answer_s is not None:
            return
        if f"{incident_id}/sla" in self.engine.runs:
            return
        if incident.service != LINE_1402:  # the board's breaches are 102/112's: 1402 waits behind them by design
            self.breaches += 1
        waited = round(self.settings.answer_sla_s + trio.current_time() - due, 1)  # due: created + threshold
        await self.engine.start(incident, "sla", self.settings.sla_scenario, incident.category,
                                reason="sla_breach", waited_s=waited, threshold_s=self.settings.answer_sla_s)

    async def _scan_recent(self) -> None:
        """After a restart: calls still waiting and unclassified calls get their deadlines back."""
        since = time.time() - SCAN_BACK_S
        open_ids = await self.engine.store.open_since(since, SCAN_MAX)
        started = await self.engine.run_store.incidents_with_runs(open_ids)
        for incident_id in (i for i in open_ids if i not in started):
            try:
                incident = await self.engine.incident(incident_id)
            except GatewayError:
                continue
            if incident.status != "closed":
                await self._created(incident)
