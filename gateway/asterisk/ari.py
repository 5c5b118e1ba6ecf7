"""Thin Trio driver over asyncari: the only module that touches the ARI library.

Library exceptions become ``AriError`` (or ``ChannelGone`` for a 404) here and nowhere else.
Events are handed out as the typed Structs of ``gateway.protocols.ari_events``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import anyio
import httpx
import msgspec
import trio
from anyio.abc import SocketAttribute
from asyncari.client import Client
from asyncari.model import OperationError
from asyncswagger11.http_client import ApiKeyAuthenticator, AsynchronousHttpClient
from wsproto.events import CloseConnection, Ping, TextMessage

from gateway.asterisk.ari_http import RestClient
from gateway.errors import AriError
from gateway.protocols import ari_events as ev

if TYPE_CHECKING:  # runtime import would cycle once the gateway config holds channel configs
    from gateway.settings import AsteriskConfig

log = logging.getLogger(__name__)
# asyncari formats every event for a debug line even when debug is off, and httpx logs URLs
# carrying the ARI key at INFO: keep these loggers quiet
# and cheap (measured: the formatting costs more than our own handling of the event).
for _name in ("asyncari", "asyncari.client", "asyncari.model", "asyncswagger11", "httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.ERROR)


_json_encode = msgspec.json.Encoder().encode
REST_TIMEOUT_S = 10.0
WS_READ_SIZE = 65536


class ChannelGone(AriError):
    """The channel or bridge no longer exists (the caller hung up meanwhile)."""


class Ari:
    """ARI operations the gateway uses. Every method raises AriError/ChannelGone on failure.

    REST goes through our small keep-alive client (``gateway.asterisk.ari_http``) rather than asyncari's
    swagger layer or httpx: profiled, those cost 1-1.5 ms of CPU per request, most of the
    gateway's CPU at 50-100 calls/s.
    """

    def __init__(self, client: Any, app: str, http: RestClient) -> None:
        self._client = client
        self._http = http
        self.app = app
        # asyncari turns every event into its object model and dispatches it to per-object
        # listeners we do not use; profiled at ~1 ms per event, it capped intake at ~50 calls/s.
        # Take the raw JSON straight from its websocket reader instead (backpressure preserved).
        self._send, self._receive = trio.open_memory_channel[ev.Event](1000)
        self._handler: Callable[[ev.Event], None] | None = None  # ``route_to``
        if client is not None:
            client.process_ws = self._deliver

    async def _deliver(self, event: ev.Event) -> None:
        """From the websocket reader: to the handler, there and then, or else into the events' channel."""
        if self._handler is None:
            await self._send.send(event)
        else:
            self._handle(self._handler, event)

    @staticmethod
    def _handle(handler: Callable[[ev.Event], None], event: ev.Event) -> None:
        try:
            handler(event)
        except Exception:  # one event's bug must not end the websocket, and with it every caller's events
            log.exception("ARI event %s not handled", type(event).__name__)

    async def _call(self, method: str, path: str, params: dict[str, Any] | None = None,
                    body: dict[str, Any] | None = None, gone: tuple[int, ...] = (404,)) -> Any:
        return _decoded(method, path, await self._reply(method, path, params, body, gone))

    async def _reply(self, method: str, path: str, params: dict[str, Any] | None = None,
                     body: dict[str, Any] | None = None, gone: tuple[int, ...] = (404,)) -> bytes:
        status, data = await self._exchange(method, path, params, body)
        return _checked(method, path, status, data, gone)

    async def _exchange(self, method: str, path: str, params: dict[str, Any] | None = None,
                        body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; AriError when no reply comes within ``REST_TIMEOUT_S``."""
        target = _target(path, params)
        status, data = 0, b""
        with trio.move_on_after(REST_TIMEOUT_S):
            status, data = await self._http.request(method, target, _json_encode(body) if body is not None else None)
        if status == 0:
            raise AriError(f"ARI {method} {path}: no reply within {REST_TIMEOUT_S} s")
        return status, data

    async def answer(self, channel_id: str) -> None:
        await self._call("POST", f"channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self._call("DELETE", f"channels/{channel_id}", {"reason": reason})

    async def originate(self, endpoint: str, channel_id: str, *, timeout_s: int, caller_id: str = "",
                        app_args: str = "", variables: dict[str, str] | None = None) -> None:
        """Dial ``endpoint``; once it answers the channel enters our Stasis app (StasisStart).

        ARI subscribes the app to the new channel, so Dial and ChannelDestroyed events tell why a
        call that never answers ended. ``channel_id`` is ours, so events can be matched to the
        call even if they arrive before this request returns.
        """
        params: dict[str, Any] = {"endpoint": endpoint, "app": self.app, "channelId": channel_id,
                                  "timeout": timeout_s}
        params.update({"callerId": caller_id} if caller_id else {})
        params.update({"appArgs": app_args} if app_args else {})
        await self._call("POST", "channels", params, body={"variables": variables} if variables else None)

    async def ring(self, channel_id: str) -> None:
        await self._call("POST", f"channels/{channel_id}/ring")

    async def play(self, channel_id: str, media: str, playback_id: str, lang: str = "") -> None:
        params = {"media": media, **({"lang": lang} if lang else {})}
        await self._call("POST", f"channels/{channel_id}/play/{playback_id}", params)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable (the dialplan reads it if the call falls back to it later)."""
        await self._call("POST", f"channels/{channel_id}/variable", {"variable": name, "value": value})

    async def stop_playback(self, playback_id: str) -> None:
        await self._call("DELETE", f"playbacks/{playback_id}")

    async def subscribe(self, channel_id: str) -> None:
        """Receive this channel's events even after it leaves Stasis (e.g. into a Dial). ChannelGone if the
        channel no longer exists (Asterisk says so here with 422 "Event source does not exist"). The reply (the
        application, naming every channel it is subscribed to) is not decoded: nothing here reads it."""
        await self._reply("POST", *self._subscription(channel_id), gone=(404, 422))

    def _subscription(self, channel_id: str) -> tuple[str, dict[str, Any]]:
        return f"applications/{self.app}/subscription", {"eventSource": f"channel:{channel_id}"}

    async def answer_and_subscribe(self, channel_id: str) -> bool:
        """``answer`` and ``subscribe`` written at once (HTTP pipelining: one write to Asterisk and one wait for
        both replies instead of two of each). Raises as ``answer`` does; returns whether the subscription was
        made (its failure is logged: ``subscribe`` again before the caller leaves Stasis). If the pair's
        exchange itself fails, each is asked again alone (both may be repeated: neither changes anything
        the second time); if no reply came within ``REST_TIMEOUT_S``, AriError (as for ``answer``)."""
        path, params = self._subscription(channel_id)
        answer = ("POST", _target(f"channels/{channel_id}/answer"), None)
        subscription = ("POST", _target(path, params), None)
        replies: list[tuple[int, bytes]] = []
        with trio.move_on_after(REST_TIMEOUT_S) as waited:
            try:
                replies = await self._http.pipeline([answer, subscription])
            except AriError as exc:
                log.warning("ARI answer and subscription of %s together failed (%s); asking each alone",
                            channel_id, exc)
        if waited.cancelled_caught:  # Asterisk is not answering: asking again would only double the wait
            raise AriError(f"ARI POST {answer[1]}: no reply within {REST_TIMEOUT_S} s")
        if replies:
            _checked("POST", answer[1], *replies[0], gone=(404,))
        else:  # the pair's exchange failed
            await self.answer(channel_id)
        try:
            if replies:
                _checked("POST", path, *replies[1], gone=(404, 422))
            else:
                await self.subscribe(channel_id)
        except AriError as exc:  # ChannelGone too: the answer went through, the hang-up's events follow
            log.warning("ARI subscription to %s failed (asked again at the hand-off): %s", channel_id, exc)
            return False
        return True

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, label: str = "") -> None:
        params: dict[str, Any] = {"context": context, "extension": extension}
        params.update({"label": label} if label else {"priority": 1})
        await self._call("POST", f"channels/{channel_id}/continue", params)

    async def filter_events(self, types: list[str]) -> None:
        """Ask Asterisk to send only these event types to our app (Asterisk 16.?+ eventFilter).

        Each event carries full channel snapshots; the ones we ignore were most of the
        websocket traffic and of the gateway's CPU per call.
        """
        await self._call("PUT", f"applications/{self.app}/eventFilter", body={
            "allowed": [{"type": t} for t in types], "disallowed": []})

    async def ping(self) -> None:
        await self._call("GET", "asterisk/ping")

    async def check_registered(self) -> None:
        """Raise AriError unless Asterisk still knows our Stasis app (it forgets it on restart)."""
        await self._call("GET", f"applications/{self.app}")

    async def channels(self) -> list[ev.Channel]:
        """Every channel's snapshot. Raises AriError (also for a reply that is not a channel list)."""
        try:
            return ev.channels_json(await self._reply("GET", "channels"))
        except ev.EventError as exc:
            raise AriError(f"ARI GET channels: {exc}") from exc

    async def variable(self, channel_id: str, name: str) -> str:
        """A channel variable's whole value ("" when unset). ChannelGone if the channel is gone."""
        path = f"channels/{channel_id}/variable"
        status, data = await self._exchange("GET", path, {"variable": name})
        if status == 404 and b"Provided variable was not found" in data:
            return ""  # Asterisk's words for a variable not set on a channel that exists
        reply = _decoded("GET", path, _checked("GET", path, status, data, (404,)))
        value = reply.get("value") if isinstance(reply, dict) else None
        return value if isinstance(value, str) else ""

    async def variables(self, channel_id: str, names: list[str]) -> dict[str, str]:
        """Several variables of one channel (one request each: ARI reads one at a time)."""
        return {name: await self.variable(channel_id, name) for name in names}

    async def started_wall(self) -> float:
        """When this Asterisk started (wall clock, ``/asterisk/info``). Raises AriError."""
        info = await self._call("GET", "asterisk/info", {"only": "status"})
        status = info.get("status") if isinstance(info, dict) else None
        found = ev.wall_of(str(status.get("startup_time", ""))) if isinstance(status, dict) else None
        if found is None:
            raise AriError(f"ARI asterisk/info: no startup time in {str(info)[:200]}")
        return found

    async def events(self) -> AsyncIterator[ev.Event]:
        """Typed events until the websocket closes (decoded by its reader, malformed ones logged there)."""
        async for event in self._receive:
            yield event

    def route_to(self, handler: Callable[[ev.Event], None]) -> None:
        """From now on the websocket reader hands each event to ``handler`` itself, in order (``handler`` must
        not block: it runs in the reader). Events waiting in ``events()`` go first. Why: through the channel,
        every event cost two scheduler steps more (the reader's send, the consumer's wake-up), a sixth of the
        gateway's per-call steps (measured at 50 calls/s). ``closed()`` then waits for the websocket's end."""
        while True:
            try:
                event = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            self._handle(handler, event)
        self._handler = handler

    async def closed(self) -> None:
        """After ``route_to``: return when the websocket has closed."""
        assert self._handler is not None, "route_to first: events would wait here unhandled"
        async for event in self._receive:  # none come this way now; the channel only closes
            self._handle(self._handler, event)


