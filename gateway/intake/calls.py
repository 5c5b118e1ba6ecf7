"""Emergency call intake: Stasis events -> incident -> IVR -> dispatcher queue.

One ``Intake`` serves one ARI connection. On (re)connect it adopts every channel already in the
Stasis app, resuming from the store, so a gateway restart never loses a call or an incident.
Any failure while serving a call hands the caller back to the fallback dialplan, which rings
the dispatchers directly: our errors never cost a caller their connection to a human.
"""

from __future__ import annotations

import functools
import logging
import time

import trio

from gateway.asterisk.ari import Ari, ChannelGone, quietly
from gateway.errors import AriError, GatewayError, StoreError
from gateway.incident.callback_list import diallable
from gateway.incident.callback_table import CallbackTable, abandoned
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import IncidentState
from gateway.incident.store import AsyncStore
from gateway.intake import call_state as cs
from gateway.intake import location_ref
from gateway.intake.arrival import Arrival, Unread, add_location, arrival
from gateway.intake.call import INBOX_HIGH_WATER, Call
from gateway.intake.call_back import AUTO_ROLE, CallBacks
from gateway.intake.call_back import CONTEXT as CALLBACK_CONTEXT
from gateway.intake.call_back import ROLE as CALLBACK_ROLE
from gateway.intake.dispatch import DELIVER_CONTEXT, Dispatcher
from gateway.intake.ivr import Ivr
from gateway.intake.lost_calls import close_vanished, reopened, was_cut
from gateway.intake.silent_calls import SilentCalls
from gateway.metrics import Metrics
from gateway.protocols import ari_events as ev
from gateway.protocols import call_facts, location
from gateway.protocols.pidf import LocationError
from gateway.settings import GatewayConfig

log = logging.getLogger(__name__)
HOLD_AFTER_S = 0.5
RECONCILE_S = 5.0
FACTS_READ_S = 2.0  # at most this long reading facts that came cut, before the call is served with what came
GONE_KEEP_S = 60.0  # a channel Asterisk reported gone may still be listed while it is torn down


