"""Our websocket loop in place of asyncari's: every JSON event handed on in order, the rest skipped, a
fragmented message joined, a ping answered, the close obeyed. Real wsproto connections on both ends,
over a real socket pair: the server's bytes are what Asterisk would send, in writes of any size."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import trio
from anyio.abc import SocketAttribute
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request, TextMessage

from gateway.asterisk.ari import _Client
from gateway.protocols import ari_events as ev

START = '{"type": "StasisStart", "args": ["caller"], "channel": {"id": "c1", "channelvars": {"PIDF": "%s"}}}'
DIAL = '{"type": "Dial", "peer": {"id": "p1"}, "caller": {"id": "c1"}, "dialstatus": "RINGING"}'


class Stream:
    """asyncwebsockets' anyio stream: its socket (the client's end of a real socket pair, which the loop reads
    itself), and what the client sends through the stream (pongs)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.sent = sock, b""

    def extra(self, attribute: object) -> socket.socket:
        assert attribute is SocketAttribute.raw_socket
        return self.sock

    async def send(self, data: bytes) -> None:
        self.sent += data


class Websocket:
    """asyncwebsockets' Websocket after its handshake: the two attributes our loop uses, and its lock."""

    def __init__(self, client: WSConnection, sock: socket.socket) -> None:
        self._connection = client
        self._sock = Stream(sock)
        self._send_lock = anyio.Lock()


async def serve(sock: socket.socket, data: bytes, chunk: int) -> None:
    """Asterisk's end: ``data`` in ``chunk``-sized writes, each given a chance to be read alone, then closed."""
    with sock:
        view = memoryview(data)
        while view:
            await trio.lowlevel.wait_writable(sock)
            view = view[sock.send(view[:chunk]):]  # a send may take less than asked
            await trio.lowlevel.checkpoint()


def pair() -> tuple[WSConnection, WSConnection]:
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="127.0.0.1", target="/ari/events")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client, server


async def read(server_messages: list[Any], chunk: int, after: bytes = b"") -> tuple[list[Any], bytes, WSConnection]:
    client, server = pair()
    wire = b"".join(server.send(m) for m in server_messages) + after
    seen: list[Any] = []

    async def process_ws(event: Any) -> None:
        seen.append(event)

    reader = _Client.__new__(_Client)  # only the loop: no connection, no swagger
    reader.process_ws = process_ws
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    ws = Websocket(client, ours)
    with ours, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, theirs, wire, chunk)
            try:
                await reader._Client__run(ws)
            except anyio.EndOfStream:
                pass  # the server's bytes ran out (the caller, asyncari's _run, logs it)
            nursery.cancel_scope.cancel()  # a close obeyed: the rest is never read
    return seen, ws._sock.sent, server


async def test_events_are_handed_on_in_order_until_the_close() -> None:
    messages = [
        TextMessage(data=START % ("x" * 9000)),  # more than 4 KiB
        TextMessage(data="not json"),
        BytesMessage(data=b"\x00"),
        TextMessage(data='["no", "type"]'),
        TextMessage(data='{"type": "ChannelVarset", "variable": "X"}'),  # not ours
        TextMessage(data='{"type": "ChannelDestroyed"}'),  # ours, malformed (no channel)
        TextMessage(data='{"type": "Chan', message_finished=False),  # one event in two frames
        TextMessage(data='nelDestroyed", "channel": {"id": "c2"}, "cause": 16}'),
        CloseConnection(code=1000),
    ]
    after_close = pair()[1].send(TextMessage(data='{"type": "StasisEnd", "channel": {"id": "c3"}}'))  # never read
    for chunk in (1, 7, 4096, 1 << 20):  # however the bytes arrive
        seen, _sent, _server = await read(messages, chunk, after_close)
        assert [type(e) for e in seen] == [ev.StasisStart, ev.ChannelDestroyed], chunk
        assert seen[0].channel.var("PIDF") == "x" * 9000 and seen[1].cause == 16


async def test_a_ping_is_answered_with_its_pong() -> None:
    seen, sent, server = await read([Ping(payload=b"are you there"), TextMessage(data=DIAL)], chunk=3)
    assert [e.dialstatus for e in seen] == ["RINGING"]
    server.receive_data(sent)
    assert [type(e) for e in server.events()] == [Pong]


async def test_the_stream_ending_without_a_close_is_left_to_the_caller() -> None:
    seen, _sent, _server = await read([TextMessage(data=START % "y")], chunk=5)
    assert [e.channel.id for e in seen] == ["c1"]


async def test_the_socket_closed_while_waiting_ends_the_loop_quietly() -> None:
    """The app leaving closes the websocket's socket under a waiting reader (as Trio's socket close does)."""
    client, _server = pair()
    reader = _Client.__new__(_Client)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)

    async def close_soon() -> None:
        await trio.sleep(0.05)
        trio.lowlevel.notify_closing(ours)
        ours.close()

    with theirs, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            await reader._Client__run(Websocket(client, ours))
