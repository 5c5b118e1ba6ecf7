"""HTTP routes of the warnings: the officer's workflow, recipients, the CAP feed, provider webhooks.

Who is acting is ``web.auth``'s answer (an officer's bearer token, or the local key of the ``gateway``
CLI on the gateway's own host). Every decision is the workflow's; this module only translates HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import trio
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.errors import GatewayError, ProtocolError
from gateway.protocols import cap
from gateway.protocols import cap_atom as atom
from gateway.warning import recipients
from gateway.warning.audience import AudienceQuery, audience
from gateway.warning.centre import Warnings
from gateway.warning.workflow import KINDS, DraftSpec
from gateway.web.auth import Auth
from gateway.web.errors import decode_body, error, json_response, query_int, query_text, refusal

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
MAX_CSV_BYTES = 512 * 1024 * 1024
FINAL_STATES = ("sent", "cancelled", "superseded")


class ApproveBody(msgspec.Struct, forbid_unknown_fields=True):
    send: bool = False


class CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, Meta(max_length=2000)] = ""


class WarningsApi:
    def __init__(self, warnings: Warnings, auth: Auth) -> None:
        self.w = warnings
        self.auth = auth

    def routes(self) -> list[Route]:
        return [
            Route("/alerts", self.list_alerts, methods=["GET"]),
            Route("/warnings/catalogue", self.catalogue, methods=["GET"]),
            Route("/zones", self.zones, methods=["GET"]),
            Route("/warnings/audience", self.audience, methods=["POST"]),
            Route("/alerts", self.draft, methods=["POST"]),
            Route("/alerts/{id}", self.get_alert, methods=["GET"]),
            Route("/alerts/{id}/preview", self.preview, methods=["GET"]),
            Route("/alerts/{id}/approve", self.approve, methods=["POST"]),
            Route("/alerts/{id}/send", self.send, methods=["POST"]),
            Route("/alerts/{id}/update", self.update, methods=["POST"]),
            Route("/alerts/{id}/cancel", self.cancel, methods=["POST"]),
            Route("/alerts/{id}/status", self.status, methods=["GET"]),
            Route("/alerts/{id}/progress", self.progress, methods=["GET"]),
            Route("/recipients", self.list_recipients, methods=["GET"]),
            Route("/recipients", self.import_recipients, methods=["POST"]),
            Route("/recipients/{ref}", self.get_recipient, methods=["GET"]),
            Route("/recipients/{ref}", self.put_recipient, methods=["PUT"]),
            Route("/recipients/{ref}", self.delete_recipient, methods=["DELETE"]),
            Route("/cap/feed.atom", self.feed, methods=["GET"]),
            Route("/cap/alerts/{id}.xml", self.cap_xml, methods=["GET"]),
            Route("/cap/drill/feed.atom", self.drill_feed, methods=["GET"]),
            *self._webhooks(),
        ]

    def _webhooks(self) -> list[Route]:
        """Provider callbacks, verified by the driver that sent the messages."""
        from urllib.parse import urlsplit

        from channels.twilio_sms import TwilioChannel, status_callback_route

        routes = []
        slots = self.w.engine.slots if self.w.engine else {}
        for key, cs in (("twilio", self.w.cfg.actual), ("drill:twilio", self.w.cfg.drill)):
            slot = slots.get(key)
            if slot and cs.twilio and cs.twilio.status_callback_url and isinstance(slot.channel, TwilioChannel):
                routes.append(status_callback_route(slot.channel, urlsplit(cs.twilio.status_callback_url).path))
        return routes

    def _reader_only(self, request: Request) -> Response | None:
        """Drafts and recipients are not public: reading needs an officer or the host's local key."""
        return self.auth.reader(request, "civil-defence", "supervisor", "admin")

    def _officer_only(self, request: Request) -> Response | None:
        """Recipient lists hold personal data: only civil-defence officers change them."""
        who = self.auth.require(request, "civil-defence")
        return who if isinstance(who, Response) else None

    async def _act(self, request: Request, action: str, fn: Callable[[str], Awaitable[object]]) -> Response:
        """Who acts is checked first (401/403), then the body and the workflow's rules (400/404/409)."""
        who = self.auth.require(request, "civil-defence")
        if isinstance(who, Response):
            return who
        try:
            result = await fn(who.name)
        except GatewayError as exc:
            return refusal(exc, who.name, f"alert {action}")
        return json_response(result)

    # -- alerts -------------------------------------------------------------------------------

    async def zones(self, request: Request) -> Response:
        """The centre's zones and their shapes: the map's base layer when the centre has no tile server."""
        if (denied := self.auth.reader(request)) is not None:
            return denied
        return json_response([{"name": z.name, "title": z.title, "polygon": z.polygon, "circle": z.circle}
                              for z in self.w.zones.zones.values()])

    async def catalogue(self, request: Request) -> Response:
        """What a composer offers: the event templates, the zones with their titles, the channels."""
        if (denied := self._reader_only(request)) is not None:
            return denied
        zones = [{"name": z.name, "title": z.title} for z in self.w.zones.zones.values()]
        return json_response({"events": self.w.renderer.catalogue.events(), "zones": zones,
                              "channels": list(KINDS)})

    async def audience(self, request: Request) -> Response:
        """Who the area being composed reaches, per channel: a read with a body (POST), counts only."""
        if (denied := self._reader_only(request)) is not None:
            return denied
        try:
            query = decode_body(await request.body(), AudienceQuery)
            return json_response(await audience(self.w.outbox, self.w.zones, query))
        except GatewayError as exc:
            return refusal(exc, what="audience count")

    async def list_alerts(self, request: Request) -> Response:
        if (denied := self._reader_only(request)) is not None:
            return denied
        return json_response(await self.w.outbox.call(self.w.outbox.sync.alerts, 200))

    async def get_alert(self, request: Request) -> Response:
        if (denied := self._reader_only(request)) is not None:
            return denied
        alert_id = request.path_params["id"]
        try:
            record = await self.w.workflow.get(alert_id)
        except GatewayError as exc:
            return refusal(exc)
        audit = await self.w.outbox.call(self.w.outbox.sync.audit_trail, alert_id)
        return json_response({"alert": record, "audit": audit})

    async def draft(self, request: Request) -> Response:
        body = await request.body()

        async def act(user: str) -> object:
            return await self.w.workflow.draft(decode_body(body, DraftSpec), user)
        return await self._act(request, "draft", act)

    async def preview(self, request: Request) -> Response:
        if (denied := self._reader_only(request)) is not None:
            return denied
        try:
            record = await self.w.workflow.get(request.path_params["id"])
            return json_response(self.w.renderer.preview(record))
        except GatewayError as exc:
            return refusal(exc)

    async def approve(self, request: Request) -> Response:
        body = await request.body() or b"{}"

        async def act(user: str) -> object:
            send = decode_body(body, ApproveBody).send
            return await self.w.workflow.approve(request.path_params["id"], user, send=send)
        return await self._act(request, "approve", act)

    async def send(self, request: Request) -> Response:
        return await self._act(request, "send", lambda user: self.w.workflow.send(request.path_params["id"], user))

    async def update(self, request: Request) -> Response:
        body = await request.body()

        async def act(user: str) -> object:
            spec = decode_body(body, DraftSpec)
            return await self.w.workflow.update(request.path_params["id"], spec, user)
        return await self._act(request, "update", act)

    async def cancel(self, request: Request) -> Response:
        body = await request.body() or b"{}"

        async def act(user: str) -> object:
            note = decode_body(body, CancelBody).note
            return await self.w.workflow.cancel(request.path_params["id"], user, note)
        return await self._act(request, "cancel", act)

    async def status(self, request: Request) -> Response:
        if (denied := self._reader_only(request)) is not None:
            return denied
        try:
            return json_response(await self.w.workflow.progress(request.path_params["id"]))
        except GatewayError as exc:
            return refusal(exc)

    async def progress(self, request: Request) -> Response:
        if (denied := self._reader_only(request)) is not None:
            return denied
        alert_id = request.path_params["id"]
        try:
            first = await self.w.workflow.progress(alert_id)
        except GatewayError as exc:
            return refusal(exc)

        async def stream() -> AsyncIterator[bytes]:
            yield b"event: progress\ndata: " + _json.encode(first) + b"\n\n"
            if first.state in FINAL_STATES:
                return
            async with self.w.watch() as ticks:
                while True:
                    now = None
                    with trio.move_on_after(15):  # no yield inside the scope: the consumer runs there
                        async for tick_id, _state, _ in ticks:
                            if tick_id == alert_id:
                                now = await self.w.workflow.progress(alert_id)
                                break
                    if now is None:
                        yield b": keep-alive\n\n"
                        continue
                    yield b"event: progress\ndata: " + _json.encode(now) + b"\n\n"
                    if now.state in FINAL_STATES:
                        return
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- recipients ---------------------------------------------------------------------------

    async def list_recipients(self, request: Request) -> Response:
        if (denied := self._reader_only(request)) is not None:
            return denied
        try:
            after, limit = query_text(request, "after", "", 64), query_int(request, "limit", 100, 1000)
        except GatewayError as exc:
            return refusal(exc, what="recipients list")
        await self.auth.audit(request, "recipients_listed", after, f"limit {limit}")
        return json_response(await self.w.outbox.call(self.w.outbox.sync.recipients, after, limit))

    async def import_recipients(self, request: Request) -> Response:
        if (denied := self._officer_only(request)) is not None:
            return denied
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_CSV_BYTES:  # refuse before reading it into memory
            return error(f"CSV larger than {MAX_CSV_BYTES} bytes", 413)
        body = await request.body()
        if len(body) > MAX_CSV_BYTES:
            return error(f"CSV larger than {MAX_CSV_BYTES} bytes", 413)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return error(f"CSV is not UTF-8 (byte {exc.start})", 400)
        imported, errors = await trio.to_thread.run_sync(self._import, text)
        return json_response({"imported": imported, "rejected": len(errors), "errors": errors[:1000]})

    def _import(self, text: str) -> tuple[int, list[recipients.RowError]]:
        errors: list[recipients.RowError] = []
        batch: list[recipients.Recipient] = []
        imported = 0
        for item in recipients.iter_csv(text, self.w.zones.names()):
            if isinstance(item, recipients.RowError):
                errors.append(item)
                continue
            batch.append(item)
            if len(batch) >= 10_000:
                imported += self.w.outbox.sync.put_recipients(batch)
                batch = []
        if batch:
            imported += self.w.outbox.sync.put_recipients(batch)
        return imported, errors

    async def get_recipient(self, request: Request) -> Response:
        if (denied := self._reader_only(request)) is not None:
            return denied
        await self.auth.audit(request, "recipient_read", request.path_params["ref"])
        try:
            return json_response(await self.w.outbox.call(self.w.outbox.sync.get_recipient, request.path_params["ref"]))
        except GatewayError as exc:
            return refusal(exc)

    async def put_recipient(self, request: Request) -> Response:
        if (denied := self._officer_only(request)) is not None:
            return denied
        try:
            r = decode_body(await request.body(), recipients.Recipient)
        except GatewayError as exc:
            return refusal(exc, what="recipient change")
        if r.ref != request.path_params["ref"]:
            return error("ref in the body differs from the URL", 400)
        r, found = recipients.normalised(r, self.w.zones.names())
        if found:
            return error("; ".join(found), 400)
        await self.w.outbox.call(self.w.outbox.sync.put_recipients, [r])
        return json_response(r)

    async def delete_recipient(self, request: Request) -> Response:
        if (denied := self._officer_only(request)) is not None:
            return denied
        try:
            await self.w.outbox.call(self.w.outbox.sync.delete_recipient, request.path_params["ref"])
        except GatewayError as exc:
            return refusal(exc)
        return Response(status_code=204)

    # -- CAP broadcast -------------------------------------------------------------------------

    async def feed(self, request: Request) -> Response:
        """Radio, TV and the portal poll this: published Actual alerts only."""
        return await self._feed(request, "/cap/feed.atom", drill=False)

    async def drill_feed(self, request: Request) -> Response:
        """Exercise and Test alerts, for the drill destinations of broadcasters."""
        return await self._feed(request, "/cap/drill/feed.atom", drill=True)

    async def _feed(self, request: Request, path: str, *, drill: bool) -> Response:
        records = await self.w.outbox.call(self.w.outbox.sync.alerts, 500, ["sending", "sent", "superseded",
                                                                             "cancelled"])
        chosen = [r.cap for r in records if r.exercise == drill][:100]
        base = str(request.base_url).rstrip("/")
        title = "Азаматтық қорғау / Гражданская оборона" + (" — ЖАТТЫҒУ / УЧЕНИЯ" if drill else "")
        body = atom.atom_feed(chosen, feed_id=f"{base}{path}", title=title, self_url=f"{base}{path}",
                              updated=datetime.now(UTC).replace(microsecond=0),
                              alert_url=lambda a: f"{base}/cap/alerts/{a.identifier}.xml")
        return Response(body, media_type="application/atom+xml")

    async def cap_xml(self, request: Request) -> Response:
        try:
            record = await self.w.workflow.get(request.path_params["id"])
        except GatewayError as exc:
            return refusal(exc)
        if record.state in ("draft", "approved") and self._reader_only(request) is not None:
            return error("not published", 404)  # the approver reads a draft's exact areas here; the public never
        try:
            return Response(cap.to_xml(record.cap), media_type="application/cap+xml")
        except ProtocolError as exc:
            return error(str(exc), 500)
