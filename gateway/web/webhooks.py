"""Routes for machines outside the centre, each with the credential its sender has: the Twilio
inbound-message webhook (Twilio's signature) and the AML HTTPS endpoint (the provider's bearer token)
of SMS to 112, and the school alarm panels' ``POST /alarms`` (each panel's own token).

HTTP translation only: what a text, an AML report or an alarm means is the intake's
(``intake.text.sms112``, ``intake.alarm.panels``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.twilio_callbacks import SIGNATURE_HEADER, verify
from gateway.errors import GatewayError, ProtocolError, StoreError
from gateway.intake.alarm.panels import AlarmIntake, BadBody, panel_report
from gateway.intake.text.sms112 import Sms112
from gateway.protocols import aml, replay
from gateway.web.errors import error, json_response

log = logging.getLogger(__name__)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_FORM_BYTES = 64 * 1024  # a Twilio inbound form is a few kB even for a 1600-character text


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Sms112Routes:
    """The Twilio inbound-message webhook and the AML HTTPS endpoint (both POST)."""

    def __init__(self, sms: Sms112) -> None:
        self.sms = sms
        self.cfg = sms.cfg

    def routes(self) -> list[Route]:
        return [Route(self.cfg.twilio_path, self.twilio, methods=["POST"]),
                Route(self.cfg.aml_path, self.aml, methods=["POST"])]

    async def twilio(self, request: Request) -> Response:
        if not self.cfg.twilio_auth_token:
            return _text("SMS 112 webhook: no Twilio auth token configured", 403)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _text(f"form of {len(body)} bytes exceeds {MAX_FORM_BYTES}", 413)
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return _text("form is not UTF-8", 400)
        try:
            verify(self._public_url(request), form, request.headers.get(SIGNATURE_HEADER), self.cfg.twilio_auth_token)
        except ProtocolError as exc:
            log.warning("SMS 112 webhook refused from %s: %s", request.client.host if request.client else "?", exc)
            return _text(str(exc), 403)
        text = form.get("Body", "")
        media = form.get("NumMedia", "0")
        if media.isdigit() and int(media) > 0:  # an MMS: the pictures stay at Twilio, say so
            text += f"\n[{int(media)} MMS attachment(s) at Twilio, message {form.get('MessageSid', '?')}]"
        try:
            await self.sms.handle_text(form.get("From", ""), text, "twilio", replay.twilio_message(form))
        except GatewayError as exc:
            log.exception("SMS 112 from Twilio not stored")
            return _text(f"not stored: {exc}", 503)
        return Response(EMPTY_TWIML, media_type="text/xml")

    def _public_url(self, request: Request) -> str:
        """The URL Twilio signed: the configured public one behind a reverse proxy."""
        if not self.cfg.twilio_public_url:
            return str(request.url)
        return urlunsplit(urlsplit(self.cfg.twilio_public_url)._replace(query=request.url.query))

    async def aml(self, request: Request) -> Response:
        digest = hashlib.sha256(bearer_token(request).encode()).hexdigest() if bearer_token(request) else ""
        if not self.cfg.aml_token_sha256 or not hmac.compare_digest(digest, self.cfg.aml_token_sha256):
            return error("AML endpoint: send the provider's bearer token", 401)
        try:
            report = aml.parse_https_body(await request.body())
        except ProtocolError as exc:
            log.warning("AML HTTPS report refused: %s", exc)
            return error(str(exc), 400)
        outcome = await self.sms.handle_aml(report, "https")
        return json_response(outcome, 400 if outcome.kind == "aml_rejected" else 200)


class AlarmRoutes:
    """``POST /alarms``: panels with an IP communicator report Contact ID events with their own token."""

    def __init__(self, alarms: AlarmIntake) -> None:
        self.alarms = alarms

    def routes(self) -> list[Route]:
        return [Route("/alarms", self.post_alarm, methods=["POST"])] if self.alarms.cfg.enabled else []

    async def post_alarm(self, request: Request) -> Response:
        """401 for a missing or unknown token, 400 for a body that is not a Contact ID report, 403 for
        another site's account, 503 if the store failed, else 200 with ``Handled``."""
        token = bearer_token(request)
        site = self.alarms.sites.by_token(token) if token else None
        if site is None:
            self.alarms.count("api_unauthorised")
            log.warning("POST /alarms from %s refused: missing or unknown panel token",
                        request.client.host if request.client else "?")
            return error("a panel token is required (Authorization: Bearer <token>)", 401)
        try:
            event, reported_at = panel_report(await request.body())
        except BadBody as exc:
            log.warning("POST /alarms from site %s: bad body: %s", site.account, exc)
            return error(str(exc), 400)
        if event.account != site.account:
            log.warning("POST /alarms: site %s's token used for account %s", site.account, event.account)
            return error(f"this token belongs to account {site.account}, not {event.account}", 403)
        try:
            handled = await self.alarms.handle(event, via="api", reported_at=reported_at)
        except StoreError as exc:
            log.error("POST /alarms from %s: the store failed: %s", site.account, exc)
            return error("the alarm could not be stored; send it again", 503)
        return Response(msgspec.json.encode(handled), media_type="application/json")


def _text(message: str, status: int) -> Response:
    return Response(message, status_code=status, media_type="text/plain")
