"""A Twilio Programmable Messaging stand-in: the 2010-04-01 REST API for SMS, with signed status callbacks.

Theory of operation: the stand-in speaks the part of Twilio's REST API the gateway uses, on the
wire as Twilio does: form-encoded POSTs with HTTP Basic auth (account SID / auth token), JSON
message resources, Twilio's error bodies (``code``, ``message``, ``more_info``, ``status``) and
Twilio's list paging. An accepted message is recorded, then moves queued → sent → delivered (or
undelivered, for numbers configured to fail) on a timer; if the request named a StatusCallback,
each move is POSTed there, signed as Twilio signs (HMAC-SHA1 of URL + sorted parameters, keyed
with the auth token, base64). The signer, Twilio's error bodies and dates are in ``sim.twilio_wire``.

Knobs for failure drills: ``fail_next`` (next N API requests answer 500/503/429/403), ``silent``
(requests hang: an unreachable provider), ``failing_numbers`` (accepted, then undelivered),
``landlines`` (rejected with 21614) and ``mps`` (a token bucket answering 20429 beyond it).

Records are in memory (``messages``, ``counts``, ``callbacks``) and at ``GET /_sim/records``;
faults can also be set with ``POST /_sim/faults``. Run in-process with ``open_twilio_sim`` or as
``python -m sim.twilio --port N --account-sid AC... --auth-token ...``.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import re
import secrets
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import msgspec
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.warning.sms import segments
from sim.http import run_server
from sim.twilio_wire import _date_filters, _error, _json, _wall, rfc2822, sign

API = "/2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
DEFAULT_AUTH_TOKEN = "sim-auth-token-0123456789abcdef"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
MAX_BODY = 1600
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class SentMessage(msgspec.Struct, kw_only=True):
    """One message the stand-in accepted, as it stands now (times are Unix seconds)."""

    sid: str
    to: str
    from_: str | None = msgspec.field(name="from")
    messaging_service_sid: str | None
    body: str
    status: str
    num_segments: int
    date_created: float
    date_updated: float
    date_sent: float | None = None
    status_callback: str = ""
    error_code: int | None = None


class CallbackAttempt(msgspec.Struct, kw_only=True):
    """One status callback the stand-in POSTed: the answer's HTTP status, or the error."""

    sid: str
    status: str
    url: str
    http_status: int | None = None
    error: str = ""


