"""The warning workflow: draft → approved by a second, different civil-defence officer → sending →
sent; Update and Cancel reference the original and reach the same recipients.

Every transition is checked here (who may do what, in which state), written to the alert's
append-only audit trail, and only then acted on by the engine.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.errors import AlertConflict, AlertError, AlertNotFound, Conflict, NotFound, ZoneError
from gateway.protocols import cap
from gateway.warning.engine import AsyncOutbox, Engine
from gateway.warning.records import AlertRecord, AuditEvent, Progress
from gateway.warning.render import LANGUAGES, Renderer
from gateway.warning.zones import ZoneSet

CIVIL_DEFENCE = "civil-defence"
KINDS = ("sms", "email", "telegram", "voice", "siren")
CAP_LANGUAGE = {"kk": "kk-KZ", "ru": "ru-RU", "en": "en-US"}


Short = Annotated[str, Meta(max_length=100)]
Language = Annotated[str, Meta(max_length=8)]
Point = tuple[float, float]


class DraftSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an officer asks for. Texts are per language; a missing one uses the template. Every text and
    list has a limit (refused with 400 naming the field when over it): a headline is what fits a phone's
    lock screen and CAP's advice (under 160 characters); the longer texts go by e-mail and the CAP feed."""

    event: Annotated[str, Meta(max_length=200)]
    status: Literal["Actual", "Exercise", "Test"] = "Actual"
    zones: Annotated[list[Short], Meta(max_length=1000)] = []
    polygons: Annotated[list[Annotated[list[Point], Meta(max_length=1000)]], Meta(max_length=100)] = []
    circles: Annotated[list[cap.Circle], Meta(max_length=100)] = []
    area_desc: Annotated[str, Meta(max_length=1000)] = ""
    channels: Annotated[list[Short], Meta(max_length=20)] = msgspec.field(default_factory=lambda: list(KINDS))
    category: cap.Category = "Safety"
    urgency: cap.Urgency = "Immediate"
    severity: cap.Severity = "Severe"
    certainty: cap.Certainty = "Observed"
    headline: Annotated[dict[Language, Annotated[str, Meta(max_length=160)]], Meta(max_length=10)] = {}
    description: Annotated[dict[Language, Annotated[str, Meta(max_length=8000)]], Meta(max_length=10)] = {}
    instruction: Annotated[dict[Language, Annotated[str, Meta(max_length=8000)]], Meta(max_length=10)] = {}
    expires_in_min: int = 180
    note: Annotated[str, Meta(max_length=2000)] = ""


