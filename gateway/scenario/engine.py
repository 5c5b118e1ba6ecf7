"""Runs response scenarios: one Trio task per running scenario, all under one supervisor nursery.

Every step, notification, acknowledgement and timeout is a timeline event on the incident, and the
run's progress (``machine.Run``) is written in the same transaction as that event. A restarted
gateway loads every unfinished run and continues it: a run waiting for acknowledgement sleeps until
its stored deadline (firing at once if it passed while we were down); a run that was sending
resends only to the people its last write does not show as reached.

With several nodes on one database, a node executes only the runs it holds a lease on
(``scenario.leases``): it renews them every ``lease_s / 3``, takes over the runs whose lease expired
(their node died) from their last committed write, looking every ``SCAN_S`` or as another node's lease
ends if sooner, and drops a run whose lease another node took; every write of a run's progress is
fenced, so a node that lost the lease commits no step.

Triggers (a category becoming known, a category change, the answer-time SLA) live in
``scenario.triggers``; acknowledgements arrive through ``acknowledge`` and its helpers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from gateway.errors import GatewayError, NotFound, StoreError
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Incident, TimelineEvent
from gateway.incident.store import AsyncStore, event
from gateway.scenario import facts as F
from gateway.scenario import machine as M
from gateway.scenario import reach
from gateway.scenario.catalogue import Catalogue
from gateway.scenario.leases import LEASE_S, LOCAL, LeaseLost, Leases
from gateway.scenario.model import Scenario
from gateway.scenario.notifier import Notifier
from gateway.scenario.people import Directory, Person
from gateway.scenario.reach import UnitBoard, Value
from gateway.scenario.runs import RunStore

log = logging.getLogger(__name__)
Drafter = Callable[[Incident, str], Awaitable[str]]  # (incident, warning event) -> draft alert id
RETRY_S = 1.0
SCAN_S = 1.0  # how often runs whose lease expired are looked for (at most lease_s / 3)


class Engine:
    def __init__(self, *, recorder: Recorder, catalogue: Catalogue, directory: Directory, notifier: Notifier,
                 zone_of: F.ZoneOf | None = None, board: UnitBoard | None = None, drafter: Drafter | None = None,
                 tz: str = "Asia/Almaty", node_id: str = LOCAL, lease_s: float = LEASE_S) -> None:
        from zoneinfo import ZoneInfo

        self.recorder = recorder
        self.store: AsyncStore = recorder.store
        self.run_store = RunStore(recorder.store)
        self.leases = Leases(recorder.store, node_id, lease_s)
        self.taken_over = 0  # runs resumed from another node's lease after it expired
        self.catalogue = catalogue
        self.directory = directory
        self.notifier = notifier
        self.zone_of = zone_of
        self.board = board
        self.drafter = drafter
        self.tz = ZoneInfo(tz)
        self.dynamic_people: dict[str, Callable[[Incident], list[Person]]] = {}
        self.runs: dict[str, M.Run] = {}
        self.tokens: dict[str, str] = {}  # ack token -> run key
        self._scopes: dict[str, trio.CancelScope] = {}
        self._wake: dict[str, trio.Event] = {}
        self._deadlines: dict[str, float] = {}  # run key -> its acknowledgement deadline on Trio's clock
        self.lateness_s: deque[float] = deque(maxlen=100_000)  # timer firing delay, for the benchmark
        self._nursery: trio.Nursery | None = None
        self._starting = trio.Lock()

    # --- supervisor ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume every unfinished run whose lease this node can take, then run new ones, keep the leases
        and take over expired ones until cancelled (leases are not given up: another node waits them out)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.leases.renew(())
            await self._take_over(own=True)  # this node's own leases too: a restart with the same node_id
            log.info("escalation: %d scenario runs resumed on node %s", len(self.runs), self.leases.node_id)
            nursery.start_soon(self._renew_leases)
            task_status.started()
            period = wait = min(SCAN_S, self.leases.lease_s / 3)
            while True:
                await trio.sleep(wait)
                wait = period
                try:
                    if taken := await self._take_over():
                        log.warning("escalation: %d scenario runs taken over (their lease expired)", taken)
                        self.taken_over += taken
                    wait = await self.leases.next_look_s(period)
                except GatewayError as exc:
                    log.error("escalation: looking for runs to take over failed: %s", exc)

    async def _take_over(self, own: bool = False) -> int:
        """Claim the unfinished runs nobody (alive) holds and resume them from their stored state."""
        found = await self.run_store.claimable(time.time(), self.leases.node_id if own else "")
        keys = [k for k in found if k not in self.runs]
        taken = await self.leases.claim(keys)
        adopted = 0
        async with self._starting:  # a run being started here is adopted by its starter
            for key in sorted(taken):
                run = None if key in self.runs else await self.run_store.get(key)
                if run is not None and run.phase != "done" and (
                        found[key] in ("", self.leases.node_id) or await self._note_takeover(run, found[key])):
                    self._adopt(run)
                    adopted += 1
        return adopted

    async def _note_takeover(self, run: M.Run, dead: str) -> bool:
        """Note on the timeline that this node goes on with a run ``dead`` held. False: the run is lost."""
        try:
            await self._persist(run, "scenario_taken_over", actor=f"node:{self.leases.node_id}",
                                previous_node=dead, node=self.leases.node_id, step=run.pc + 1, phase=run.phase)
        except LeaseLost:
            return False
        except GatewayError as exc:  # the run goes on: only the note is missing
            log.error("escalation %s: taken over from node %s, not noted: %s", run.key, dead, exc)
        return True

    async def _renew_leases(self) -> None:
        while True:
            await trio.sleep(self.leases.lease_s / 3)
            running = dict(self.runs)  # before renewing: a run adopted meanwhile was claimed after it
            try:
                held = await self.leases.renew(running)
            except GatewayError as exc:
                log.error("escalation: leases not renewed: %s", exc)
                continue
            for key, run in running.items():
                if key not in held and self.runs.get(key) is run and run.phase != "done":
                    self._lose(key, "another node took its lease")

    def _lose(self, key: str, why: str) -> None:
        """Stop executing a run another node holds: its last committed write stands, that node goes on."""
        log.warning("escalation %s: %s; no longer run on node %s", key, why, self.leases.node_id)
        self._scopes.pop(key, trio.CancelScope()).cancel()
        run = self.runs.pop(key, None)
        if run is not None:
            self._forget_tokens(run)
        self._wake.pop(key, None)
        self._deadlines.pop(key, None)

    def _adopt(self, run: M.Run) -> None:
        assert self._nursery is not None, "engine not running"
        old = self.runs.get(run.key)
        if old is not None:
            self._forget_tokens(old)
        self.runs[run.key] = run
        self._deadlines.pop(run.key, None)  # a new or switched run: its deadline is read from it
        for target in run.targets:
            self.tokens[target.token] = run.key
        scope = trio.CancelScope()
        self._scopes[run.key] = scope
        self._nursery.start_soon(self._drive, run, scope)

    def scenario(self, name: str) -> Scenario | None:
        """A configured scenario, or the built-in one telling a category's watchers."""
        if name.startswith(M.WATCH_PREFIX):
            category = name[len(M.WATCH_PREFIX):]
            roles = [*self.directory.watchers.get("*", []), *self.directory.watchers.get(category, [])]
            return M.watch_scenario(category, roles)
        return self.catalogue.scenarios.get(name)

    async def runs_of(self, incident_id: str) -> list[M.Run]:
        """Every run of an incident, finished or not, as last written."""
        return await self.run_store.of_incident(incident_id)

    def _forget_tokens(self, run: M.Run) -> None:
        for target in run.targets:
            self.tokens.pop(target.token, None)

    async def tell_watchers(self, incident: Incident, status: str) -> None:
        """A durable run telling the category's watchers of a status change (one run per status)."""
        category = incident.category or "unclassified"
        if self.directory.watchers_of(category):
            await self.start(incident, "status", M.WATCH_PREFIX + category, category, reason="status_changed",
                             status=status)

    async def start(self, incident: Incident, kind: M.RunKind, scenario: str, category: str,
                    reason: str, **data: Value) -> None:
        """Start (or, for a different scenario, replace) the run of ``kind`` on an incident."""
        async with self._starting:  # two triggers at once (IVR choice, classification deadline) make one run
            await self._start(incident, kind, scenario, category, reason, **data)

    async def _start(self, incident: Incident, kind: M.RunKind, scenario: str, category: str,
                     reason: str, **data: Value) -> None:
        status = str(data.get("status", "")) if kind == "status" else ""
        key = f"{incident.id}/{kind}" + (f":{status}" if status else "")
        old = self.runs.get(key) or await self.run_store.get(key)
        if old is not None and old.scenario == scenario and old.category == category:
            return  # already running it (or it ran to its end): a repeated trigger changes nothing
        if old is not None:
            self._scopes.pop(key, trio.CancelScope()).cancel()
            run = M.switch(old, scenario, category)
        else:
            run = M.Run(key=key, incident_id=incident.id, kind=kind, scenario=scenario, category=category,
                        status=status)
        run.started_wall = time.time()
        fields: dict[str, Value] = {"scenario": scenario, "category": category, "reason": reason, **data}
        if old is not None:
            fields |= {"previous": old.scenario, "previous_step": old.pc + 1}
        await self._persist(run, "scenario_switched" if old is not None else "scenario_started", fields=fields,
                            claim=True)
        self._adopt(run)

    async def stop(self, incident_id: str, kind: M.RunKind, reason: str) -> None:
        run = self.runs.get(f"{incident_id}/{kind}")
        if run is None or run.phase == "done":
            return
        self._scopes.pop(run.key, trio.CancelScope()).cancel()
        self._forget_tokens(run)
        run.phase, run.outcome = "done", reason
        await self._persist(run, "scenario_stopped", scenario=run.scenario, reason=reason)

    # --- one run -------------------------------------------------------------------------------

    async def _drive(self, run: M.Run, scope: trio.CancelScope) -> None:
        with scope:
            held = await self._hold(run)  # kept loaded while the run lives: no store read per step
            try:
                while held is not None and run.phase != "done" and self.runs.get(run.key) is run:
                    if not await self._step_guarded(run):
                        return
            finally:
                if held is not None:
                    self.recorder.release(held)
                self._forget_tokens(run)
                if self._scopes.get(run.key) is scope:
                    del self._scopes[run.key]
                if self.runs.get(run.key) is run:  # not replaced by a switch: its key is ours to clear
                    self._wake.pop(run.key, None)
                    self._deadlines.pop(run.key, None)
                    if run.phase == "done" or run.outcome:
                        del self.runs[run.key]  # finished runs live on in the store (``runs_of``)

    async def _hold(self, run: M.Run) -> Held | None:
        while True:
            try:
                return await self.recorder.acquire(run.incident_id)
            except NotFound:
                await self._retire(run, "incident vanished")
                return None
            except GatewayError as exc:
                log.error("escalation %s: %s; retrying in %.0f s", run.key, exc, RETRY_S)
                await trio.sleep(RETRY_S)

    async def _retire(self, run: M.Run, why: str) -> None:
        """End a run that has no incident to write on: only its own row records the end."""
        log.error("escalation %s: %s; run stopped", run.key, why)
        run.phase, run.outcome = "done", why
        try:
            await self.run_store.write(run, [*self.leases.fence(run.key), self.leases.end_statement(run.key)])
        except GatewayError as exc:
            log.error("escalation %s: could not record its end: %s", run.key, exc)

    async def _step_guarded(self, run: M.Run) -> bool:
        """One step; False when the run cannot go on. A store hiccup is retried; a bug in one run is
        logged and ends that run, never the supervisor (which would take 112 intake with it). No step
        starts while the leases are not fresh (renewals failing: another node may soon take the run)."""
        if not self.leases.fresh():
            await trio.sleep(RETRY_S / 10)
            return True
        try:
            await self._step(run)
        except LeaseLost:
            return False
        except NotFound:
            await self._retire(run, "incident vanished")
            return False
        except GatewayError as exc:
            log.error("escalation %s: %s; retrying in %.0f s", run.key, exc, RETRY_S)
            await trio.sleep(RETRY_S)
        except Exception as exc:
            log.exception("escalation %s: run failed at step %d", run.key, run.pc + 1)
            run.phase, run.outcome = "done", f"failed: {type(exc).__name__}"
            with trio.move_on_after(5):
                try:
                    await self._persist(run, "scenario_failed", step=run.pc + 1,
                                        error=f"{type(exc).__name__}: {exc}"[:300])
                except GatewayError:
                    log.error("escalation %s: could not record the failure", run.key)
            return False
        return True

    async def _step(self, run: M.Run) -> None:
        scenario = self.scenario(run.scenario)
        if scenario is None:  # the configuration changed while this run was stored
            run.phase, run.outcome = "done", "scenario no longer configured"
            await self._persist(run, "scenario_finished", scenario=run.scenario, outcome=run.outcome)
            return
        if run.phase == "enter":
            await self._enter(run, scenario)
        elif run.phase == "effect":
            await self._draft(run, scenario)
        else:
            spec = M.current_spec(run, scenario, self.directory.tiers, self.directory.centres)
            if spec is None:  # the scenario file changed under a stored run: go on from the next step
                M.step_done(run, None)
                await self._persist(run, "step_abandoned", step=run.pc)
            elif run.phase == "sending":
                await self._send(run, spec)
            else:
                await self._wait(run, spec)

    async def _enter(self, run: M.Run, scenario: Any) -> None:
        incident = await self._incident(run)
        facts = F.condition_facts(incident, self.catalogue, zone_of=self.zone_of, tz=self.tz, now_wall=time.time())
        skipped: list[M.Skipped] = []
        self._forget_tokens(run)  # the previous step's notifications can no longer be acknowledged
        action = M.advance(run, scenario, facts, self.directory.tiers, self.directory.centres, skipped.append)
        notes: list[tuple[str, dict[str, Value]]] = [("step_skipped", {"step": s.step + 1, "do": s.what})
                                                     for s in skipped]
        match action:
            case M.Finished(outcome=outcome):
                await self._persist(run, "scenario_finished", notes, scenario=run.scenario, outcome=outcome)
            case M.Drafting(event=event):
                await self._persist(run, "step_started", notes, step=run.pc + 1, do="draft_warning", event=event)
            case M.Notifying(spec=spec):
                run.targets = await reach.targets(self, incident, spec)
                for target in run.targets:
                    self.tokens[target.token] = run.key
                if not run.targets:
                    M.step_done(run, False if spec.ack != "none" else None)
                    await self._persist(run, "nobody_to_notify", notes, step=run.pc, do=spec.kind,
                                        roles=",".join(spec.roles), units=",".join(spec.units))
                    return
                await self._persist(run, "step_started", notes, step=run.pc + 1, do=spec.kind, ack=spec.ack,
                                    repeat=spec.repeat, timeout_s=spec.timeout_s, centre=spec.centre or None,
                                    people=",".join(sorted({t.person for t in run.targets})),
                                    units=",".join(sorted({t.unit for t in run.targets if t.unit})) or None)

    async def _send(self, run: M.Run, spec: M.Spec) -> None:
        if run.attempt == 0 or not M.due(run):
            M.start_attempt(run)
        incident = await self._incident(run)
        due = M.due(run)
        notes: list[tuple[str, dict[str, Value]]] = []
        async with trio.open_nursery() as nursery:
            for target in due:
                nursery.start_soon(reach.notify_one, self, run, spec, incident, target, notes)
        for target in due:
            target.sent = run.attempt
        if spec.ack == "none" or M.satisfied(run, spec.ack):
            M.step_done(run, None if spec.ack == "none" else True)
            await self._persist(run, "step_done", notes, step=run.pc, acknowledged=spec.ack != "none")
            return
        run.phase = "waiting"
        self._set_deadline(run, spec.timeout_s)
        await self._persist(run, "awaiting_ack", notes, step=run.pc + 1, attempt=run.attempt, of=spec.repeat,
                            ack=spec.ack, deadline=round(run.deadline_wall, 3))

    async def _wait(self, run: M.Run, spec: M.Spec) -> None:
        if not M.satisfied(run, spec.ack):  # an acknowledgement may have come while we were writing
            wake = self._wake.setdefault(run.key, trio.Event())
            with trio.move_on_at(self._deadline(run)):
                await wake.wait()
            self._wake.pop(run.key, None)
        if M.satisfied(run, spec.ack):
            M.step_done(run, True)
            await self._persist(run, "step_done", step=run.pc, acknowledged=True)
            return
        now, deadline = trio.current_time(), self._deadline(run)
        if now < deadline:
            return  # woken by an acknowledgement that does not satisfy "each" yet
        self.lateness_s.append(now - deadline)
        if M.after_deadline(run, spec) == "again":
            run.phase = "sending"
            M.start_attempt(run)
            await self._persist(run, "ack_timeout", step=run.pc + 1, attempt=run.attempt - 1, next_attempt=run.attempt)
            return
        M.step_done(run, False)
        await self._persist(run, "ack_timeout", step=run.pc, attempt=run.attempt, gave_up=True)

    def _set_deadline(self, run: M.Run, timeout_s: float) -> None:
        """Stored as wall time (it must survive a restart), waited for on Trio's clock."""
        run.deadline_wall = time.time() + timeout_s
        self._deadlines[run.key] = trio.current_time() + timeout_s

    def _deadline(self, run: M.Run) -> float:
        """The run's deadline on Trio's clock; a run loaded from the store converts its wall time once
        (one that passed while the gateway was down is due at once)."""
        at = self._deadlines.get(run.key)
        if at is None:
            at = self._deadlines[run.key] = trio.current_time() + (run.deadline_wall - time.time())
        return at

    async def _draft(self, run: M.Run, scenario: Any) -> None:
        incident = await self._incident(run)
        facts = F.condition_facts(incident, self.catalogue, zone_of=self.zone_of, tz=self.tz, now_wall=time.time())
        step = scenario.steps[run.pc]
        event = getattr(step, "event", "") or facts.warning_event
        M.step_done(run, None)
        if self.drafter is None or not event:
            await self._persist(run, "warning_not_drafted", event=event or None,
                                reason="public warnings are not enabled" if self.drafter is None else
                                "the category names no warning event")
            return
        try:
            alert_id = await self.drafter(incident, event)
        except GatewayError as exc:
            await self._persist(run, "warning_not_drafted", event=event, reason=str(exc)[:300])
            return
        await self._persist(run, "warning_drafted", event=event, alert=alert_id)

    # --- acknowledgements ----------------------------------------------------------------------

    async def acknowledge(self, token: str, *, by: str, via: str) -> str:
        """Acknowledge one notification. Returns "acknowledged", "already", "unknown", or "unit_busy" (a
        crew member whose unit cannot take the incident: no acknowledgement)."""
        key = self.tokens.get(token)
        run = self.runs.get(key) if key else None
        if run is None or run.phase not in ("sending", "waiting"):
            return "unknown"
        waiting = self.target(token)
        if waiting is None or waiting.acked_wall is not None:
            return "already"
        if not await reach.unit_ack(self.board, waiting, run.incident_id):
            await self._persist(run, "unit_unavailable", actor=by, person=waiting.person, unit=waiting.unit, via=via)
            return "unit_busy"
        target = M.acknowledge(run, token, by, via, time.time())
        if target is None or self.runs.get(run.key) is not run:
            return "already"
        await self._persist(run, "acknowledged", actor=by, person=target.person, via=via,
                            unit=target.unit or None, step=run.pc + 1, attempt=run.attempt)
        wake = self._wake.get(run.key)
        if wake is not None:
            wake.set()
        return "acknowledged"

    def target(self, token: str) -> M.Target | None:
        """The notification a token belongs to, while its run waits for it."""
        run = self.runs.get(self.tokens.get(token, ""))
        return next((t for t in run.targets if t.token == token), None) if run is not None else None

    def outstanding(self, people: set[str]) -> list[M.Target]:
        """Unacknowledged notifications to these people, newest step first."""
        found: list[tuple[float, M.Target]] = []
        for run in self.runs.values():
            if run.phase in ("sending", "waiting"):
                found += [(run.deadline_wall, t) for t in run.targets
                          if t.person in people and t.acked_wall is None and t.sent]
        return [t for _, t in sorted(found, key=lambda x: -x[0])]

    # --- durability ----------------------------------------------------------------------------

    async def _incident(self, run: M.Run) -> Incident:
        return await self.incident(run.incident_id)

    async def incident(self, incident_id: str) -> Incident:
        held = self.recorder.live.get(incident_id)
        return held.incident if held is not None else await self.store.get(incident_id)

    async def note(self, incident_id: str, kind: str, **data: Value) -> None:
        """A timeline event outside any run (status notifications)."""
        held = await self.recorder.acquire(incident_id)
        try:
            await self.recorder.record_event(held, stamped(kind, "escalation", data))
        finally:
            self.recorder.release(held)

    async def _persist(self, run: M.Run, kind: str, notes: list[tuple[str, dict[str, Value]]] | None = None, *,
                       actor: str = "", fields: Mapping[str, Value] | None = None, claim: bool = False,
                       **data: Value) -> None:
        """Write ``notes`` and ``kind`` on the incident's timeline together with the run's state, fenced by
        its lease (``claim``: taken in that transaction, for a run starting). Raises LeaseLost (the run is
        dropped and the events taken back) when another node holds it; StoreError."""
        statements = [*([self.leases.claim_statement(run.key)] if claim else []), *self.leases.fence(run.key),
                      self.run_store.row(run), *([self.leases.end_statement(run.key)] if run.phase == "done" else [])]
        held = await self.recorder.acquire(run.incident_id)
        try:
            who = actor or f"scenario:{run.scenario}"
            events = [stamped(note_kind, who, note) for note_kind, note in notes or []]
            for item in events:
                self.recorder.note_event(held, item)
            events.append(stamped(kind, who, {"run": run.kind, **(fields or {}), **data}))
            try:
                await self.recorder.record_event(held, events[-1], extra=statements)
            except StoreError:
                owner = await self.leases.owner(run.key)
                if owner == self.leases.node_id:
                    raise
                self.recorder.withdraw(held, events)
                self._lose(run.key, f"its lease is {owner or 'nobody'}'s")
                raise LeaseLost(f"scenario run {run.key} is {owner or 'nobody'}'s, not node "
                                f"{self.leases.node_id}'s: step not recorded") from None
        finally:
            self.recorder.release(held)


def stamped(kind: str, actor: str, data: Mapping[str, Value]) -> TimelineEvent:
    """A timeline event stamped now; None values are left out."""
    return event(kind, actor, **{k: v for k, v in data.items() if v is not None})