class Faults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /_sim/faults``; absent fields leave the knob as it is."""

    fail_next: int | None = None
    fail_status: int = 500
    retry_after_s: int | None = None
    silent: bool | None = None
    mps: float | None = None
    failing_numbers: list[str] | None = None
    landlines: list[str] | None = None


class TwilioSim:
    """State, knobs and the ASGI app of one stand-in account. ``base_url`` is set once listening."""

    def __init__(self, account_sid: str, auth_token: str, *, mps: float = 10.0, send_delay_s: float = 0.02,
                 deliver_delay_s: float = 0.05, allow_remote_callbacks: bool = False) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.mps = mps
        self.send_delay_s = send_delay_s
        self.deliver_delay_s = deliver_delay_s
        self.allow_remote_callbacks = allow_remote_callbacks
        self.base_url = ""
        self.messages: list[SentMessage] = []
        self.by_sid: dict[str, SentMessage] = {}
        self.counts: Counter[str] = Counter()
        self.callbacks: list[CallbackAttempt] = []
        self.requests = 0
        self.failing_numbers: set[str] = set()
        self.landlines: set[str] = set()
        self._fail_left = 0
        self._fail_status = 500
        self._fail_retry_after: int | None = None
        self._silent: trio.Event | None = None
        self._tokens = mps
        self._refilled = 0.0
        self._nursery: trio.Nursery | None = None
        self._http: httpx.AsyncClient | None = None
        self._callback_limit = trio.CapacityLimiter(32)

    # -- knobs -----------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500, *, retry_after_s: int | None = None) -> None:
        """Answer the next ``n`` API requests with ``status`` (500, 503, 429, or 403 as for a
        suspended account) before any checks."""
        if status not in (500, 503, 429, 403):
            raise ValueError(f"fail_next: status must be 500, 503, 429 or 403, not {status}")
        self._fail_left, self._fail_status, self._fail_retry_after = n, status, retry_after_s

    def set_mps(self, mps: float) -> None:
        """Messages per second the account may create (a full bucket of that many to start with)."""
        self.mps = self._tokens = mps

    def set_silent(self, silent: bool) -> None:
        """While silent, API requests are held unanswered (a provider that stopped responding)."""
        if silent and self._silent is None:
            self._silent = trio.Event()
        elif not silent and self._silent is not None:
            self._silent.set()
            self._silent = None

    def count(self, to: str) -> int:
        """How many messages were accepted for ``to``."""
        return self.counts[to]

    # -- the API ---------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(f"{API}/Accounts/{{sid}}/Messages.json", self._messages, methods=["GET", "POST"]),
            Route(f"{API}/Accounts/{{sid}}/Messages/{{msid}}.json", self._fetch_message, methods=["GET"]),
            Route(f"{API}/Accounts/{{sid}}.json", self._account, methods=["GET"]),
            Route("/_sim/records", self._records, methods=["GET"]),
            Route("/_sim/faults", self._faults, methods=["POST"]),
        ])

    async def _gate(self, request: Request) -> Response | None:
        """Server-level faults, then authentication: an error response, or None to carry on."""
        self.requests += 1
        if self._silent is not None:
            await self._silent.wait()
        if self._fail_left > 0:
            self._fail_left -= 1
            return self._injected()
        if not self._authenticated(request) or request.path_params["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        return None

    def _injected(self) -> Response:
        status = self._fail_status
        if status == 429:
            headers = {"Retry-After": str(self._fail_retry_after)} if self._fail_retry_after is not None else None
            return _error(429, 20429, "Too Many Requests", headers)
        if status == 403:
            return _error(403, 20003, "Permission Denied")
        if status == 503:
            return _error(503, 20503, "Service Unavailable")
        return _error(500, 20500, "Internal Server Error")

    def _authenticated(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(password, self.auth_token)

    def _take_token(self) -> bool:
        now = trio.current_time()
        self._tokens = min(self.mps, self._tokens + (now - self._refilled) * self.mps)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _messages(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            return self._list(request)
        if not self._take_token():
            return _error(429, 20429, "Too Many Requests", {"Retry-After": "1"})
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        invalid = self._validate(form)
        if invalid is not None:
            return invalid
        return _json(self._resource(self._accept(form)), 201)

    def _validate(self, form: dict[str, str]) -> Response | None:
        to, sender, service = form.get("To", ""), form.get("From", ""), form.get("MessagingServiceSid", "")
        body, callback = form.get("Body", ""), form.get("StatusCallback", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if not E164.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to in self.landlines:
            return _error(400, 21614, f"'To' number {to} is not a valid mobile number")
        if sender and not (E164.match(sender) or ALPHA_SENDER.match(sender)):
            return _error(400, 21212, f"Invalid From Number (caller ID): {sender}")
        if service and not SERVICE_SID.match(service):
            return _error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if callback and urlsplit(callback).scheme not in ("http", "https"):
            return _error(400, 21609, "Invalid StatusCallback url")
        return None

    def _accept(self, form: dict[str, str]) -> SentMessage:
        now = _wall()
        sender = form.get("From") or None
        message = SentMessage(
            sid="SM" + secrets.token_hex(16),
            to=form["To"],
            from_=sender,
            messaging_service_sid=form.get("MessagingServiceSid") or None,
            body=form["Body"],
            # A Messaging Service picks the sender itself, so Twilio first reports it "accepted".
            status="queued" if sender else "accepted",
            num_segments=segments(form["Body"]).segments,
            date_created=now,
            date_updated=now,
            status_callback=form.get("StatusCallback", ""),
        )
        self.messages.append(message)
        self.by_sid[message.sid] = message
        self.counts[message.to] += 1
        if self._nursery is not None:
            self._nursery.start_soon(self._progress, message)
        return message

    def _resource(self, m: SentMessage) -> dict[str, Any]:
        uri = f"{API}/Accounts/{self.account_sid}/Messages/{m.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": m.body,
            "date_created": rfc2822(m.date_created),
            "date_sent": rfc2822(m.date_sent) if m.date_sent is not None else None,
            "date_updated": rfc2822(m.date_updated),
            "direction": "outbound-api",
            "error_code": m.error_code,
            "error_message": None,
            "from": m.from_,
            "messaging_service_sid": m.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(m.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": m.sid,
            "status": m.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": m.to,
            "uri": f"{uri}.json",
        }

    def _list(self, request: Request) -> Response:
        query = request.query_params
        try:
            page_size = min(1000, max(1, int(query.get("PageSize", "50"))))
            page = max(0, int(query.get("Page", "0")))
            filters = _date_filters(query)
        except ValueError as exc:
            return _error(400, 20001, f"Invalid parameter: {exc}")
        to, sender = query.get("To"), query.get("From")
        # Newest first, as Twilio lists them (messages are recorded in creation order).
        found = [m for m in reversed(self.messages)
                 if (to is None or m.to == to) and (sender is None or m.from_ == sender)
                 and all(check(m.date_sent) for check in filters)]
        chosen = found[page * page_size:(page + 1) * page_size]
        kept = [(k, v) for k, v in query.multi_items() if k not in ("Page", "PageSize", "PageToken")]
        base = f"{API}/Accounts/{self.account_sid}/Messages.json"

        def page_uri(n: int, token: str | None = None) -> str:
            extra = [("PageSize", str(page_size)), ("Page", str(n))] + ([("PageToken", token)] if token else [])
            return f"{base}?{urlencode(kept + extra)}"

        more = len(found) > (page + 1) * page_size
        return _json({
            "end": page * page_size + max(0, len(chosen) - 1),
            "first_page_uri": page_uri(0),
            "messages": [self._resource(m) for m in chosen],
            "next_page_uri": page_uri(page + 1, "PA" + chosen[-1].sid) if more else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1, "PB" + chosen[0].sid) if page > 0 and chosen else None,
            "start": page * page_size,
            "uri": page_uri(page, query.get("PageToken")),
        })

    async def _fetch_message(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        message = self.by_sid.get(request.path_params["msid"])
        if message is None:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        return _json(self._resource(message))

    async def _account(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        uri = f"{API}/Accounts/{self.account_sid}"
        created = rfc2822(0)
        return _json({
            "auth_token": self.auth_token, "date_created": created, "date_updated": created,
            "friendly_name": "Twilio stand-in", "owner_account_sid": self.account_sid, "sid": self.account_sid,
            "status": "active", "type": "Full", "uri": f"{uri}.json",
            "subresource_uris": {"messages": f"{uri}/Messages.json", "calls": f"{uri}/Calls.json"},
        })

    async def _records(self, request: Request) -> Response:
        return Response(msgspec.json.encode({
            "messages": self.messages, "counts": dict(self.counts), "callbacks": self.callbacks,
            "requests": self.requests,
        }), media_type="application/json")

    async def _faults(self, request: Request) -> Response:
        try:
            faults = msgspec.json.decode(await request.body(), type=Faults)
            if faults.fail_next is not None:
                self.fail_next(faults.fail_next, faults.fail_status, retry_after_s=faults.retry_after_s)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        if faults.silent is not None:
            self.set_silent(faults.silent)
        if faults.mps is not None:
            self.set_mps(faults.mps)
        if faults.failing_numbers is not None:
            self.failing_numbers = set(faults.failing_numbers)
        if faults.landlines is not None:
            self.landlines = set(faults.landlines)
        return _json({"ok": True})

    # -- delivery and callbacks --------------------------------------------------------------------

    async def _progress(self, message: SentMessage) -> None:
        await trio.sleep(self.send_delay_s)
        message.status, message.date_sent = "sent", _wall()
        message.date_updated = message.date_sent
        await self._callback(message)
        await trio.sleep(self.deliver_delay_s)
        if message.to in self.failing_numbers:
            message.status, message.error_code = "undelivered", 30003
        else:
            message.status = "delivered"
        message.date_updated = _wall()
        await self._callback(message)

    async def _callback(self, message: SentMessage) -> None:
        url = message.status_callback
        if not url or self._http is None:
            return
        attempt = CallbackAttempt(sid=message.sid, status=message.status, url=url)
        self.callbacks.append(attempt)
        if not self.allow_remote_callbacks and urlsplit(url).hostname not in _LOOPBACK:
            attempt.error = "refused: callback host is not loopback (allow_remote_callbacks is off)"
            return
        form = self.callback_form(message)
        headers = {
            "X-Twilio-Signature": sign(self.auth_token, url, form),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        }
        async with self._callback_limit:
            try:
                answer = await self._http.post(url, content=urlencode(form), headers=headers)
            except httpx.HTTPError as exc:
                attempt.error = f"{type(exc).__name__}: {exc}"
                return
        attempt.http_status = answer.status_code

    async def repeat_callback(self, sid: str, status: str) -> CallbackAttempt:
        """POST the status callback of message ``sid`` in ``status`` again, as Twilio does when it did
        not get our answer (a retry can come late, after a later status)."""
        message = next(m for m in self.messages if m.sid == sid)
        await self._callback(msgspec.structs.replace(message, status=status))
        return self.callbacks[-1]

    def callback_form(self, m: SentMessage) -> dict[str, str]:
        """The form Twilio POSTs to a StatusCallback for ``m`` in its current status."""
        form = {
            "AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "MessageSid": m.sid, "SmsSid": m.sid,
            "MessageStatus": m.status, "SmsStatus": m.status, "To": m.to,
        }
        if m.from_:
            form["From"] = m.from_
        if m.messaging_service_sid:
            form["MessagingServiceSid"] = m.messaging_service_sid
        if m.error_code is not None:
            form["ErrorCode"] = str(m.error_code)
        if m.status == "delivered":
            form["RawDlrDoneDate"] = datetime.fromtimestamp(m.date_updated, UTC).strftime("%y%m%d%H%M")
        return form


@asynccontextmanager
async def open_twilio_sim(*, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN,
                          mps: float = 10.0, host: str = "127.0.0.1", port: int = 0, send_delay_s: float = 0.02,
                          deliver_delay_s: float = 0.05,
                          allow_remote_callbacks: bool = False) -> AsyncIterator[TwilioSim]:
    """Serve a stand-in on ``host:port`` (0 picks a free port); yields it with ``base_url`` set."""
    sim = TwilioSim(account_sid, auth_token, mps=mps, send_delay_s=send_delay_s, deliver_delay_s=deliver_delay_s,
                    allow_remote_callbacks=allow_remote_callbacks)
    async with httpx.AsyncClient(timeout=5.0) as http, trio.open_nursery() as nursery:
        sim._http, sim._nursery = http, nursery
        binds = await nursery.start(run_server, sim.app(), host, port)
        sim.base_url = binds[0]
        try:
            yield sim
        finally:
            sim.set_silent(False)
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.twilio", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--mps", type=float, default=10.0, help="messages per second before 20429")
    parser.add_argument("--send-delay", type=float, default=0.02, help="seconds from queued to sent")
    parser.add_argument("--deliver-delay", type=float, default=0.05, help="seconds from sent to delivered")
    parser.add_argument("--failing-number", action="append", default=[], help="accepted, then undelivered")
    parser.add_argument("--landline", action="append", default=[], help="rejected with 21614")
    parser.add_argument("--allow-remote-callbacks", action="store_true",
                        help="POST status callbacks to hosts other than loopback")
    args = parser.parse_args(argv)

    async def run() -> None:
        async with open_twilio_sim(account_sid=args.account_sid, auth_token=args.auth_token, mps=args.mps,
                                   host=args.host, port=args.port, send_delay_s=args.send_delay,
                                   deliver_delay_s=args.deliver_delay,
                                   allow_remote_callbacks=args.allow_remote_callbacks) as sim:
            sim.failing_numbers.update(args.failing_number)
            sim.landlines.update(args.landline)
            print(json.dumps({"base_url": sim.base_url, "account_sid": sim.account_sid}), flush=True)
            await trio.sleep_forever()

    try:
        trio.run(run)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
