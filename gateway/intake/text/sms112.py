"""SMS to 112 for people who cannot speak, and AML handset locations (Trio driver over the desk).

Theory of operation: every inbound text (Twilio webhook, SMPP deliver_sm through
``channels.smpp``'s ``on_inbound``) comes to ``handle_text``. An AML message is a location: it is
attached to the sender's open incident when its time of positioning fits, else held for
``match_window_s`` in a small buffer (``sms_text.PendingAml``) that every newly changed incident
of that number is checked against (a recorder listener), so a call arriving just after the AML
still gets its dot on the map; what expires unmatched is logged. The escalation engine sees
every other text first (a responder's "ok"); the rest are reports: a new incident, or an
``sms_received`` event on the number's open one within ``reopen_window_s``, and one automatic
acknowledgement in Kazakh and Russian per incident. The incident is durable before anything
is answered; acknowledgements, AML claims and expiry run in ``run``'s task group.

Replays: a text comes with the replay key its edge read (``protocols.replay``: Twilio's MessageSid,
the SMSC's message id) and an AML report is keyed by its fix; the key is written with the event
the report caused. A report whose key was already taken is answered as taken (``replayed``: the
sender stops resending) and changes nothing; logged once and counted in ``statistics``.

HTTP (``web.webhooks``): the Twilio inbound-message webhook (signature checked as Twilio computes
it, over the public URL Twilio called; a forged or missing one is refused with 403 and nothing is
recorded) answers empty TwiML; the AML HTTPS endpoint takes a bearer token whose SHA-256 is configured.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
import trio

from gateway.errors import GatewayError, NotFound, ProtocolError
from gateway.incident.desk import Desk
from gateway.incident.records import Incident, TimelineEvent
from gateway.protocols import aml, ani, replay, sms_text
from gateway.settings import Sms112Config

log = logging.getLogger(__name__)

SendSms = Callable[[str, str], Awaitable[bool]]
ResponderReply = Callable[[str, str, str], Awaitable[bool]]
Job = Callable[[], Awaitable[None]]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]
_Path = Annotated[str, msgspec.Meta(pattern=r"^/[A-Za-z0-9/_.\-]*$")]


class TextOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one inbound text or AML report."""

    kind: Literal["incident_opened", "incident_updated", "responder", "aml_attached", "aml_held", "aml_rejected",
                  "replayed"]
    incident_id: str = ""
    error: str = ""


