"""SMS through Twilio Programmable Messaging: twilio's own async client (aiohttp) hosted in Trio.

Theory of operation: ``open_twilio`` opens a trio-asyncio loop and builds a twilio ``Client``
on an ``AsyncTwilioHttpClient`` inside it; every REST call is an asyncio coroutine run on that
loop from whichever Trio task asked (``deliver`` may be called from any task, so the driver keeps
the loop itself rather than relying on the caller's context). ``deliver`` makes one
``Messages.create`` per message, at most ``concurrency`` in flight and started no faster than
``max_per_second`` (Twilio's MPS for the sender), and maps the answer to a ``Receipt``:

    201                         -> queued/sent, provider_id = the message SID
    400 21211/21614 (bad number)-> failed, not retryable
    other 4xx                   -> failed, not retryable
    401/403                     -> failed, not retryable, and health() reports down
    429 (20429)                 -> retryable after Retry-After (or ``retry_after_s``)
    5xx, refused, timeout       -> retryable

Library exceptions (twilio's, aiohttp's, asyncio's) are translated in ``_failure`` only. Where
Twilio may have accepted a message although we saw no answer (a timeout, a 500, a dropped
connection), the error says "outcome unknown": before sending such a message again the engine can
ask ``lookup`` whether Twilio already has it, so a warning is never sent twice.

Twilio's status callbacks come back to ``status_callback_url`` with the idempotency key in the
query (see ``channels.twilio_callbacks``); ``status_callback_route`` verifies them and passes the
receipts to ``on_update``.

The base URL is overridden the way twilio documents for talking to something other than
api.twilio.com: a custom HTTP client that rewrites the URL of each request.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
import trio
import trio_asyncio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from channels.base import ChannelHealth, Message, Receipt, UpdateCallback, failed
from channels.twilio_callbacks import SIGNATURE_HEADER, callback_url, receipt_for, verify
from channels.twilio_callbacks import receipt as callback_receipt
from gateway.errors import ChannelError, ProtocolError
from gateway.settings.channels import TWILIO_API, TwilioConfig

_INVALID_NUMBER = {21211: "invalid 'To' number", 21614: "'To' is not a mobile number"}

# Errors that can come out of a REST call; everything else is a bug and propagates.
_CALL_ERRORS = (TwilioException, TwilioServiceException, aiohttp.ClientError, asyncio.TimeoutError, OSError,
                json.JSONDecodeError)


# Response headers of the calls made by the current asyncio task: twilio's exceptions drop the
# headers, and a 429's Retry-After lives there. Each call runs in its own asyncio task (with its
# own copy of the context), so concurrent calls never see each other's headers.
_response_headers: contextvars.ContextVar[list[Mapping[str, str]]] = contextvars.ContextVar("twilio_headers")


class _HttpClient(AsyncTwilioHttpClient):
    """twilio's aiohttp client, sending to ``base_url`` instead of api.twilio.com and keeping each
    response's headers for the task that asked."""

    def __init__(self, base_url: str) -> None:
        super().__init__(pool_connections=True)
        self._base_url = base_url.rstrip("/")

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        if url.startswith(TWILIO_API):
            url = self._base_url + url[len(TWILIO_API):]
        auth = kwargs.pop("auth", None)
        if auth is not None:
            # aiohttp deprecates the BasicAuth object twilio would build; the header is the same.
            kwargs["headers"] = dict(kwargs.get("headers") or {}, Authorization=aiohttp.encode_basic_auth(*auth))
        response: TwilioResponse = await super().request(method, url, *args, **kwargs)
        box = _response_headers.get(None)
        if box is not None:
            box.append(response.headers or {})
        return response