class Intake:
    def __init__(self, cfg: GatewayConfig, store: AsyncStore, recorder: Recorder, metrics: Metrics,
                 prompts_dir: str = "") -> None:
        self.cfg = cfg
        self.store = store
        self.recorder = recorder
        self.metrics = metrics
        self.calls: dict[str, Call] = {}  # caller channel id -> call
        self.gone: dict[str, float] = {}  # caller channel id -> when it left (Trio's clock): never adopted again
        self.dispatcher = Dispatcher(cfg.dispatch, recorder, metrics)
        self.ivr = Ivr(cfg.ivr, recorder, prompts_dir)
        self.locations = location_ref.LocationFetcher(cfg.location)
        self.callbacks = CallBacks(cfg, CallbackTable(store), recorder)
        self.silent = SilentCalls(cfg.silence, recorder)

    async def serve(self, ari: Ari, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Handle this connection's events until it closes. Calls keep living in Asterisk after."""
        for call in self.calls.values():  # adopted afresh below
            self.recorder.release(call.held)
        self.calls.clear()
        self.dispatcher = Dispatcher(self.cfg.dispatch, self.recorder, self.metrics)
        async with trio.open_nursery() as nursery:
            try:
                await ari.filter_events(sorted(ev.KNOWN))
            except AriError as exc:
                log.warning("Asterisk refused the ARI event filter (%s); receiving every event", exc)
            self.dispatcher.broken = lambda call, exc: nursery.start_soon(self._fail_over, ari, call, exc)
            self.dispatcher.gone = lambda call: self._gone_meanwhile(nursery, call)
            await nursery.start(self.dispatcher.run, ari)
            self.callbacks.attach(ari, self.dispatcher, nursery)
            if self.cfg.callback.auto_after_s > 0:
                nursery.start_soon(self.callbacks.run_auto)
            await self._adopt(ari, nursery)
            nursery.start_soon(self._close_vanished, ari)
            nursery.start_soon(self._reconcile, ari, nursery)
            task_status.started()
            try:  # events that came during adoption first, then each from the websocket's reader itself
                ari.route_to(functools.partial(self._route, ari, nursery))
                await ari.closed()
            finally:
                self.callbacks.attach(None, None, None)
            nursery.cancel_scope.cancel()

    def _route(self, ari: Ari, nursery: trio.Nursery, event: ev.Event) -> None:
        if isinstance(event, ev.StasisStart):
            self._stasis_start(ari, nursery, event)
            return
        cid = ev.channel_id(event)
        call = self.calls.get(cid) if cid is not None else None
        if call is None:
            if cid is not None and self.callbacks.owns(cid):
                self.callbacks.on_event(event)
            return
        if isinstance(event, ev.ChannelTalkingStarted):
            self.silent.talking(nursery, call)
        elif isinstance(event, ev.Dial):
            self.dispatcher.on_dial(call, event)
        elif isinstance(event, ev.ChannelDestroyed) or (isinstance(event, ev.StasisEnd) and not call.life.handed):
            self._caller_gone(nursery, call, event)
        elif not isinstance(event, ev.StasisEnd | ev.ChannelTalkingFinished) and self._post(nursery, call, event):
            log.warning("incident %s: call task is %d events behind (kept, in order)", call.id, INBOX_HIGH_WATER)
            self.metrics.inbox_behind.inc()

    def _post(self, nursery: trio.Nursery, call: Call, event: ev.Event) -> bool:
        """Into the call's inbox (see ``Call.post``); a key also counts for the silence rule."""
        if isinstance(event, ev.ChannelDtmfReceived):
            self.silent.key(nursery, call, event.digit)
        return call.post(event)

    def _stasis_start(self, ari: Ari, nursery: trio.Nursery, event: ev.StasisStart) -> None:
        role = event.args[0] if event.args else ""
        if role == "caller":
            facts = call_facts.parse(event.args[2] if len(event.args) > 2 else None)
            fresh = self._new_call(event.channel, event.args[1] if len(event.args) > 1 else "", facts)
            nursery.start_soon(self._serve_call, ari, nursery, fresh, True)
        elif role == CALLBACK_ROLE:  # a dispatcher answered their call-back: now dial the caller
            self.callbacks.on_event(event)
        elif role == AUTO_ROLE:  # a caller answered the gateway's own call-back: a call like any other now
            attempt = self.callbacks.take_answered(event.channel.id)
            if attempt is not None and self.cfg.recordings.enabled:  # recorded first, then back here
                nursery.start_soon(self._record_leg, ari, nursery, event.channel)
                return
            nursery.start_soon(self._called_back, ari, nursery, event.channel,
                               attempt.incidents[0] if attempt else event.channel.var("ECGW_INCIDENT"))
        elif role == "redial":  # back from a Dial nobody answered: to the queue again
            call = self.calls.get(event.channel.id)
            if call is None:
                nursery.start_soon(self._adopt_one, ari, nursery, event.channel, {})
                return
            try:
                self.dispatcher.returned(call)
            except cs.CallStateError as exc:  # our view of the call was wrong: a human takes it from here
                nursery.start_soon(self._fail_over, ari, call, exc)
                return
            nursery.start_soon(self._serve_call, ari, nursery, call, False)

    # --- a new call -----------------------------------------------------------------------

    def _new_call(self, chan: ev.Channel, service: str, facts: call_facts.Facts,
                  arrived_wall: float | None = None) -> Call:
        made = arrival(self.cfg, chan, facts, service, time.time(), arrived_wall, provisional=bool(facts.missing))
        call = Call(self.recorder.track(Held(made.incident)), chan.id, trio.current_time())
        call.location_ref = made.location_ref
        if facts.missing:  # read in full before the incident is stored (``_read_facts``)
            call.unread = Unread(chan, facts, service, len(made.incident.timeline))
        else:
            self._count(made)
        self.calls[chan.id] = call
        self.metrics.calls.labels(made.incident.service).inc()
        self.metrics.active_calls.set(len(self.calls))
        return call

    def _count(self, made: Arrival) -> None:
        for label in made.bad_input:
            self.metrics.bad_input.labels(label).inc()

    async def _read_facts(self, ari: Ari, call: Call) -> None:
        """Facts that came cut or not at all, read by REST; the incident (not stored yet) is made again with
        them, under the same id. A caller who hung up meanwhile is served (and recorded) with what came."""
        unread, call.unread = call.unread, None
        if unread is None:
            return
        log.info("incident %s: %s came cut from the dialplan; reading them by REST", call.id,
                 ", ".join(unread.facts.missing))
        with trio.move_on_after(FACTS_READ_S) as waited:  # the call is answered only once its incident is stored
            try:
                for name, value in (await ari.variables(call.channel_id, unread.facts.missing)).items():
                    unread.facts.fill(name, value)
            except AriError as exc:
                log.warning("incident %s: caller's facts not read in full (%s): %s", call.id,
                            ", ".join(unread.facts.missing), exc)
        if waited.cancelled_caught:
            log.warning("incident %s: caller's facts (%s) not read within %.0f s", call.id,
                        ", ".join(unread.facts.missing), FACTS_READ_S)
        old = call.incident
        made = arrival(self.cfg, unread.chan, unread.facts, unread.service, old.created_wall, old.created_wall,
                       incident_id=old.id)
        made.incident.timeline.extend(old.timeline[unread.events:])  # noted meanwhile (e.g. talk detection)
        call.held.incident, call.location_ref = made.incident, made.location_ref
        self._count(made)

    async def _serve_call(self, ari: Ari, nursery: trio.Nursery, call: Call, fresh: bool, greeting: str = "") -> None:
        call.scope = trio.CancelScope()
        if call.life.gone:  # hung up before this task began (in the same websocket read): the hang-up's cancel
            call.scope.cancel()  # went to the scope this one replaces; _close records the call
        with call.scope:
            try:
                if fresh:
                    await self._read_facts(ari, call)
                    await self._open(ari, call)
                    # Outside the call's scope: the location matters even if the caller hangs up now.
                    nursery.start_soon(self._enrich, call)
                    self.dispatcher.apply(call, cs.MenuStarted())
                    await self.ivr.run(ari, call)
                if greeting:
                    await self.ivr.announce(ari, call, greeting)
                if self.dispatcher.overflow_due(call):
                    await self.dispatcher.overflow(call)
                    return
                first = call.life.first_queued_at is None
                hold = call.new_hold()  # before queuing: a hand-off cancels this one
                self.dispatcher.enqueue(call, call.incident.priority)
                if first:
                    self.dispatcher.watch_overflow(call)
                await self._queued(call)
                with hold:
                    await self._hold(ari, call)
            except ChannelGone:
                pass  # the caller hung up meanwhile; _caller_gone records it
            except GatewayError as exc:
                if call.life.handed:
                    return  # a hold step lost the race with the hand-off: the dialplan has the caller
                await self._fail_over(ari, call, exc)

    async def _queued(self, call: Call) -> None:
        """``queued`` on the record: written now if the caller waits, else with the ``ringing`` that follows in
        milliseconds (one durable write fewer per call when a position is free: ~0.4 ms of CPU at 50 calls/s;
        a crash in between loses nothing that the call's adoption does not record again)."""
        if call.life.state is cs.State.QUEUED:
            await self.recorder.record(call.held, "queued", state="queued", priority=call.incident.priority)
        else:  # a position took it in ``enqueue``: its hand-off is under way
            self.recorder.note(call.held, "queued", state="queued", priority=call.incident.priority)

    async def _open(self, ari: Ari, call: Call) -> None:
        try:
            await self.recorder.create(call.held)
        except StoreError as exc:
            # Never hold a caller hostage to the disk: serve the call, keep retrying the record.
            log.critical("incident %s: not stored (%s); serving the call anyway", call.id, exc)
        else:
            self.metrics.incidents.inc()
            self.metrics.store_latency.observe(trio.current_time() - call.arrived_mono)
            self.recorder.note(call.held, "incident_stored")  # when the first write became durable
        call.subscribed = await ari.answer_and_subscribe(call.channel_id)  # the hand-off needs its events
        self.silent.watch(call)

    async def _enrich(self, call: Call) -> None:
        """Directory location and links to earlier incidents; a store failure here only logs."""
        try:
            await self._lookup(call)
        except StoreError as exc:
            log.error("incident %s: directory/correlation lookup failed: %s", call.id, exc)

    async def _dereference(self, call: Call) -> None:
        """The location the caller's network sent by reference, fetched and kept with everything it says."""
        try:
            document = await self.locations.fetch(call.location_ref)
        except LocationError as exc:
            log.warning("incident %s: location by reference rejected: %s", call.id, exc)
            await self.recorder.record(call.held, "location_rejected", actor="network", reason=str(exc)[:300])
            return
        for note in document.notes:
            self.recorder.note(call.held, "location_note", actor="network", note=note[:300])
        for loc in document.locations:
            await self.recorder.commit(call.held, add_location(call.incident, loc))

    async def _lookup(self, call: Call) -> None:
        """The caller's directory place and links, on the record: with the Dial's outcome (ringing, answered,
        unanswered or the hang-up: always written, in milliseconds) when a position took the call, else at once
        (one durable write fewer per call)."""
        inc = call.incident
        if call.location_ref:
            await self._dereference(call)
        entry, links = await self.store.directory_and_related(
            inc, self.cfg.correlation.window_s, self.cfg.correlation.same_address_radius_m, location.best)
        if entry is None and not links:
            return
        if entry is not None:
            self.recorder.pend(call.held, add_location(inc, entry))
        if links:
            inc.linked_to, inc.link_reasons = [i for i, _ in links], [r for _, r in links]
            self.recorder.note(call.held, "linked", incidents=",".join(inc.linked_to),
                               reasons=",".join(inc.link_reasons))
        if call.life.state not in cs.DIALLED:
            await self.recorder.flush(call.held)

    async def _hold(self, ari: Ari, call: Call) -> None:
        """Ringback and a periodic announcement until the call is handed to a position (which
        stops the call's hold). Nothing starts when a position is free at once: a short
        silence is better than extra REST calls per call at peak load."""
        await trio.sleep(HOLD_AFTER_S)
        while True:
            await ari.ring(call.channel_id)
            prompt = await self.silent.next_announcement(call, self.cfg.dispatch.announce_every_s)
            await self.ivr.announce(ari, call, prompt)

    async def _called_back(self, ari: Ari, nursery: trio.Nursery, chan: ev.Channel, incident_id: str) -> None:
        """The caller answered the gateway's automatic call-back: queued on their incident like an incoming
        call, after the ``callback`` prompt. Without that incident the dialplan rings the dispatchers."""
        try:
            held = await self.recorder.acquire(incident_id) if incident_id else None
        except StoreError as exc:
            log.error("call-back leg %s: incident %s not loaded (%s)", chan.id, incident_id, exc)
            held = None
        if held is None:
            await quietly(ari.continue_in_dialplan(chan.id, "ecgw-emergency", "s", label="fallback"))
            return
        call = Call(held, chan.id, trio.current_time())
        self.calls[chan.id] = call
        self.metrics.active_calls.set(len(self.calls))
        try:  # the leg is the incident's channel now: a restart adopts it like any caller
            await self.recorder.record(held, "callback_connected", actor="caller", changes={"channel_id": chan.id})
        except StoreError as exc:
            log.error("incident %s: call-back leg not recorded yet: %s", call.id, exc)
        await self._serve_call(ari, nursery, call, False, greeting="callback")

    async def _record_leg(self, ari: Ari, nursery: trio.Nursery, chan: ev.Channel) -> None:
        """Through ``[ecgw-callback] record`` (MixMonitor, as every call), which brings the answered leg back
        into our app (``recorded``); if Asterisk refuses, it is served unrecorded rather than not at all."""
        try:
            await ari.continue_in_dialplan(chan.id, CALLBACK_CONTEXT, "record")
        except ChannelGone:
            return
        except AriError as exc:
            log.error("call-back leg %s: not recorded (%s); serving it", chan.id, exc)
            await self._called_back(ari, nursery, chan, chan.var("ECGW_INCIDENT"))

    async def _fail_over(self, ari: Ari, call: Call, exc: GatewayError) -> None:
        log.error("incident %s: %s; handing the caller to the fallback dialplan", call.id, exc)
        self.metrics.failed_over.inc()
        self.dispatcher.failed_over(call)
        for delay in (0.0, 0.2, 0.5, 1.0, 2.0):
            await trio.sleep(delay)
            try:
                await ari.continue_in_dialplan(call.channel_id, "ecgw-emergency", "s", label="fallback")
            except ChannelGone:
                return  # the caller hung up
            except GatewayError as again:
                log.critical("incident %s: fallback failed (%s); retrying", call.id, again)
                continue
            await self.recorder.record(call.held, "handed_to_fallback", state="fallback", reason=str(exc)[:300])
            return
        # Still in our app: the reconciliation sweep will adopt and serve it again.
        self.calls.pop(call.channel_id, None)

    # --- the caller is gone -----------------------------------------------------------------

    def _caller_gone(self, nursery: trio.Nursery, call: Call, event_: ev.Event) -> None:
        self.calls.pop(call.channel_id, None)
        self.gone[call.channel_id] = trio.current_time()
        self.metrics.active_calls.set(len(self.calls))
        self.dispatcher.release(call)  # stops the call's tasks too
        cause = event_.cause if isinstance(event_, ev.ChannelDestroyed) else 0
        nursery.start_soon(self._close, call, cause, isinstance(event_, ev.StasisEnd))

    def _gone_meanwhile(self, nursery: trio.Nursery, call: Call) -> None:
        """A hand-off found the caller's channel gone: close the call now. Its StasisEnd came while it was
        being handed off (read as the hand-off's), and with no subscription yet no ChannelDestroyed follows."""
        if self.calls.get(call.channel_id) is call:
            self._caller_gone(nursery, call, ev.ChannelDestroyed(channel=ev.Channel(id=call.channel_id)))

    async def _close(self, call: Call, cause: int, left_app: bool) -> None:
        if left_app and call.incident.state in ("overflowed", "fallback"):
            self.recorder.release(call.held)
            return  # handed to the dialplan (backup centre, direct ringing); the call goes on there
        answered = call.life.answered
        listed = not answered and self.cfg.callback.enabled and diallable(call.incident.caller.number)
        if not answered:
            self.metrics.abandoned.inc()
        try:  # an abandoned call goes onto the call-back list in the same write as its hang-up
            await self.recorder.record(call.held, "hung_up", actor="caller", state="closed", cause=cause,
                                       answered=answered, callback=listed,
                                       with_event=[abandoned(call.incident, time.time())] if listed else ())
        except StoreError as exc:
            log.critical("incident %s: cannot record hang-up: %s", call.id, exc)
        finally:
            self.recorder.release(call.held)

    # --- adoption after a restart ------------------------------------------------------------

    async def _reconcile(self, ari: Ari, nursery: trio.Nursery) -> None:
        """Safety net: every few seconds, serve any caller sitting in our app untracked
        (a lost event, a failed hand-off). No emergency call may wait in silence for nobody."""
        while True:
            await trio.sleep(RECONCILE_S)
            try:
                await self._adopt(ari, nursery, min_age_s=RECONCILE_S)
            except AriError as exc:
                log.warning("reconciliation skipped: %s", exc)
            self.dispatcher.sweep()

    async def _close_vanished(self, ari: Ari) -> None:
        """The calls that ended while the gateway was not listening, closed on the record (``lost_calls``)."""
        if not self.cfg.cluster.node_id and self.cfg.store.backend == "postgresql":
            return  # a shared store without this node's systemname: its calls cannot be told from the others'
        try:
            await close_vanished(self.store, self.recorder, self.cfg.cluster.node_id, lambda: set(self.calls),
                                 functools.partial(_channel_ids, ari), await ari.started_wall(),
                                 callbacks=self.cfg.callback.enabled)
        except GatewayError as exc:
            log.warning("calls that ended while the gateway was away not closed this time: %s", exc)

    async def _adopt(self, ari: Ari, nursery: trio.Nursery, min_age_s: float = 0.0) -> None:
        """Take over callers in our app or our Dial that we do not track (at start-up: all).

        ``min_age_s`` leaves alone channels so new that their StasisStart may still be on its way.
        """
        channels = await ari.channels()
        now = time.time()
        self.gone = {cid: at for cid, at in self.gone.items() if trio.current_time() - at < GONE_KEEP_S}
        legs = {c.var("ECGW_INCIDENT"): c for c in channels if c.name.startswith("PJSIP/ecgw-pos-")}
        for chan in channels:
            dp = chan.dialplan
            if chan.var("ECGW_ROLE") != "caller" or dp is None or chan.id in self.calls or chan.id in self.gone:
                continue
            in_app = dp.app_name == "Stasis" and dp.app_data.startswith(self.cfg.asterisk.app + ",")
            in_dial = dp.app_name == "Dial" and dp.context == DELIVER_CONTEXT
            if not (in_app or in_dial) or now - (ev.wall_of(chan.creationtime) or 0.0) < min_age_s:
                continue
            log.warning("adopting untracked caller channel %s", chan.id)
            await self._adopt_one(ari, nursery, chan, legs if in_dial else {})

    async def _adopt_one(self, ari: Ari, nursery: trio.Nursery, chan: ev.Channel,
                         legs: dict[str, ev.Channel]) -> None:
        try:  # one channel that went meanwhile must not leave the others unadopted
            await self._adopt_caller(ari, nursery, chan, legs)
        except ChannelGone:
            log.info("channel %s went while being adopted", chan.id)
        except AriError as exc:
            log.warning("channel %s not adopted this time: %s", chan.id, exc)

    async def _adopt_caller(self, ari: Ari, nursery: trio.Nursery, chan: ev.Channel,
                            legs: dict[str, ev.Channel]) -> None:
        try:
            stored = await self.store.by_channel(chan.id)
        except StoreError as exc:
            log.error("cannot look up channel %s in the store: %s", chan.id, exc)
            stored = None
        if chan.id in self.calls:
            return  # its StasisStart was handled while we looked
        delivered = chan.dialplan is not None and chan.dialplan.context == DELIVER_CONTEXT
        if stored is None:  # never stored: the facts come with no StasisStart now, so they are read by REST
            facts = call_facts.parse(await _quiet_variable(ari, chan.id, call_facts.VARIABLE))
            if chan.id in self.calls:
                return
            call = self._new_call(chan, "", facts, ev.wall_of(chan.creationtime))
            if not delivered:
                nursery.start_soon(self._serve_call, ari, nursery, call, True)
                return
            await self._read_facts(ari, call)  # already with a dispatcher: recorded now
        else:
            call = Call(self.recorder.track(Held(stored, saved=True)), chan.id, trio.current_time())
            self.calls[chan.id] = call
        leg = legs.get(call.id)
        answered = leg is not None and leg.state == "Up"
        await self._record_adopted(call, delivered, answered)
        if delivered and chan.dialplan is not None:
            self.dispatcher.adopt_delivered(call, chan.dialplan.exten, answered=answered)
            try:  # the old subscription went with the old app connection; no ChannelDestroyed without one
                await ari.subscribe(chan.id)
            except ChannelGone:
                self._gone_meanwhile(nursery, call)  # hung up while adopted: close it now, never tracked forever
                raise
            return
        nursery.start_soon(self._serve_call, ari, nursery, call, False)

    async def _record_adopted(self, call: Call, delivered: bool, answered: bool) -> None:
        """``adopted``; an incident another node closed as cut off (``lost_calls.was_cut``: its gateway died,
        its Asterisk did not) is reopened in the state the call is in, and taken off the call-back list."""
        note = "gateway restarted while the call was active"
        if not was_cut(call.incident):
            await self.recorder.record(call.held, "adopted", note=note)
            return
        state: IncidentState = ("answered" if answered else "ringing") if delivered else "queued"
        log.warning("incident %s: closed as cut off, yet its call is still up: reopened (%s)", call.id, state)
        await self.recorder.record(call.held, "adopted", state=state, note=f"{note}; closed as lost, still connected",
                                   resumed=True, with_event=reopened(call.id, time.time()))


async def _quiet_variable(ari: Ari, channel_id: str, name: str) -> str:
    """A variable, or "" when it cannot be read now (the call is served with what is known; ChannelGone raises)."""
    try:
        return await ari.variable(channel_id, name)
    except ChannelGone:
        raise
    except AriError as exc:
        log.warning("channel %s: %s not read (%s); serving the call with what is known", channel_id, name, exc)
        return ""


async def _channel_ids(ari: Ari) -> set[str]:
    return {c.id for c in await ari.channels()}