class ReplyOutcome(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    error: str = ""


class Sms112:
    """SMS-to-112 intake and AML matching. Start ``run`` in the gateway's nursery."""

    def __init__(self, cfg: Sms112Config, desk: Desk, send_sms: SendSms,
                 responder_reply: ResponderReply | None = None) -> None:
        self.cfg = cfg
        self.desk = desk
        self._send_sms = send_sms
        self._responder_reply = responder_reply
        self.pending = sms_text.PendingAml(cfg.match_window_s, cfg.max_pending_aml)
        self._acking: set[str] = set()
        self._jobs, self._job_queue = trio.open_memory_channel[Job](math.inf)
        self._numbers: dict[str, tuple[trio.Lock, list[int]]] = {}
        self.counts = collections.Counter[str]()

    def statistics(self) -> dict[str, int]:
        return dict(self.counts)

    # --- inbound ----------------------------------------------------------------------------
    @asynccontextmanager
    async def _per_number(self, number: str) -> AsyncIterator[None]:
        """One text (or AML report) of a number at a time; the entry goes once nobody waits on it."""
        if not number:
            yield
            return
        entry = self._numbers.setdefault(number, (trio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if not entry[1][0]:
                del self._numbers[number]

    async def handle_text(self, sender: str, text: str, via: str, seen_key: str = "") -> TextOutcome:
        """Take one inbound text; durable on return. ``seen_key`` is its replay key ("" if the
        provider gave none): a text already taken is ``replayed`` and changes nothing. Bad input is
        logged and recorded, never raised; raises StoreError when the incident store cannot write."""
        if await self._replayed(seen_key, via):
            return TextOutcome(kind="replayed")
        who = sms_text.sender(sender)
        if sms_text.is_aml(text):
            return await self._aml_sms(who, text, via, seen_key)
        clean = sms_text.clean_text(text, self.cfg.max_text_chars)
        if who.caller.number and self._responder_reply is not None:
            if await self._responder_reply(who.caller.number, clean.text, via):
                await self.desk.mark_seen(seen_key)  # the answer is the escalation's to record
                return TextOutcome(kind="responder")
        flags = [*clean.flags, *who.caller.flags]
        if flags:
            log.warning("SMS to %s from %r (%s): %s", self.cfg.service, sender[:40], via, ", ".join(flags))
        text, length, flagged = clean.text, clean.length, ",".join(flags)
        number = who.caller.number
        lang = sms_text.language(clean.text, self.cfg.reply_language)
        async with self._per_number(number):  # two quick texts must not open two incidents
            if await self._replayed(seen_key, via):  # the same text again while the first was being stored
                return TextOutcome(kind="replayed")
            found = await self.desk.open_for_number(number, self.cfg.reopen_window_s) if number else None
            if found is not None:
                incident = await self.desk.record_report(found.id, "sms_received", seen_key=seen_key,
                                                         actor=who.reporter, text=text, via=via, length=length,
                                                         flags=flagged)
                outcome = TextOutcome(kind="incident_updated", incident_id=found.id)
            else:
                incident = await self.desk.open(service=self.cfg.service, source="sms", caller=who.caller,
                                                reporter=who.reporter, kind="sms_received", actor=who.reporter,
                                                language=lang, text=text, via=via, length=length, flags=flagged,
                                                seen_key=seen_key)
                outcome = TextOutcome(kind="incident_opened", incident_id=incident.id)
        if who.can_reply and self._needs_ack(incident):
            self._acking.add(incident.id)
            self._jobs.send_nowait(functools.partial(self._acknowledge, incident.id, number, lang))
        return outcome

    async def handle_aml(self, report: aml.AmlReport, via: str) -> TextOutcome:
        """Attach a parsed AML report to its number's open incident, or hold it for a call to come."""
        number, _ = ani.e164(report.number) if report.number else ("", [])
        if not number:
            error = f"AML report ({via}) names no usable number: {report.number!r}"
            log.warning("%s", error)
            return TextOutcome(kind="aml_rejected", error=error)
        key = replay.aml(report, number)
        async with self._per_number(number):
            if await self._replayed(key, via):
                return TextOutcome(kind="replayed")
            incident = await self.desk.open_for_number(number, self.cfg.match_window_s)
            if incident is not None and self._fits(report, number, incident):
                await self._attach(incident.id, report, via, key)
                return TextOutcome(kind="aml_attached", incident_id=incident.id)
        for old in self.pending.hold(number, report, trio.current_time()):
            log.warning("AML for %s dropped unmatched: %d reports already held", old.number, self.pending.limit)
        log.info("AML (%s) for %s held %.0f s: no open incident of that number yet", via, number,
                 self.cfg.match_window_s)
        return TextOutcome(kind="aml_held")

    async def _replayed(self, seen_key: str, via: str) -> bool:
        if not await self.desk.seen(seen_key):
            return False
        self.counts["replayed"] += 1
        log.info("SMS %s (%s): %s was already taken; answered as taken, nothing recorded", self.cfg.service, via,
                 seen_key)
        return True

    async def _aml_sms(self, who: sms_text.Sender, text: str, via: str, seen_key: str) -> TextOutcome:
        number = who.caller.number
        try:
            if not number:
                raise ProtocolError(f"AML SMS from {who.caller.raw_number!r}, which is not a phone number")
            report = aml.parse_sms(text, sender=number)
        except ProtocolError as exc:
            log.warning("malformed AML SMS (%s) from %r: %s", via, who.caller.raw_number, exc)
            incident = await self.desk.open_for_number(number, self.cfg.match_window_s) if number else None
            if incident is not None:  # the dispatcher learns the handset tried
                await self.desk.record_report(incident.id, "aml_rejected", seen_key=seen_key, actor="aml", via=via,
                                              error=str(exc))
            return TextOutcome(kind="aml_rejected", incident_id=incident.id if incident else "", error=str(exc))
        return await self.handle_aml(report, via)

    def _fits(self, report: aml.AmlReport, number: str, incident: Incident) -> bool:
        started = datetime.fromtimestamp(incident.created_wall, UTC)
        return aml.matches_call(report, number, started, self.cfg.match_window_s)

    async def _attach(self, incident_id: str, report: aml.AmlReport, via: str, seen_key: str) -> None:
        at, flags = report.positioned_at.isoformat(), ",".join(report.flags)
        location = aml.to_location(report)
        if location is None:  # no fix: the incident still learns AML was tried
            await self.desk.record_report(incident_id, "aml_received", seen_key=seen_key, actor="aml",
                                          has_position=False, via=via, transport=report.transport,
                                          method=report.method, positioned_at=at, imei=report.imei, flags=flags)
        else:
            await self.desk.attach_location(incident_id, location, actor="aml", via=via, transport=report.transport,
                                            method=report.method, positioned_at=at, seen_key=seen_key,
                                            confidence_pct=report.confidence_pct, imei=report.imei, flags=flags)

    # --- acknowledgements and replies -------------------------------------------------------
    def _needs_ack(self, incident: Incident) -> bool:
        return incident.id not in self._acking and not any(e.kind == "sms_ack_sent" for e in incident.timeline)

    async def _acknowledge(self, incident_id: str, number: str, lang: str) -> None:
        try:
            ok, error = await self._send(number, sms_text.acknowledgement(lang))
            if ok:
                await self.desk.record(incident_id, "sms_ack_sent", actor="gateway", to=number)
            else:
                log.warning("acknowledgement to %s for %s failed: %s", number, incident_id, error)
                await self.desk.record(incident_id, "sms_ack_failed", actor="gateway", to=number, error=error)
        finally:
            self._acking.discard(incident_id)

    async def reply(self, incident_id: str, text: str, actor: str) -> ReplyOutcome:
        """Send a dispatcher's answer to the incident's SMS reporter; ``sms_replied`` or
        ``sms_reply_failed`` is recorded. Failures are returned, not raised (StoreError aside)."""
        try:
            incident = await self.desk.get(incident_id)
        except NotFound:
            return ReplyOutcome(ok=False, error=f"no incident {incident_id}")
        number = reply_number(incident)
        clean = sms_text.clean_text(text, self.cfg.max_text_chars)
        if not number:
            ok, error = False, "the incident has no phone number to answer by SMS"
        elif "empty" in clean.flags:
            ok, error = False, "the reply is empty"
        else:
            ok, error = await self._send(number, clean.text)
        if ok:
            await self.desk.record(incident_id, "sms_replied", actor=actor, to=number, text=clean.text)
        else:
            log.warning("SMS reply to %s for %s failed: %s", number or "-", incident_id, error)
            await self.desk.record(incident_id, "sms_reply_failed", actor=actor, to=number, text=clean.text,
                                   error=error)
        return ReplyOutcome(ok=ok, error=error)

    async def _send(self, number: str, text: str) -> tuple[bool, str]:
        try:
            with trio.move_on_after(self.cfg.send_timeout_s):
                if await self._send_sms(number, text):
                    return True, ""
                return False, "the SMS channel did not take the message"
            return False, f"the SMS channel did not answer within {self.cfg.send_timeout_s:g} s"
        except (GatewayError, OSError, trio.BrokenResourceError) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    # --- background work --------------------------------------------------------------------
    def _on_change(self, incident: Incident, _: TimelineEvent) -> None:
        number = incident.caller.number
        if number and incident.status != "closed" and self.pending.holds(number):
            self._jobs.send_nowait(functools.partial(self._claim, incident.id, number))

    async def _claim(self, incident_id: str, number: str) -> None:
        now = trio.current_time()
        incident = await self.desk.get(incident_id)
        for held in self.pending.take(number, now):
            key = replay.aml(held.report, number)
            if await self._replayed(key, "held"):  # held twice (sent again before a call came)
                continue
            if self._fits(held.report, number, incident):
                await self._attach(incident_id, held.report, "held", key)
            else:  # positioned too far from this incident's start: maybe the next one's
                self.pending.hold(number, held.report, held.held_at)

    async def _expire(self) -> None:
        while True:
            await trio.sleep(min(1.0, self.cfg.match_window_s / 4))
            for old in self.pending.expire(trio.current_time()):
                log.warning("AML for %s (positioned %s) expired: no incident of that number within %.0f s",
                            old.number, old.report.positioned_at.isoformat(), self.cfg.match_window_s)

    async def _guarded(self, job: Job) -> None:
        try:
            await job()
        except GatewayError:  # the report itself is already durable; this was follow-up work
            log.exception("SMS 112 background work failed")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Acknowledgements, AML claims and AML expiry, until cancelled."""
        listeners = self.desk.recorder.listeners
        listeners.append(self._on_change)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._expire)
                task_status.started()
                async for job in self._job_queue:
                    nursery.start_soon(self._guarded, job)
        finally:
            listeners.remove(self._on_change)


def reply_number(incident: Incident) -> str:
    """Where an SMS answer goes: the SMS reporter's number, else the caller's."""
    if incident.reporter.startswith("sms:+"):
        return incident.reporter[4:]
    return incident.caller.number