class _Pacer:
    """Start times at least ``1 / rate`` apart, shared by every caller (Twilio counts the sender's
    messages per second, not ours per batch)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = -math.inf

    def reserve(self) -> float:
        at = max(trio.current_time(), self._next)
        self._next = at + self._interval
        return at


class TwilioChannel:
    """The open Twilio channel. Owned by ``open_twilio``; do not construct directly."""

    name = "twilio"

    def __init__(self, config: TwilioConfig, loop: Any, client: Client, on_update: UpdateCallback | None) -> None:
        self.max_per_second = config.max_per_second
        self.max_batch = config.max_batch
        self._config = config
        self._loop = loop
        self._messages = client.api.v2010.account.messages
        self._account = client.api.v2010.accounts(config.account_sid)
        self._on_update = on_update
        self._pacer = _Pacer(config.max_per_second)
        self._slots = trio.Semaphore(config.concurrency)
        self._send_refused = ""  # set by a 401/403 on Messages.create, cleared by the next 201
        if config.from_number:
            self._sender: dict[str, str] = {"from_": config.from_number}
        else:
            self._sender = {"messaging_service_sid": config.messaging_service_sid}

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        """Send each message once; one receipt per message, in order. Never raises for a
        delivery failure."""
        results: list[Receipt | None] = [None] * len(messages)

        async def one(index: int, message: Message) -> None:
            try:
                results[index] = await self._send(message)
            finally:
                self._slots.release()

        async with trio.open_nursery() as nursery:
            for index, message in enumerate(messages):
                await self._slots.acquire()
                try:
                    await trio.sleep_until(self._pacer.reserve())
                except BaseException:
                    self._slots.release()
                    raise
                nursery.start_soon(one, index, message)
        done = [r for r in results if r is not None]
        assert len(done) == len(messages), "every message has a receipt once the nursery is done"
        return done

    async def lookup(self, messages: Sequence[Message], *, since: datetime | None = None) -> list[Receipt | None]:
        """For messages whose fate is unknown (a crash or timeout between the request and its
        answer), ask Twilio whether it accepted them: a receipt with the SID and current status if
        it did, None if it has no such message since ``since`` (default: ``lookup_window_s`` ago;
        a naive datetime is taken as UTC).

        A message matches if it went to the same number from our sender with the same body.
        Raises ``ChannelError`` if Twilio cannot be asked: "not found" must never be guessed.
        """
        since = since or datetime.now(UTC) - timedelta(seconds=self._config.lookup_window_s)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)  # Twilio's dates are UTC
        results: list[Receipt | None] = [None] * len(messages)
        problems: list[BaseException] = []

        async def one(index: int, message: Message) -> None:
            try:
                results[index] = await self._find(message, since)
            except (ChannelError, ProtocolError) as exc:
                problems.append(exc)
            finally:
                self._slots.release()

        async with trio.open_nursery() as nursery:
            for index, message in enumerate(messages):
                await self._slots.acquire()
                nursery.start_soon(one, index, message)
        if problems:
            raise ChannelError(f"twilio lookup failed: {problems[0]}") from problems[0]
        return results

    async def health(self) -> ChannelHealth:
        """Up if Twilio answers an authenticated GET of our Account resource, the account is
        active, and sending has not been refused (401/403) since the last accepted message."""
        try:
            account = await self._call(self._account.fetch_async())
        except ChannelError as exc:
            return ChannelHealth(up=False, detail=str(exc))
        except TwilioRestException as exc:
            detail = "credentials refused" if int(exc.status) in (401, 403) else "error"
            return ChannelHealth(up=False, detail=f"twilio: {detail} (HTTP {exc.status} error {exc.code})")
        except _CALL_ERRORS as exc:
            return ChannelHealth(up=False, detail=f"twilio: {type(exc).__name__}: {exc}")
        if account.status != "active":
            return ChannelHealth(up=False, detail=f"twilio: account {account.status}")
        if self._send_refused:
            return ChannelHealth(up=False, detail=self._send_refused)
        return ChannelHealth(up=True, detail=f"twilio account {self._config.account_sid} active")

    def accept_callback(self, url: str, form: Mapping[str, str], signature: str | None) -> Receipt:
        """Verify one status callback (``url`` is the public URL Twilio called), pass its receipt to
        ``on_update`` and return it. Raises ``ProtocolError`` for a bad signature or form."""
        verify(url, form, signature, self._config.auth_token)
        return self._accept_verified(url, form)

    def _accept_verified(self, url: str, form: Mapping[str, str]) -> Receipt:
        receipt = callback_receipt(url, form)
        if self._on_update is not None:
            self._on_update(receipt)
        return receipt

    def public_callback_url(self, query: str) -> str:
        """The URL Twilio called, given the raw query string we received (a reverse proxy may
        have changed scheme, host and path, but Twilio signed the public one)."""
        parts = urlsplit(self._config.status_callback_url)
        return urlunsplit(parts._replace(query=query))

    # -- internals ---------------------------------------------------------------------------

    async def _send(self, message: Message) -> Receipt:
        kwargs: dict[str, Any] = {"to": message.address, "body": message.body, **self._sender}
        if self._config.status_callback_url:
            kwargs["status_callback"] = callback_url(self._config.status_callback_url, message.idempotency_key)
        headers: list[Mapping[str, str]] = []
        try:
            created = await self._call(self._messages.create_async(**kwargs), headers)
        except ChannelError as exc:
            return failed(message, f"{exc} (outcome unknown)", retryable=True)
        except _CALL_ERRORS as exc:
            return self._failure(message, exc, headers)
        self._send_refused = ""
        try:
            return receipt_for(message.idempotency_key, created.sid, created.status or "")
        except ProtocolError as exc:
            return failed(message, f"{exc} (outcome unknown)", retryable=True)

    async def _call(self, coro: Any, headers: list[Mapping[str, str]] | None = None) -> Any:
        """Run one twilio coroutine on our asyncio loop, bounded by ``timeout_s``.
        Raises ``ChannelError`` on timeout; the library's own exceptions pass through."""

        async def with_headers() -> Any:
            if headers is not None:
                _response_headers.set(headers)
            return await coro

        with trio.move_on_after(self._config.timeout_s) as scope:
            return await self._loop.run_aio_coroutine(with_headers())
        assert scope.cancelled_caught
        raise ChannelError(f"twilio: no answer within {self._config.timeout_s:g} s")

    def _failure(self, message: Message, exc: BaseException, headers: list[Mapping[str, str]]) -> Receipt:
        """The one place library exceptions become receipts."""
        if isinstance(exc, TwilioRestException | TwilioServiceException):
            status, code = int(exc.status), _int(exc.code)
            text = f"twilio: HTTP {status} error {code}: {_rest_message(exc)}"
            if status in (401, 403):
                self._send_refused = f"twilio: sending refused ({text})"
                return failed(message, text, retryable=False)
            if status == 429:
                wait = _retry_after(headers)
                return failed(message, text, retryable=True,
                              retry_after_s=self._config.retry_after_s if wait is None else wait)
            if status >= 500:
                return failed(message, f"{text} (outcome unknown)", retryable=True)
            if code in _INVALID_NUMBER:
                return failed(message, f"twilio: {_INVALID_NUMBER[code]} {message.address} (error {code})",
                              retryable=False)
            return failed(message, text, retryable=False)
        if isinstance(exc, aiohttp.ClientConnectorError):
            # The connection was never made, so Twilio cannot have the message.
            return failed(message, f"twilio: cannot connect: {exc}", retryable=True)
        return failed(message, f"twilio: {type(exc).__name__}: {exc} (outcome unknown)", retryable=True)

    async def _find(self, message: Message, since: datetime) -> Receipt | None:
        # Twilio's DateSent filter skips messages still queued (no date_sent yet), so the newest
        # page without it is read too.
        for date_filter in ({"date_sent_after": since.strftime("%Y-%m-%d")}, {}):
            try:
                found = await self._call(self._messages.list_async(
                    to=message.address, page_size=50, limit=200 if date_filter else 50, **date_filter))
            except _CALL_ERRORS as exc:
                raise ChannelError(f"twilio: cannot list messages to {message.address}: {exc}") from exc
            for item in found:
                if self._is_ours(item, message, since):
                    return receipt_for(message.idempotency_key, item.sid, item.status or "",
                                       str(item.error_code or ""))
        return None

    def _is_ours(self, item: Any, message: Message, since: datetime) -> bool:
        sender_ok = (item.from_ == self._config.from_number if self._config.from_number
                     else item.messaging_service_sid == self._config.messaging_service_sid)
        created = item.date_created
        return (sender_ok and item.body == message.body and item.direction == "outbound-api"
                and (not isinstance(created, datetime) or created >= since.replace(microsecond=0)))


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _rest_message(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioServiceException):
        return exc.detail or exc.title
    # twilio prefixes the provider's message with its own "Unable to create record: ".
    return str(exc.msg).split(": ", 1)[-1]