def _target(path: str, params: dict[str, Any] | None = None) -> str:
    """A request's target under ARI's prefix: the path quoted, the parameters encoded."""
    return f"{quote(path)}?{urlencode(params)}" if params else quote(path)


def _checked(method: str, path: str, status: int, data: bytes, gone: tuple[int, ...]) -> bytes:
    """The body of a reply that succeeded; ChannelGone for a status in ``gone``, else AriError."""
    if status in gone:
        raise ChannelGone(f"ARI {method} {path}: not found ({data[:200]!r})")
    if status >= 400:
        raise AriError(f"ARI {method} {path} failed ({status}): {data[:200]!r}")
    return data


def _decoded(method: str, path: str, data: bytes) -> Any:
    try:
        return msgspec.json.decode(data) if data else None
    except msgspec.DecodeError as exc:
        raise AriError(f"ARI {method} {path}: reply is not JSON") from exc


async def quietly(operation: Awaitable[object]) -> None:
    """Await a clean-up step whose target may already be gone (hang-up, stop, destroy): its
    failure changes nothing, so it is logged at debug level and not raised."""
    try:
        await operation
    except AriError as exc:
        log.debug("clean-up step failed (already gone?): %s", exc)


class _Client(Client):  # type: ignore[misc]
    """asyncari's client, telling us when its websocket reader ends (Asterisk went away)."""

    closed: trio.MemorySendChannel[ev.Event] | None = None

    async def _run(self, evt: Any = None) -> None:
        try:
            await super()._run(evt)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            log.warning("ARI websocket ended: %r", exc)  # Asterisk stopped; the events stream ends
        finally:
            if self.closed is not None:
                self.closed.close()

    async def _Client__run(self, ws: Any) -> None:  # noqa: N802 (asyncari's private Client.__run, mangled)
        """asyncari's websocket loop, leaner: no per-event watchdog (a second task woken twice and a 0.5 s
        deadline for every event, profiled at ~12 % of the gateway's CPU at 50 calls/s), and the socket read
        here, 64 KiB at a time, into asyncwebsockets' own wsproto connection (it reads 4 KiB, less than a
        StasisStart carrying a PIDF-LO, and copies every message through a StringIO). Pings are answered."""
        conn, sock = ws._connection, ws._sock  # asyncwebsockets 0.9's, after its handshake
        raw = sock.extra(SocketAttribute.raw_socket)
        parts: list[str] = []
        try:
            while True:
                for message in conn.events():  # first those that came with the handshake
                    if isinstance(message, TextMessage):
                        parts.append(message.data)
                        if message.message_finished:
                            await self._dispatch("".join(parts))
                            parts.clear()
                    elif isinstance(message, Ping):
                        async with ws._send_lock:
                            await sock.send(conn.send(message.response()))
                    elif isinstance(message, CloseConnection):
                        return
                conn.receive_data(await _receive(raw))
        except (anyio.ClosedResourceError, trio.ClosedResourceError):
            pass  # closed here (the app is leaving); asyncari ends its loop the same way

    async def _dispatch(self, text: str) -> None:
        try:
            event = ev.decode_json(text)
        except ev.EventError as exc:
            log.error("ignoring an ARI event: %s", exc)
            return
        if event is not None:
            await self.process_ws(event)


