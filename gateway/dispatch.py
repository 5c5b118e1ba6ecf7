"""Hand-off of queued calls to dispatcher positions over ARI.

Theory of operation: calls wait in ``CallQueue``; whenever a call is queued or a position frees
up, ``run()`` pairs them and originates a leg to the position (``appArgs = position,<incident>``).
The leg rings (ChannelStateChange Ringing); when the dispatcher answers it enters Stasis and
is bridged with the caller. A leg that ends unanswered frees its position (rested briefly if it
failed fast) and puts the call back at its original place in the queue. A call still unanswered
``overflow_after_s`` after it was first queued is sent to the backup centre by the dialplan.
"""

from __future__ import annotations

import itertools
import logging

import trio

from gateway import ari_events as ev
from gateway.ari import Ari, quietly
from gateway.call import Call, Recorder
from gateway.callqueue import CallQueue, PositionBoard, match
from gateway.config import DispatchConfig
from gateway.errors import AriError
from gateway.metrics import Metrics
from gateway.records import IncidentState

log = logging.getLogger(__name__)
FAST_FAILURE_S = 2.0  # a leg gone sooner than this never really rang: the phone is unreachable
REST_S = 5.0


class Dispatcher:
    """Owns the queue, the position board and every position leg."""

    def __init__(self, cfg: DispatchConfig, recorder: Recorder, metrics: Metrics) -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.metrics = metrics
        self.queue = CallQueue()
        self.board = PositionBoard([p.name for p in cfg.positions])
        self.calls: dict[str, Call] = {}  # incident id -> call waiting or talking
        self.legs: dict[str, tuple[str, Call]] = {}  # position leg channel id -> (position, call)
        self._wake_send, self._wake = trio.open_memory_channel[None](1)
        self._seq = itertools.count(1)
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
        """Match calls to positions until cancelled. Legs and overflow timers live in this nursery."""
        self.ari = ari
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                now = trio.current_time()
                for incident_id, position in match(self.queue, self.board, now):
                    nursery.start_soon(self._ring, self.calls[incident_id], position)
                self.metrics.queue_length.set(len(self.queue))
                rest_end = self.board.next_rest_end(now)
                with trio.move_on_after(rest_end - now if rest_end else float("inf")):
                    await self._wake.receive()

    def watch_overflow(self, call: Call) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._overflow_after, call)

    # --- ringing positions --------------------------------------------------------------

    async def _ring(self, call: Call, position: str) -> None:
        assert self.ari is not None
        leg = f"{call.id}-{position}-{next(self._seq)}"
        self.legs[leg] = (position, call)
        call.ring_leg, call.ring_position, call.ring_started_mono = leg, position, trio.current_time()
        caller = call.incident.caller
        variables = {
            "ECGW_ROLE": "position", "ECGW_INCIDENT": call.id, "ECGW_POSITION": position,
            "PJSIP_HEADER(add,X-ECGW-Incident)": call.id,
            "PJSIP_HEADER(add,X-ECGW-Caller-Call-ID)": call.incident.call_id or "-",
        }
        caller_id = f'"{caller.display_name.replace(chr(34), "")}" <{caller.number or "anonymous"}>'
        try:
            await self.ari.originate(f"PJSIP/ecgw-pos-{position}", leg, f"position,{call.id},{position}",
                                     caller_id, max(1, int(self.cfg.ring_timeout_s)), variables)
        except AriError as exc:
            log.error("incident %s: cannot ring position %s: %s", call.id, position, exc)
            self._leg_ended(leg, cause=0, failed=True)
            return
        self.recorder.note(call, "position_dialled", position=position, leg=leg)

    def on_leg_event(self, event: ev.Event) -> None:
        """Events of position legs (routed here by the intake)."""
        chan = getattr(event, "channel", None)
        if chan is None or chan.id not in self.legs:
            return
        position, call = self.legs[chan.id]
        assert self._nursery is not None
        if isinstance(event, ev.ChannelStateChange) and chan.state == "Ringing":
            self._nursery.start_soon(self._ringing, call, position, chan.id)
        elif isinstance(event, ev.StasisStart):
            self._nursery.start_soon(self._answered, call, position, chan.id)
        elif isinstance(event, ev.ChannelDestroyed):
            self._leg_ended(chan.id, event.cause)

    async def _ringing(self, call: Call, position: str, leg: str) -> None:
        if call.ring_leg != leg:
            return
        if call.ring_started_mono is not None:
            self.metrics.ring_latency.observe(trio.current_time() - call.ring_started_mono)
        await self.recorder.record(call, "ringing", position=position, state="ringing")

    async def _answered(self, call: Call, position: str, leg: str) -> None:
        assert self.ari is not None
        if call.gone or call.ring_leg != leg:
            await quietly(self.ari.hangup(leg))  # answered too late: the caller is gone or served
            return
        self.queue.remove(call.id)
        call.ring_leg = call.ring_position = None
        call.position_leg = leg
        self.board.set(position, "busy")
        call.bridge_id = f"ecgw-{call.id}"
        now = trio.current_time()
        wait = now - (call.first_enqueued_mono or now)
        if call.playback:
            await quietly(self.ari.stop_playback(call.playback))
        try:
            await self.ari.create_bridge(call.bridge_id, call.bridge_id)
            await self.ari.add_to_bridge(call.bridge_id, [call.channel_id, leg])
        except AriError as exc:
            log.error("incident %s: cannot bridge caller with %s: %s", call.id, position, exc)
        call.answered.set()
        self.metrics.answered.labels(position).inc()
        self.metrics.queue_wait.observe(wait)
        await self.recorder.record(
            call, "answered", actor=position, state="answered", position=position,
            changes={"position": position, "queue_wait_s": round(wait, 3),
                     "answer_s": round(now - call.arrived_mono, 3)},
        )

    def _leg_ended(self, leg: str, cause: int, failed: bool = False) -> None:
        position, call = self.legs.pop(leg)
        now = trio.current_time()
        quick = failed or (call.ring_leg == leg and now - (call.ring_started_mono or now) < FAST_FAILURE_S)
        self.board.set(position, "free")
        if quick and not call.gone:
            self.board.rest(position, now + REST_S)
        if call.ring_leg == leg:  # never answered: back to its place in the queue
            call.ring_leg = call.ring_position = None
            if not call.gone and call.id in self.calls:
                self.queue.push(call.id, call.incident.priority, call.enqueued_mono or now)
            assert self._nursery is not None
            self._nursery.start_soon(self._note_unanswered, call, position, cause)
        elif call.position_leg == leg and not call.gone:  # the dispatcher hung up: end the call
            assert self._nursery is not None and self.ari is not None
            self._nursery.start_soon(quietly, self.ari.hangup(call.channel_id))
        self.kick()

    async def _note_unanswered(self, call: Call, position: str, cause: int) -> None:
        if not call.gone:
            state: IncidentState | None = "queued" if call.incident.state == "ringing" else None
            await self.recorder.record(call, "position_unanswered", position=position, cause=cause, state=state)

    # --- overflow and clean-up ----------------------------------------------------------

    async def _overflow_after(self, call: Call) -> None:
        assert self.ari is not None
        started = call.first_enqueued_mono or trio.current_time()
        await trio.sleep_until(started + self.cfg.overflow_after_s)
        if call.gone or call.answered.is_set():
            return
        self.queue.remove(call.id)
        if call.ring_leg:
            await quietly(self.ari.hangup(call.ring_leg))
        self.metrics.overflowed.inc()
        await self.recorder.record(call, "overflowed", state="overflowed", after_s=self.cfg.overflow_after_s)
        try:
            await self.ari.continue_in_dialplan(call.channel_id, "ecgw-emergency", "overflow")
        except AriError as exc:
            log.error("incident %s: overflow to the dialplan failed: %s", call.id, exc)

    def release(self, call: Call) -> None:
        """The caller is gone: forget the call and drop its position legs."""
        call.gone = True
        self.queue.remove(call.id)
        self.calls.pop(call.id, None)
        self.metrics.queue_length.set(len(self.queue))
        assert self._nursery is not None and self.ari is not None
        for leg in (call.ring_leg, call.position_leg):
            if leg:
                self._nursery.start_soon(quietly, self.ari.hangup(leg))
        if call.bridge_id:
            self._nursery.start_soon(quietly, self.ari.destroy_bridge(call.bridge_id))

    def adopt_leg(self, leg: str, position: str, call: Call, bridge_id: str) -> None:
        """After a restart: a dispatcher is already talking to this caller."""
        self.legs[leg] = (position, call)
        call.position_leg, call.bridge_id = leg, bridge_id
        call.answered.set()
        self.calls[call.id] = call
        if position in self.board.snapshot():
            self.board.set(position, "busy")