def _retry_after(headers: list[Mapping[str, str]]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if there is one."""
    for received in reversed(headers):
        value = received.get("Retry-After")
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None
    return None


async def _build_client(config: TwilioConfig) -> tuple[Client, _HttpClient]:
    # aiohttp's session must be made inside the running asyncio loop.
    http = _HttpClient(config.api_base_url)
    client = Client(config.account_sid, config.auth_token, http_client=http)
    # The configured base URL is authoritative: TWILIO_EDGE / TWILIO_REGION from the environment
    # would rewrite the host before our client sees it.
    client.edge = client.region = None
    return client, http


@asynccontextmanager
async def open_twilio(config: TwilioConfig, *, on_update: UpdateCallback | None = None
                      ) -> AsyncIterator[TwilioChannel]:
    """Open the Twilio channel; the asyncio loop and the HTTP session live until the block exits.

    No request is made on opening (call ``health()`` to check credentials). ``on_update`` receives
    the receipts of status callbacks passed to ``accept_callback``.
    """
    async with trio_asyncio.open_loop() as loop:
        client, http = await loop.run_aio_coroutine(_build_client(config))
        try:
            yield TwilioChannel(config, loop, client, on_update)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await loop.run_aio_coroutine(http.close())


def status_callback_route(channel: TwilioChannel, path: str) -> Route:
    """A Starlette route for Twilio's status callbacks at ``path`` (the path part of
    ``status_callback_url`` as the gateway's HTTP server sees it): 204 when verified and passed to
    ``on_update``, 403 for a bad signature, 400 for a malformed form."""

    async def endpoint(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        url = channel.public_callback_url(request.url.query)
        try:
            verify(url, form, request.headers.get(SIGNATURE_HEADER), channel._config.auth_token)
        except ProtocolError as exc:
            return Response(str(exc), status_code=403, media_type="text/plain")
        try:
            channel._accept_verified(url, form)
        except ProtocolError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        return Response(status_code=204)

    return Route(path, endpoint, methods=["POST"])