class Workflow:
    """Owns the rules; the engine (absent in read-only tools) does the sending."""

    def __init__(self, db: AsyncOutbox, renderer: Renderer, zones: ZoneSet, users: Mapping[str, list[str]], *,
                 sender: str, sender_names: Mapping[str, str] | None = None, engine: Engine | None = None) -> None:
        self.db = db
        self.renderer = renderer
        self.zones = zones
        self.users = users
        self.sender = sender
        self.sender_names = dict(sender_names or {})  # per language, as the public reads it
        self.engine = engine

    async def draft(self, spec: DraftSpec, by: str, *, msg_type: str = "Alert", original: AlertRecord | None = None
                    ) -> AlertRecord:
        """Create a draft; raises AlertError (unknown user, zone, template, invalid CAP)."""
        self._officer(by)
        return await self._insert_draft(spec, by, msg_type, original)

    async def draft_for_incident(self, spec: DraftSpec, incident_id: str) -> AlertRecord:
        """A draft a response scenario asks for. Nobody wrote it, so it is drafted by
        ``scenario:<incident>`` and any civil-defence officer may approve it; it is never sent
        without one."""
        return await self._insert_draft(spec, f"scenario:{incident_id}", "Alert", None, incident=incident_id)

    async def _insert_draft(self, spec: DraftSpec, by: str, msg_type: str, original: AlertRecord | None,
                            **detail: str) -> AlertRecord:
        now = datetime.now(UTC).replace(microsecond=0)
        record = self._record(spec, by, now, msg_type, original)
        self.renderer.preview(record)  # every language must render before anyone approves it
        await self.db.call(self.db.sync.insert_alert, record, _audit(by, "drafted", msg_type=msg_type,
                                                                     zones=",".join(record.zones), **detail))
        return record

    async def approve(self, alert_id: str, by: str, *, send: bool = False) -> AlertRecord:
        self._officer(by)
        record = await self.get(alert_id)
        if record.state != "draft":
            raise AlertConflict(f"alert {alert_id} is {record.state}: only a draft can be approved")
        if by == record.created_by:
            raise AlertError(f"alert {alert_id}: {by} drafted it; a second, different officer must approve")
        approved = msgspec.structs.replace(record, state="approved", approved_by=by, approved_at=time.time())
        await self.db.call(self.db.sync.update_alert, approved, _audit(by, "approved"), expect_state="draft")
        return await self.send(alert_id, by) if send else approved

    async def send(self, alert_id: str, by: str) -> AlertRecord:
        self._officer(by)
        record = await self.get(alert_id)
        if record.state != "approved":
            raise AlertConflict(f"alert {alert_id} is {record.state}: only an approved alert can be sent")
        if self.engine is None:
            raise AlertError("this process cannot send: the gateway service sends alerts")
        if record.root:
            root = await self.get(record.root)
            if root.state == "cancelled":  # an Update drafted before the all-clear must not revive it
                raise AlertError(f"alert {alert_id}: its original {root.id} was cancelled")
        sending = msgspec.structs.replace(record, state="sending", sent_by=by, sent_at=time.time())
        await self.db.call(self.db.sync.update_alert, sending, _audit(by, "sending"), expect_state="approved")
        if sending.root:
            await self.engine.stop_alert(sending)  # the earlier messages of the chain stop here
        await self.engine.start(sending)
        if sending.root:
            await self._close_original(sending, by)
        return sending

    async def update(self, alert_id: str, spec: DraftSpec, by: str) -> AlertRecord:
        """Draft an Update of a sent alert; it needs its own approval."""
        original = await self._live(alert_id)
        # An Update of an exercise is an exercise: it must never reach an actual channel.
        spec = msgspec.structs.replace(spec, status=original.cap.status)
        return await self.draft(spec, by, msg_type="Update", original=original)

    async def cancel(self, alert_id: str, by: str, note: str = "") -> AlertRecord:
        """Cancel a live alert at once: withdraw what has not left, tell everyone it reached.

        Stopping a warning must not wait for a second officer; the Cancel is audited like any send."""
        original = await self._live(alert_id)
        spec = DraftSpec(event=original.event, status=original.cap.status,  # type: ignore[arg-type]
                         zones=original.zones, channels=original.channels, note=note or "cancelled",
                         urgency="Past", severity="Minor", certainty="Observed")
        cancel = await self.draft(spec, by, msg_type="Cancel", original=original)
        approved = msgspec.structs.replace(cancel, state="approved", approved_by=by, approved_at=time.time())
        await self.db.call(self.db.sync.update_alert, approved, _audit(by, "approved", single_officer=True))
        return await self.send(cancel.id, by)

    async def get(self, alert_id: str) -> AlertRecord:
        try:
            _, record = await self.db.call(self.db.sync.get_alert, alert_id)
        except NotFound as exc:
            raise AlertNotFound(f"no alert {alert_id!r}") from exc
        return record  # type: ignore[no-any-return]

    async def progress(self, alert_id: str) -> Progress:
        record = await self.get(alert_id)
        no, _ = await self.db.call(self.db.sync.get_alert, alert_id)
        channels = await self.db.call(self.db.sync.progress, no)
        targeted = sum(p.queued + p.sending + p.sent + p.delivered + p.failed for p in channels.values())
        tracker = self.engine.tracking.get(no) if self.engine else None
        for key, p in channels.items():
            live = tracker.channels.get(key) if tracker else None
            p.first_at = live.first_at if live else None
            slot = self.engine.slots.get(key) if self.engine else None
            p.health = slot.breaker.state if slot else ("not open" if self.engine else "unknown")
        done = bool(await self.db.call(self.db.sync.fanout_done, no))
        return Progress(alert_id=alert_id, state=record.state, targeted=targeted, materialised=done, channels=channels)

    async def finished(self, record: AlertRecord) -> None:
        """The engine says every job of ``record`` is done (a later message may have closed it first)."""
        current = await self.get(record.id)
        if current.state == "sending":
            sent = msgspec.structs.replace(current, state="sent", finished_at=time.time())
            try:
                await self.db.call(self.db.sync.update_alert, sent, _audit("gateway", "sent"), expect_state="sending")
            except Conflict:
                pass  # cancelled or superseded in between: that state stands

    # -- helpers ----------------------------------------------------------------------------------

    def _officer(self, user: str) -> None:
        if CIVIL_DEFENCE not in self.users.get(user, []):
            raise AlertError(f"user {user!r} is not a civil-defence officer")

    async def _live(self, alert_id: str) -> AlertRecord:
        record = await self.get(alert_id)
        if record.state not in ("sending", "sent"):
            raise AlertConflict(f"alert {alert_id} is {record.state}: only a sent alert can be updated or cancelled")
        if record.cap.msg_type == "Cancel":
            raise AlertError(f"alert {alert_id} is itself a Cancel")
        return record

    async def _close_original(self, later: AlertRecord, by: str) -> None:
        """An Update supersedes what it references; a Cancel cancels its whole chain."""
        cancel = later.cap.msg_type == "Cancel"
        ids = [ref.identifier for ref in later.cap.references]
        if cancel and later.root and later.root not in ids:
            ids.append(later.root)
        for identifier in ids:
            try:
                original = await self.get(identifier)
            except AlertError:
                continue
            state = "cancelled" if cancel else "superseded"
            if original.state in ("sending", "sent") or (cancel and original.state == "superseded"):
                closed = msgspec.structs.replace(original, state=state)
                await self.db.call(self.db.sync.update_alert, closed, _audit(by, state, by_alert=later.id))

    def _record(self, spec: DraftSpec, by: str, now: datetime, msg_type: str, original: AlertRecord | None
                ) -> AlertRecord:
        if spec.event not in self.renderer.catalogue.events():
            raise AlertError(f"unknown event {spec.event!r} (templates: {', '.join(self.renderer.catalogue.events())})")
        wrong = [c for c in spec.channels if c not in KINDS]
        if wrong or not spec.channels:
            raise AlertError(f"channels: expected some of {', '.join(KINDS)}, got {wrong or 'none'}")
        if not 1 <= spec.expires_in_min <= 7 * 24 * 60:
            raise AlertError("expires_in_min: expected 1 minute to 7 days")
        area = cap.Area(area_desc=spec.area_desc or "zones", polygons=spec.polygons, circles=spec.circles,
                        zones=spec.zones)
        try:
            zones = original.zones if original and not (spec.polygons or spec.circles or spec.zones != original.zones) \
                else self.zones.matching([area])
        except ZoneError as exc:
            raise AlertError(str(exc)) from exc
        if not zones:
            raise AlertError("the alert's area reaches no configured zone")
        identifier = f"KZ-ECGW-{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        alert = self._cap(spec, identifier, now, msg_type, zones, area, original)
        problems = cap.problems(alert)
        if problems:
            raise AlertError("invalid CAP message: " + "; ".join(problems))
        return AlertRecord(id=identifier, state="draft", event=spec.event, cap=alert, zones=zones,
                           channels=list(dict.fromkeys(spec.channels)), created_by=by, created_at=time.time(),
                           root=(original.root or original.id) if original else "")

    def _cap(self, spec: DraftSpec, identifier: str, now: datetime, msg_type: str, zones: list[str], area: cap.Area,
             original: AlertRecord | None) -> cap.Alert:
        titles = {lang: ", ".join(self.zones.zones[z].title.get(lang, z) for z in zones) for lang in LANGUAGES}
        infos = [cap.Info(
            language=CAP_LANGUAGE[lang], categories=[spec.category], event=spec.event, urgency=spec.urgency,
            severity=spec.severity, certainty=spec.certainty, expires=now + timedelta(minutes=spec.expires_in_min),
            sender_name=self.sender_names.get(lang, ""), headline=spec.headline.get(lang, ""),
            description=spec.description.get(lang, ""), instruction=spec.instruction.get(lang, ""),
            areas=[msgspec.structs.replace(area, area_desc=spec.area_desc or titles[lang], zones=zones)],
        ) for lang in LANGUAGES]
        references = [cap.reference_of(original.cap)] if original else []
        return cap.Alert(identifier=identifier, sender=self.sender, sent=now, status=spec.status,
                         msg_type=msg_type, note=spec.note, references=references, infos=infos)  # type: ignore[arg-type]


def _audit(actor: str, kind: str, **detail: str | int | float | bool) -> AuditEvent:
    return AuditEvent(at=time.time(), actor=actor, kind=kind, detail=detail)