async def _receive(raw: socket.socket) -> bytes:
    """The websocket's next bytes, read from its socket itself: wait, then read. Through anyio's stream over
    Trio's socket every read first tried a read that fails (one system call more per event: the reader is
    always ahead of Asterisk at these rates) and went through two layers of wrappers. The wait is also the
    reader's checkpoint: a busy websocket cannot starve other tasks."""
    while True:
        await trio.lowlevel.wait_readable(raw)
        try:
            data = raw.recv(WS_READ_SIZE)
        except BlockingIOError:
            continue  # readiness without data (it happens): wait again
        if not data:
            raise anyio.EndOfStream
        return data


@asynccontextmanager
async def connect(cfg: AsteriskConfig) -> AsyncIterator[Ari]:
    """Connect to ARI and register the Stasis app; raises AriError if Asterisk is unreachable.

    ``Ari.events()`` ends when the websocket closes; the caller reconnects.
    """
    async with connect_app(cfg.http_port, cfg.ari_user, cfg.ari_password, cfg.app) as ari:
        yield ari


@asynccontextmanager
async def connect_app(http_port: int, user: str, password: str, app: str) -> AsyncIterator[Ari]:
    """``connect`` for any Stasis app on the local Asterisk (the voice call-out has its own app)."""
    url = f"http://127.0.0.1:{http_port}/"
    http = AsynchronousHttpClient(auth=ApiKeyAuthenticator("127.0.0.1", f"{user}:{password}"))
    rest = RestClient("127.0.0.1", http_port, user, password)
    try:
        # Fail fast, as our own error, while Asterisk is away (asyncari would raise an ExceptionGroup).
        await Ari(None, app, rest).ping()
        async with anyio.create_task_group() as tg:
            client = _Client(tg, url, app, http)
            ari = Ari(client, app, rest)
            client.closed = ari._send
            async with client:
                try:
                    yield ari
                finally:
                    tg.cancel_scope.cancel()
    except (httpx.HTTPError, OSError, OperationError) as exc:
        raise AriError(f"cannot connect to ARI at {url}: {exc!r}") from exc
    finally:
        with anyio.CancelScope(shield=True):
            await http.close()
            await rest.aclose()
