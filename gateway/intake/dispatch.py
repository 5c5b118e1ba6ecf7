"""Hand-off of queued calls to dispatcher positions.

Theory of operation: calls wait in ``CallQueue``; whenever a call is queued or a position frees
up, ``run()`` pairs them. The gateway chooses; Asterisk connects: the caller is subscribed (so
its events keep coming after it leaves Stasis) and continued into ``ecgw-deliver,<position>``,
where a native ``Dial`` rings the phone and bridges the call. Dial events tell us ringing,
answer or failure. Unanswered, the dialplan sends the caller back into Stasis (``redial``) and
the call returns to its original place in the queue; a position that failed fast rests briefly.
A call still unanswered ``overflow_after_s`` after it was first queued goes to the backup centre.

Every change of a call goes through ``apply``: the call's state table (``intake.call_state``) says
what the event means and what to do; this module does it (queue, position board, hold, tasks).

Why native Dial rather than ARI originate + bridge: measured, ARI bridging cost Asterisk and the
gateway several times the CPU per call of the dialplan path, capping intake far below the
fallback dialplan's rate on the same machine.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from typing import Any

import trio

from gateway.asterisk.ari import Ari, ChannelGone, quietly
from gateway.errors import AriError, Conflict, GatewayError, StoreError
from gateway.incident.recorder import Recorder
from gateway.incident.records import IncidentState
from gateway.intake import call_state as cs
from gateway.intake.call import Call
from gateway.intake.queue import Borrowing, CallQueue, PositionBoard, line_of, match
from gateway.metrics import Metrics
from gateway.protocols import ari_events as ev
from gateway.settings import DispatchConfig

log = logging.getLogger(__name__)
REST_S = 5.0
DELIVER_CONTEXT = "ecgw-deliver"
NOT_YET = frozenset({"", "PROGRESS", "PROCEEDING"})  # Dial statuses that are no answer either way
# The incident's state after a Dial's progress, by the call's state when it is recorded (``_record_progress``);
# none for a call that is gone (its hang-up's record closes it) or handed to a position again.
_DIAL_STATES: dict[cs.State, IncidentState] = {cs.State.RINGING: "ringing", cs.State.TALKING: "answered",
                                               cs.State.UNANSWERED: "queued", cs.State.RETURNED: "queued",
                                               cs.State.QUEUED: "queued"}


class Dispatcher:
    """Owns the queue and the position board."""

    def __init__(self, cfg: DispatchConfig, recorder: Recorder, metrics: Metrics) -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.metrics = metrics
        self.queue = CallQueue()
        self.board = PositionBoard([p.name for p in cfg.positions], {p.name: p.group for p in cfg.positions})
        self.rule = Borrowing(cfg.emergency_may_use_1402, cfg.emergency_positions_take_1402)
        self.calls: dict[str, Call] = {}  # incident id -> call waiting, ringing or talking
        self.reserved: set[str] = set()  # positions held for something else than a queued call (a call-back)
        self._deadlines: list[tuple[float, str]] = []  # (when, incident id): overflow checks, a heap
        self._wake_send, self._wake = trio.open_memory_channel[None](1)
        self.ari: Ari | None = None
        self._nursery: trio.Nursery | None = None
        # Set by the intake: a call whose state table refused an event goes to the fallback dialplan.
        self.broken: Callable[[Call, GatewayError], None] = lambda call, exc: None
        # Set by the intake: Asterisk says the caller's channel is gone; no hang-up event may follow.
        self.gone: Callable[[Call], None] = lambda call: None

    # --- the one place a call changes ---------------------------------------------------

    def apply(self, call: Call, event: cs.Event) -> None:
        """Give the call an event and do what its state table says. Raises CallStateError (a bug:
        the intake then hands the caller to the fallback dialplan). The matching loop is woken only when
        a position or a place in the queue came free: most events change neither, and each wake-up is
        work for every call (measured: four of a call's five wake-ups matched nothing)."""
        wake = False
        for action in call.life.handle(event):
            match action:
                case cs.StopHold():
                    call.stop_hold()
                case cs.FreePosition(position=position, rest=rest):
                    wake |= self._free(position, rest)
                case cs.Requeue(at=at):
                    self.queue.push(call.id, call.incident.priority, at, line_of(call.incident.service))
                    wake = True
                case cs.Hold():
                    assert self._nursery is not None
                    self._nursery.start_soon(self._rehold, call)
                case cs.Dequeue():
                    self.queue.remove(call.id)
                    self.calls.pop(call.id, None)
                case cs.StopServing():
                    call.scope.cancel()
                    wake |= self._free(call.incident.position)  # as answered: it may predate this process
        self.metrics.queue_length.set(len(self.queue))
        if wake:
            self.kick()

    def _free(self, position: str | None, rest: bool = False) -> bool:
        """Mark ``position`` free (resting a while if ``rest``); True if it was not free already."""
        try:
            if not position or self.board.state(position) == "free":
                return False
        except KeyError:
            return False  # a position no longer configured (a call adopted after a config change)
        self.board.set(position, "free")
        if rest:
            self.board.rest(position, trio.current_time() + REST_S)
        return True

    # --- driven by the intake -----------------------------------------------------------

    def enqueue(self, call: Call, priority: int) -> None:
        """Into the queue, and matched there and then (as the loop would): a call that finds a position free
        leaves this ``HANDING_OFF`` (its hand-off under way), one that must wait ``QUEUED``."""
        now = trio.current_time()
        self.apply(call, cs.Queued(at=now))
        self.calls[call.id] = call
        self.queue.push(call.id, priority, call.life.queued_at if call.life.queued_at is not None else now,
                        line_of(call.incident.service))
        if self._nursery is None:
            self.kick()  # the loop is not running yet: it matches when it starts
            return
        self._match(now, self._nursery)
        self.metrics.queue_length.set(len(self.queue))

    def kick(self) -> None:
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass  # a wake-up is already pending

    async def run(self, ari: Ari, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Match calls to positions until cancelled. Hand-offs and overflow timers live here."""
        self.ari = ari
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await self._matching(nursery)
            finally:  # closing with the connection: a call queued from now (``enqueue``) starts no hand-off here
                self._nursery = None

    async def _matching(self, nursery: trio.Nursery) -> None:
        while True:
            now = trio.current_time()
            self._match(now, nursery)
            self._overflow_due(now, nursery)
            self.metrics.queue_length.set(len(self.queue))
            rest_end = self.board.next_rest_end(now)
            wake = min(rest_end or math.inf, self._deadlines[0][0] if self._deadlines else math.inf)
            with trio.move_on_after(wake - now):
                await self._wake.receive()

    def _match(self, now: float, nursery: trio.Nursery) -> None:
        """Pair waiting calls with free positions; each pair's hand-off starts in a task of its own."""
        for incident_id, position in match(self.queue, self.board, now, self.rule):
            call = self.calls[incident_id]
            try:
                self.apply(call, cs.Matched(position, at=now))  # held from now: a hang-up frees it
            except cs.CallStateError as exc:  # a bug must not stop matching for everyone else
                log.error("incident %s: not handed to %s: %s", call.id, position, exc)
                if self._free(position):
                    self.kick()  # matched again on the next pass
                self.broken(call, exc)
                continue
            nursery.start_soon(self._deliver, call, position)

    def watch_overflow(self, call: Call) -> None:
        """Overflow the call ``overflow_after_s`` after it was first queued, if it is still waiting then.
        One timer for every call (a heap the matching loop wakes for), not a task per call: a task sleeping
        that long kept each call's objects alive for two minutes after most had ended, and the garbage
        collector's full passes over them stalled every call for up to 0.1 s (measured at 50 calls/s)."""
        started = call.life.first_queued_at
        at = (started if started is not None else trio.current_time()) + self.cfg.overflow_after_s
        heapq.heappush(self._deadlines, (at, call.id))
        if self._deadlines[0] == (at, call.id):  # sooner than the loop's next wake-up
            self.kick()

    def _overflow_due(self, now: float, nursery: trio.Nursery) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, incident_id = heapq.heappop(self._deadlines)
            call = self.calls.get(incident_id)
            # Gone, talking or ringing: nothing (a ringing call overflows when its Dial comes back unanswered);
            # a later leg of the incident has a deadline of its own.
            if call is not None and call.life.state in cs.WAITING and self.overflow_due(call):
                nursery.start_soon(self.overflow, call)

    # --- ringing positions --------------------------------------------------------------

    async def _deliver(self, call: Call, position: str) -> None:
        assert self.ari is not None
        if call.life.gone:  # hung up between matching and now: the hang-up freed the position
            return
        self.recorder.note(call.held, "position_dialled", position=position)
        event: cs.Event = cs.HandedOff()
        try:
            if not call.subscribed:
                await self.ari.subscribe(call.channel_id)
                call.subscribed = True
            await self.ari.continue_in_dialplan(call.channel_id, DELIVER_CONTEXT, position)
        except ChannelGone:
            event = cs.HungUp()  # the caller hung up meanwhile; its events may lag
        except AriError as exc:
            log.error("incident %s: cannot hand the call to %s: %s", call.id, position, exc)
            event = cs.HandOffFailed()
        try:
            self.apply(call, event)
        except cs.CallStateError as exc:
            log.error("incident %s: %s", call.id, exc)
            self.broken(call, exc)
        if isinstance(event, cs.HungUp):
            self.gone(call)
        elif isinstance(event, cs.HandOffFailed):  # waiting again: what was noted for the ringing is written now
            try:
                await self.recorder.flush(call.held)
            except StoreError as exc:
                log.error("incident %s: not recorded yet: %s", call.id, exc)

    async def _rehold(self, call: Call) -> None:
        # The hand-off failed with the caller still in Stasis: ringback again while waiting.
        assert self.ari is not None
        with call.new_hold():
            await quietly(self.ari.ring(call.channel_id))

    def on_dial(self, call: Call, event: ev.Dial) -> None:
        """Dial progress of a caller handed to a position (late or raced results change nothing)."""
        before, position, now = call.life.state, call.life.position, trio.current_time()
        try:
            if event.dialstatus == "RINGING":
                self.apply(call, cs.Ringing())
            elif event.dialstatus == "ANSWER":
                self.apply(call, cs.Answered(at=now))
            elif event.dialstatus not in NOT_YET:
                self.apply(call, cs.Unanswered(event.dialstatus, at=now))
        except cs.CallStateError as exc:
            log.error("incident %s: Dial %s ignored: %s", call.id, event.dialstatus, exc)
            return
        if position is not None and before in cs.DIALLED:
            self._told(call, position, event.dialstatus, before)

    def _told(self, call: Call, position: str, status: str, before: cs.State) -> None:
        """Record what a Dial result did (the table accepted it)."""
        state = call.life.state
        if state is cs.State.RINGING:
            if call.life.ring_started_at is not None:
                self.metrics.ring_latency.observe(trio.current_time() - call.life.ring_started_at)
            self._record_soon(call, "ringing", position=position)
        elif state is cs.State.TALKING:
            self._answered(call, position)
        elif state is cs.State.UNANSWERED:
            self._record_soon(call, "position_unanswered", position=position, status=status[:20])

    def _record_soon(self, call: Call, kind: str, **fields: Any) -> None:
        """Record a Dial's progress from a task of its own: the next event must not wait for the disk."""
        assert self._nursery is not None
        self._nursery.start_soon(self._record_progress, call, kind, fields)

    async def _record_progress(self, call: Call, kind: str, fields: dict[str, Any]) -> None:
        """The incident's state is decided when the record is made, from the call's state then, not when Asterisk
        reported the progress: the tasks recording a call's Dial results and its hang-up run in any order when
        their events came together, and the last must leave the state the call is in (a hang-up's ``closed``
        stays; found by the failover drill: a ``position_unanswered`` made after the hang-up left it queued)."""
        await self._record(call, kind, {**fields, "state": _DIAL_STATES.get(call.life.state)})

    async def _record(self, call: Call, kind: str, fields: dict[str, Any]) -> None:
        """A failed write is logged, never raised into the dispatcher (its event stays pending and is
        written with the call's next one): a disk hiccup must not stop matching calls to positions."""
        try:
            await self.recorder.record(call.held, kind, **fields)
        except StoreError as exc:
            log.error("incident %s: %s not recorded yet: %s", call.id, kind, exc)

    def _answered(self, call: Call, position: str) -> None:
        self.board.set(position, "busy")
        now = trio.current_time()
        wait = now - (call.life.first_queued_at or now)
        self.metrics.answered.labels(position).inc()
        self.metrics.queue_wait.observe(wait)
        assert self._nursery is not None
        self._record_soon(call, "answered", actor=position, position=position,
                          changes={"position": position, "queue_wait_s": round(wait, 3),
                                   "answer_s": round(now - call.arrived_mono, 3)})

    def returned(self, call: Call) -> None:
        """The caller came back into Stasis from an unanswered Dial."""
        self.apply(call, cs.Returned())

    # --- overflow and clean-up ----------------------------------------------------------

    def overflow_due(self, call: Call) -> bool:
        started = call.life.first_queued_at
        return started is not None and trio.current_time() >= started + self.cfg.overflow_after_s

    async def overflow(self, call: Call) -> None:
        """Send the caller to the backup centre through the dialplan."""
        assert self.ari is not None
        self.apply(call, cs.Overflowed())
        self.metrics.overflowed.inc()
        await self._record(call, "overflowed", {"state": "overflowed", "after_s": self.cfg.overflow_after_s})
        try:
            await self.ari.continue_in_dialplan(call.channel_id, "ecgw-emergency", "overflow")
        except AriError as exc:
            log.error("incident %s: overflow to the dialplan failed: %s", call.id, exc)

    def release(self, call: Call) -> None:
        """The caller is gone: forget the call, free its position, stop its tasks."""
        self.apply(call, cs.HungUp())

    def failed_over(self, call: Call) -> None:
        """The caller is being handed to the fallback dialplan: it leaves the queue and its position."""
        self.apply(call, cs.FailedOver())

    def waiting_for(self, position: str) -> int:
        """How many waiting callers ``position`` could take (``queue.assign``'s rule: a 1402 caller does not
        keep a 102/112 position from a call-back, unless that position is lent to the 1402 line)."""
        group = self.board.group(position)
        takes = {"emergency": group == "emergency" or self.rule.emergency_may_use_1402,
                 "1402": group == "1402" or self.rule.emergency_positions_take_1402}
        return sum(n for line, n in self.queue.counts().items() if takes[line])

    def reserve(self, position: str, force: bool = False) -> None:
        """Hold ``position`` busy for a dispatcher's own call (a call-back): no queued call is handed to it.
        Raises Conflict when it is not free (``force``: take it anyway, after a reconnect), KeyError if unknown."""
        state = self.board.state(position)
        if state != "free" and not force:
            raise Conflict(f"position {position} is {state}, not free")
        self.board.set(position, "busy")
        self.reserved.add(position)

    def unreserve(self, position: str) -> None:
        """The reserved position is free again."""
        if position in self.reserved:
            self.reserved.discard(position)
            self._free(position)
            self.kick()

    def sweep(self) -> None:
        """Free positions marked ringing or busy for a call we no longer track (safety net for
        an event lost in a race); called by the intake's periodic reconciliation."""
        held = {c.life.position for c in self.calls.values() if not c.life.gone} | self.reserved
        for position, state in self.board.snapshot().items():
            if state != "free" and position not in held:
                log.warning("position %s was %s for no tracked call: freeing it", position, state)
                self.board.set(position, "free")
        self.kick()

    def adopt_delivered(self, call: Call, position: str, answered: bool) -> None:
        """After a restart: this caller is already ringing or talking to ``position``."""
        self.apply(call, cs.Adopted(position, answered, at=trio.current_time()))
        call.subscribed = True
        self.calls[call.id] = call
        if position in self.board.snapshot():
            self.board.set(position, "busy" if answered else "ringing")
