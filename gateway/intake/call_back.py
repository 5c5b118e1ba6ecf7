"""Calling back callers who hung up before a dispatcher answered: the list, and a dispatcher's call-back.

Theory of operation: the list is the open rows of ``incident.callback_table`` (each written with its
call's ``hung_up`` event), merged and ordered by ``incident.callback_list`` (pure). A call-back rings
the dispatcher's position first (ARI originate into our app), and only once the dispatcher answers
dials the caller: the citizen is never rung for a position that is not there, and a caller who
answers hears a dispatcher at once, never silence or a machine. The answered position's channel is
sent to ``[ecgw-callback]``, whose native Dial calls the caller over the call-out trunk showing the
centre's number; its result is the outcome, recorded on every incident of the entry (the attempt
counted on its rows in the same write). ``answered`` takes the number off the list; busy, no answer,
failed, or a position that did not answer leave it there. While a call-back runs its position is
reserved on the dispatcher's board, so no queued caller is handed to it; a call-back is refused while
callers wait in the queue (live emergencies first).

Automatic call-back (``[callback] auto_after_s`` > 0): when no dispatcher is free to do it, the gateway
calls an entry nobody has tried yet, once, straight to the caller from the centre's number; a caller who
answers hears the ``callback`` prompt and is queued on their incident like an incoming call (the intake
serves the leg from then on, ``take_answered``); one who does not stays on the list for the dispatchers.

Every call-back is recorded like any call, into a file of its own on the incident (``[ecgw-callback]``
names it after the leg's channel id, ``callback-<hex>``): a dispatcher's from the moment the caller is
dialled, indexed at its ``callback_ended``; the gateway's own from the caller's answer.

A caller who calls again and is answered is reached too: once the answer is durable (a recorder
listener), each listed call of that number ``callback_list.called_again`` selects gets a
``callback_reached`` event, its row cleared in that same write (a row only ever changes with the event
telling of it, on its own incident: it cannot join the answering incident's write). The answer is never
held up by this; a crash in between is repaired at every ARI (re)connect (``_catch_up``).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence

import msgspec
import trio

from gateway.asterisk.ari import Ari, quietly
from gateway.errors import AriError, Conflict, GatewayError, InputError, NotFound, StoreError
from gateway.incident import callback_list as cl
from gateway.incident.callback_table import CallbackTable, attempted, reached_again
from gateway.incident.recorder import Recorder
from gateway.incident.recording_index import CALLBACK_CHANNEL, leg_stem
from gateway.incident.records import Incident, TimelineEvent
from gateway.incident.store import Statement, event
from gateway.intake.dispatch import Dispatcher
from gateway.protocols import ari_events as ev
from gateway.settings import GatewayConfig

log = logging.getLogger(__name__)
ROLE = "callback"  # the StasisStart argument of a call-back's position leg
AUTO_ROLE = "autocallback"  # ... and of an automatic call-back's caller leg
AUTO_EVERY_S = 2.0
LIST_FRESH_S = 1.0  # the list is read from the store at most this often (``CallBacks.entries``)
CONTEXT = "ecgw-callback"


class Attempt(msgspec.Struct, kw_only=True):
    """One call-back under way (the API's answer to ``POST /callbacks/{key}/call``)."""

    id: str  # the position leg's channel id
    number: str
    position: str
    incidents: list[str]
    actor: str
    started_wall: float
    outcome: cl.Outcome | None = None
    position_answered: bool = False
    auto: bool = False  # the gateway's own attempt: the caller is dialled directly and queued on answering


class CallBacks:
    """The call-back list and the call-backs running. Owned by the intake; attached to each ARI connection."""

    def __init__(self, cfg: GatewayConfig, table: CallbackTable, recorder: Recorder) -> None:
        self.cfg = cfg.callback
        self.recorded = cfg.recordings.enabled
        self.table = table
        self.recorder = recorder
        self._resolving = trio.Lock()  # one number at a time: a reached call gets one callback_reached
        recorder.listeners.append(self._on_change)
        self.running: dict[str, Attempt] = {}  # position leg channel id -> attempt
        self._listed: tuple[float, list[cl.Entry]] | None = None  # (when, the list then): ``entries``
        self._listing = trio.Lock()  # callers at once share one read
        self._changes = 0  # our own call-back events so far (each drops the copy)
        self.ari: Ari | None = None
        self.dispatcher: Dispatcher | None = None
        self._nursery: trio.Nursery | None = None

    def attach(self, ari: Ari | None, dispatcher: Dispatcher | None, nursery: trio.Nursery | None) -> None:
        """Use this ARI connection, board and nursery (None: Asterisk is away)."""
        self.ari, self.dispatcher, self._nursery = ari, dispatcher, nursery
        if dispatcher is not None and self.running:
            # Their events went with the old connection: forget them rather than hold a position busy for
            # ever (a queued caller handed to a position still on a call-back finds it busy and is requeued).
            log.warning("forgetting %d call-back(s) across an ARI reconnect; outcome not recorded", len(self.running))
            self.running.clear()
        if nursery is not None:
            nursery.start_soon(self._catch_up)

    async def entries(self, fresh: bool = False) -> list[cl.Entry]:
        """The list, in call-back order (abandoned within ``keep_s``, not yet reached). Raises StoreError.

        Read from the store at most every ``LIST_FRESH_S`` for all who ask (every dispatcher's console polls
        it, and the automatic call-back): in a surge, 20,000 open rows cost ~90 ms of CPU to read and merge
        (on the store's thread, ``CallbackTable.open_entries``, not Trio's). This node's own call-back events
        are seen at once (they drop the copy); ``fresh``: from the store now (a call-back about to ring
        somebody). A new abandoned call shows within ``LIST_FRESH_S``."""
        async with self._listing:
            if not fresh and self._listed is not None and trio.current_time() - self._listed[0] < LIST_FRESH_S:
                return self._listed[1]
            changes = self._changes
            listed = await self.table.open_entries(time.time() - self.cfg.keep_s)
            # kept only if none of our own events came meanwhile (the read may have begun before it)
            self._listed = (trio.current_time(), listed) if changes == self._changes else None
            return listed

    async def call(self, key: str, position: str, actor: str) -> Attempt:
        """Ring ``position``, then the caller of the entry ``key`` (number or incident id).

        Raises NotFound (no such entry), InputError (unknown position), Conflict (position not free,
        callers waiting, this number already being called back), AriError (Asterisk away or refusing;
        the refusal is on the incidents' timelines as a failed attempt). The entry stays listed on
        every error."""
        entry = cl.find(await self.entries(fresh=True), key)
        if entry is None:
            raise NotFound(f"nobody to call back under {key[:40]!r} (already reached, or never abandoned)")
        ari, dispatcher = self.ari, self.dispatcher
        if ari is None or dispatcher is None:
            raise AriError("Asterisk is not connected: call-backs are not possible now")
        if position not in dispatcher.board.snapshot():
            raise InputError(f"unknown position {position!r}")
        if any(a.number == entry.number for a in self.running.values()):
            raise Conflict(f"{entry.number} is already being called back")
        if waiting := dispatcher.waiting_for(position):
            raise Conflict(f"{waiting} caller(s) waiting in the queue for {position}: answer them first")
        dispatcher.reserve(position)  # raises Conflict when the position is not free
        attempt = Attempt(id=f"{CALLBACK_CHANNEL}{uuid.uuid4().hex[:16]}", number=entry.number, position=position,
                          incidents=entry.incidents, actor=actor, started_wall=time.time())
        self.running[attempt.id] = attempt
        try:
            await self._record(attempt, "callback_started", actor,
                               {"position": position, "number": entry.number, "attempt": attempt.id})
            await ari.originate(f"PJSIP/ecgw-pos-{position}", attempt.id,
                                timeout_s=max(1, math.ceil(self.cfg.position_ring_s)),
                                caller_id=f'"Call back" <{entry.number}>', app_args=f"{ROLE},{attempt.id}",
                                variables={"ECGW_CALLBACK_TO": entry.number,
                                           "ECGW_CALLBACK_INCIDENT": entry.incidents[0],
                                           # the position's phone knows which incident, as for every caller
                                           "PJSIP_HEADER(add,X-ECGW-Incident)": entry.incidents[0]})
        except GatewayError as exc:
            self._ended(attempt)  # the originate failed: no channel will ever tell us more
            if self._conclude(attempt, "failed"):
                await self._finish(attempt, reason=str(exc)[:200])
            raise
        return attempt

    def owns(self, channel_id: str) -> bool:
        return channel_id in self.running

    def on_event(self, event: ev.Event) -> None:
        """An ARI event of a call-back's position leg (the intake routes them here)."""
        attempt = self.running.get(ev.channel_id(event) or "")
        if attempt is None or self._nursery is None:
            return
        if isinstance(event, ev.StasisStart):
            attempt.position_answered = True
            self._nursery.start_soon(self._dial_caller, attempt)
        elif isinstance(event, ev.Dial):
            outcome = cl.outcome_of(event.dialstatus)
            if outcome is not None and self._conclude(attempt, outcome):
                self._nursery.start_soon(self._finish, attempt, event.dialstatus)
        elif isinstance(event, ev.ChannelDestroyed):
            self._ended(attempt)
            ended: cl.Outcome = "failed" if attempt.position_answered else "position_unanswered"
            if self._conclude(attempt, cl.outcome_of_cause(event.cause) if attempt.auto else ended):
                self._nursery.start_soon(self._finish, attempt, event.cause_txt[:40])
            if attempt.position_answered:  # its recording is complete now
                self._nursery.start_soon(self._ended_event, attempt)

    def take_answered(self, channel_id: str) -> Attempt | None:
        """The caller answered the gateway's automatic call-back: the outcome is recorded and the intake
        serves the leg as a call from now (None: not one of ours)."""
        attempt = self.running.pop(channel_id, None)
        if attempt is not None and self._nursery is not None and self._conclude(attempt, "answered"):
            self._nursery.start_soon(self._finish, attempt, "ANSWER")
        return attempt

    # --- automatic call-back ----------------------------------------------------------------

    async def run_auto(self) -> None:
        """Every few seconds, call back (once) whoever ``callback_list.auto_due`` selects. Runs in the
        intake's nursery of one ARI connection."""
        while True:
            await trio.sleep(AUTO_EVERY_S)
            ari, dispatcher = self.ari, self.dispatcher
            if ari is None or dispatcher is None:
                continue
            free = dispatcher.board.first_free(trio.current_time()) is not None
            try:
                listed = await self.entries()
            except StoreError as exc:
                log.warning("automatic call-back skipped: %s", exc)
                continue
            for entry in listed:
                calling = any(a.number == entry.number for a in self.running.values())
                if not calling and cl.auto_due(entry, time.time(), self.cfg.auto_after_s, free):
                    await self._auto(ari, entry)

    async def _auto(self, ari: Ari, entry: cl.Entry) -> None:
        """Dial the caller from the centre's number; answered, the leg enters our app as ``AUTO_ROLE``."""
        attempt = Attempt(id=f"{CALLBACK_CHANNEL}{uuid.uuid4().hex[:16]}", number=entry.number, position="",
                          incidents=entry.incidents, actor="gateway", started_wall=time.time(), auto=True)
        self.running[attempt.id] = attempt
        await self._record(attempt, "callback_started", "gateway",
                           {"number": entry.number, "attempt": attempt.id, "auto": True})
        scheme, host = self.cfg.trunk_uri.split(":", 1)
        try:
            await ari.originate(f"PJSIP/{self.cfg.endpoint}/{scheme}:{entry.number}@{host}", attempt.id,
                                timeout_s=max(1, math.ceil(self.cfg.caller_ring_s)), caller_id=self.cfg.caller_id,
                                app_args=f"{AUTO_ROLE},{attempt.id}",
                                variables={"ECGW_ROLE": "caller", "ECGW_INCIDENT": entry.incidents[0],
                                           "ECGW_SERVICE": entry.service})
        except GatewayError as exc:
            self.running.pop(attempt.id, None)
            if self._conclude(attempt, "failed"):
                await self._finish(attempt, reason=str(exc)[:200])

    # --- a caller who called again --------------------------------------------------------------

    def _on_change(self, incident: Incident, item: TimelineEvent) -> None:
        """A recorder listener: an answered call may reach a listed number (without a nursery, Asterisk is
        away; the catch-up at the next connect does it)."""
        if item.kind == "answered" and cl.diallable(incident.caller.number) and self._nursery is not None:
            self._nursery.start_soon(self.resolve, incident.caller.number)

    async def resolve(self, number: str) -> int:
        """Take off the list the calls of ``number`` a later answered call reached (``callback_reached`` on
        each, its row cleared in that write); returns how many. A store failure is logged: they stay listed."""
        async with self._resolving:
            try:
                rows = await self.table.open_rows_of(number)
                calls = await self.recorder.store.by_number(number, min(r.wall for r in rows)) if rows else []
            except StoreError as exc:
                log.error("call-back list: %s not checked for a later answered call: %s", number, exc)
                return 0
            answered = [cl.Answered(incident_id=c.id, number=c.number, created_wall=c.created_wall)
                        for c in calls if c.answer_s is not None]
            reached = cl.called_again(rows, answered)
            for listed, answered_as in reached.items():
                await self._note(listed, event("callback_reached", "gateway", how="called_again",
                                               answered_as=answered_as,
                                               note=f"reached: called again, answered as {answered_as}"),
                                 [reached_again(listed, time.time())])
            return len(reached)

    async def _catch_up(self) -> None:
        """Every listed number checked once: an answer whose ``callback_reached`` a crash or an absent
        Asterisk kept from being written."""
        try:
            listed = await self.entries()
        except StoreError as exc:
            log.error("call-back list: catch-up skipped: %s", exc)
            return
        for entry in listed:
            await self.resolve(entry.number)

    async def _ended_event(self, attempt: Attempt) -> None:
        """A dispatcher's call-back is over: ``callback_ended`` on its incident names its recording."""
        incident_id = attempt.incidents[0]
        stem = leg_stem(incident_id, attempt.id) if self.recorded else None
        await self._note(incident_id, event("callback_ended", attempt.position, attempt=attempt.id,
                                            outcome=attempt.outcome, recording=stem))

    async def _note(self, incident_id: str, item: TimelineEvent, rows: Sequence[Statement] = ()) -> None:
        """One event on one incident (``rows`` with it, whenever it becomes durable); a store failure is
        logged."""
        try:
            held = await self.recorder.acquire(incident_id)
        except StoreError as exc:
            log.error("incident %s: %s not recorded: %s", incident_id, item.kind, exc)
            return
        try:
            await self.recorder.record_event(held, item, with_event=rows)
        except StoreError as exc:
            log.error("incident %s: %s not recorded yet: %s", incident_id, item.kind, exc)
        finally:
            self.recorder.release(held)
            self._listed, self._changes = None, self._changes + 1  # the list may have changed: read it again

    @staticmethod
    def _conclude(attempt: Attempt, outcome: cl.Outcome) -> bool:
        """Settle the attempt's outcome (the first result counts); True when this one did."""
        if attempt.outcome is not None:
            return False
        attempt.outcome = outcome
        return True

    def _ended(self, attempt: Attempt) -> None:
        """The position leg is gone (or never existed): its position is free again."""
        self.running.pop(attempt.id, None)
        if self.dispatcher is not None:
            self.dispatcher.unreserve(attempt.position)

    async def _dial_caller(self, attempt: Attempt) -> None:
        """The dispatcher answered: Asterisk's dialplan dials the caller from their channel."""
        assert self.ari is not None
        try:
            await self.ari.subscribe(attempt.id)  # its Dial events keep coming once it leaves our app
            await self.ari.continue_in_dialplan(attempt.id, CONTEXT, "s")
        except AriError as exc:
            log.error("call-back %s: cannot dial the caller: %s", attempt.id, exc)
            if self._conclude(attempt, "failed"):
                await self._finish(attempt, reason=str(exc)[:200])
            await quietly(self.ari.hangup(attempt.id))  # the dispatcher would otherwise wait in our app

    async def _finish(self, attempt: Attempt, status: str = "", reason: str = "") -> None:
        """Record the settled outcome on every incident of the entry, the attempt counted on its rows."""
        outcome = attempt.outcome
        assert outcome is not None
        rows = attempted(attempt.incidents, outcome, time.time(), cl.reached(outcome))
        await self._record(attempt, "callback_outcome", attempt.position,
                           {"outcome": outcome, "position": attempt.position, "status": status, "reason": reason,
                            "attempt": attempt.id}, rows)

    async def _record(self, attempt: Attempt, kind: str, actor: str, data: dict[str, str | int | float | bool | None],
                      rows: Sequence[Statement] = ()) -> None:
        """The event on each incident of the attempt; ``rows`` ride with the first. A store failure is
        logged: the call-back goes on, and the entry simply stays listed."""
        for n, incident_id in enumerate(attempt.incidents):
            await self._note(incident_id, event(kind, actor, **data), rows if n == 0 else ())
