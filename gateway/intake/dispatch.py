"""Hand-off of queued calls to dispatcher positions.

Theory of operation: calls wait in ``CallQueue``; whenever a call is queued or a position frees
up, ``run()`` pairs them. The gateway chooses; Asterisk connects: the caller is subscribed (so
its events keep coming after it leaves Stasis) and continued into ``ecgw-deliver,<position>``,
where a native ``Dial`` rings the phone and bridges the call. Dial events tell us ringing,
answer or failure. Unanswered, the dialplan sends the caller back into Stasis (``redial``) and
the call returns to its original place in the queue; a position that failed fast rests briefly.
A call still unanswered ``overflow_after_s`` after it was first queued goes to the backup centre.

Why native Dial rather than ARI originate + bridge: measured, ARI bridging cost Asterisk and the
gateway several times the CPU per call of the dialplan path, capping intake far below the
fallback dialplan's rate on the same machine.
"""

from __future__ import annotations

import logging

import trio

from gateway.asterisk.ari import Ari, ChannelGone
from gateway.errors import AriError
from gateway.incident.recorder import Recorder
from gateway.intake.call import Call
from gateway.intake.queue import CallQueue, PositionBoard, match
from gateway.metrics import Metrics
from gateway.protocols import ari_events as ev
from gateway.settings import DispatchConfig

log = logging.getLogger(__name__)
FAST_FAILURE_S = 2.0  # a ring that ends sooner than this never really rang: the phone is unreachable
REST_S = 5.0
DELIVER_CONTEXT = "ecgw-deliver"


class Dispatcher:
    """Owns the queue and the position board."""

    def __init__(self, cfg: DispatchConfig, recorder: Recorder, metrics: Metrics) -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.metrics = metrics
        self.queue = CallQueue()
        self.board = PositionBoard([p.name for p in cfg.positions])
        self.calls: dict[str, Call] = {}  # incident id -> call waiting, ringing or talking
        self._wake_send, self._wake = trio.open_memory_channel[None](1)
        self.ari: Ari | None = None
        self._nursery: trio.Nursery | None = None

    # --- driven by the intake -----------------------------------------------------------

    def enqueue(self, call: Call, priority: int) -> None:
        now = trio.current_time()
        if call.first_enqueued_mono is None:
            call.first_enqueued_mono = now
        call.enqueued_mono = call.enqueued_mono or now
        self.calls[call.id] = call
        self.queue.push(call.id, priority, call.enqueued_mono)
        self.metrics.queue_length.set(len(self.queue))
        self.kick()

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
            while True:
                now = trio.current_time()
                for incident_id, position in match(self.queue, self.board, now):
                    call = self.calls[incident_id]
                    call.ring_position = position  # held from now: release() and sweep() see it
                    nursery.start_soon(self._deliver, call, position)
                self.metrics.queue_length.set(len(self.queue))
                rest_end = self.board.next_rest_end(now)
                with trio.move_on_after(rest_end - now if rest_end else float("inf")):
                    await self._wake.receive()

    def watch_overflow(self, call: Call) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._overflow_after, call)

    # --- ringing positions --------------------------------------------------------------

    async def _deliver(self, call: Call, position: str) -> None:
        assert self.ari is not None
        call.hold_scope.cancel()  # no ringback/announcement REST calls racing with the hand-off
        call.ring_started_mono, call.delivering = trio.current_time(), True
        if call.gone:  # hung up between matching and now
            self._position_done(call, position, rest=False)
            return
        self.recorder.note(call.held, "position_dialled", position=position)
        try:
            if not call.subscribed:
                await self.ari.subscribe(call.channel_id)
                call.subscribed = True
            await self.ari.continue_in_dialplan(call.channel_id, DELIVER_CONTEXT, position)
            if call.gone:  # released while we handed it off: nothing will free the position later
                self._position_done(call, position, rest=False)
        except ChannelGone:
            self._position_done(call, position, rest=False)  # the caller hung up meanwhile
        except AriError as exc:
            log.error("incident %s: cannot hand the call to %s: %s", call.id, position, exc)
            call.delivering = False
            self._position_done(call, position, rest=True)
            call.ring_position = None
            if not call.gone:
                self.queue.push(call.id, call.incident.priority, call.enqueued_mono or trio.current_time())
                assert self._nursery is not None
                self._nursery.start_soon(self._rehold, call)

    async def _rehold(self, call: Call) -> None:
        # The hand-off failed with the caller still in Stasis: ringback again while waiting.
        assert self.ari is not None
        call.hold_scope = trio.CancelScope()
        with call.hold_scope:
            await self.ari.ring(call.channel_id)

    def on_dial(self, call: Call, event: ev.Dial) -> None:
        """Dial progress of a caller handed to a position."""
        position = call.ring_position
        if position is None:
            return
        assert self._nursery is not None
        if event.dialstatus == "RINGING":
            self._nursery.start_soon(self._ringing, call, position)
        elif event.dialstatus == "ANSWER":
            self._answered(call, position)
        elif event.dialstatus not in ("", "PROGRESS", "PROCEEDING"):
            self._unanswered(call, position, event.dialstatus)

    async def _ringing(self, call: Call, position: str) -> None:
        if call.ring_started_mono is not None:
            self.metrics.ring_latency.observe(trio.current_time() - call.ring_started_mono)
        await self.recorder.record(call.held, "ringing", position=position, state="ringing")

    def _answered(self, call: Call, position: str) -> None:
        self.board.set(position, "busy")
        call.answered.set()
        now = trio.current_time()
        wait = now - (call.first_enqueued_mono or now)
        self.metrics.answered.labels(position).inc()
        self.metrics.queue_wait.observe(wait)
        assert self._nursery is not None
        self._nursery.start_soon(lambda: self.recorder.record(
            call.held, "answered", actor=position, state="answered", position=position,
            changes={"position": position, "queue_wait_s": round(wait, 3),
                     "answer_s": round(now - call.arrived_mono, 3)}))

    def _unanswered(self, call: Call, position: str, status: str) -> None:
        quick = trio.current_time() - (call.ring_started_mono or 0.0) < FAST_FAILURE_S
        self._position_done(call, position, rest=quick)
        call.ring_position = None
        assert self._nursery is not None
        self._nursery.start_soon(lambda: self.recorder.record(
            call.held, "position_unanswered", position=position, status=status[:20],
            state="queued" if call.incident.state == "ringing" else None))

    def _position_done(self, call: Call, position: str, rest: bool) -> None:
        if self.board.state(position) != "free" and (call.ring_position == position or call.gone):
            self.board.set(position, "free")
            if rest:
                self.board.rest(position, trio.current_time() + REST_S)
        self.kick()

    def returned(self, call: Call) -> None:
        """The caller came back into Stasis from an unanswered Dial."""
        call.delivering = False
        if call.ring_position is not None:  # its Dial result event was missed
            self._position_done(call, call.ring_position, rest=False)
            call.ring_position = None

    # --- overflow and clean-up ----------------------------------------------------------

    def overflow_due(self, call: Call) -> bool:
        started = call.first_enqueued_mono
        return started is not None and trio.current_time() >= started + self.cfg.overflow_after_s

    async def _overflow_after(self, call: Call) -> None:
        started = call.first_enqueued_mono or trio.current_time()
        await trio.sleep_until(started + self.cfg.overflow_after_s)
        if call.gone or call.answered.is_set() or call.delivering:
            return  # a ringing call overflows when its Dial comes back unanswered
        await self.overflow(call)

    async def overflow(self, call: Call) -> None:
        """Send the caller to the backup centre through the dialplan."""
        assert self.ari is not None
        self.queue.remove(call.id)
        call.hold_scope.cancel()
        self.metrics.overflowed.inc()
        await self.recorder.record(call.held, "overflowed", state="overflowed", after_s=self.cfg.overflow_after_s)
        try:
            await self.ari.continue_in_dialplan(call.channel_id, "ecgw-emergency", "overflow")
        except AriError as exc:
            log.error("incident %s: overflow to the dialplan failed: %s", call.id, exc)

    def release(self, call: Call) -> None:
        """The caller is gone: forget the call and free its position."""
        call.gone = True
        self.queue.remove(call.id)
        self.calls.pop(call.id, None)
        self.metrics.queue_length.set(len(self.queue))
        for position in {call.ring_position, call.incident.position} - {None, ""}:
            if position in self.board.snapshot() and self.board.state(position) != "free":
                self.board.set(position, "free")
        self.kick()

    def sweep(self) -> None:
        """Free positions marked ringing or busy for a call we no longer track (safety net for
        an event lost in a race); called by the intake's periodic reconciliation."""
        held = {c.ring_position for c in self.calls.values() if not c.gone}
        for position, state in self.board.snapshot().items():
            if state != "free" and position not in held:
                log.warning("position %s was %s for no tracked call: freeing it", position, state)
                self.board.set(position, "free")
        self.kick()

    def adopt_delivered(self, call: Call, position: str, answered: bool) -> None:
        """After a restart: this caller is already ringing or talking to ``position``."""
        call.delivering, call.subscribed, call.ring_position = True, True, position
        self.calls[call.id] = call
        if position in self.board.snapshot():
            self.board.set(position, "busy" if answered else "ringing")
        if answered:
            call.answered.set()
