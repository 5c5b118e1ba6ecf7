"""Our websocket loop in place of asyncari's: every JSON event handed on in order, the rest skipped, a
fragmented message joined, a ping answered, the close obeyed. Real wsproto connections on both ends
(in memory): the server's bytes are what Asterisk would send, in reads of any size."""

from __future__ import annotations

from typing import Any

import anyio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request, TextMessage

from gateway.asterisk.ari import _Client
from gateway.protocols import ari_events as ev

START = '{"type": "StasisStart", "args": ["caller"], "channel": {"id": "c1", "channelvars": {"PIDF": "%s"}}}'
DIAL = '{"type": "Dial", "peer": {"id": "p1"}, "caller": {"id": "c1"}, "dialstatus": "RINGING"}'


class Stream:
    """The socket: gives the server's bytes in ``chunk``-sized reads, records what the client sends."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk, self.sent = data, chunk, b""

    async def receive(self, max_bytes: int) -> bytes:
        if not self.data:
            raise anyio.EndOfStream
        piece, self.data = self.data[: min(self.chunk, max_bytes)], self.data[min(self.chunk, max_bytes):]
        return piece

    async def send(self, data: bytes) -> None:
        self.sent += data


class Websocket:
    """asyncwebsockets' Websocket after its handshake: the two attributes our loop uses, and its lock."""

    def __init__(self, server_bytes: bytes, client: WSConnection, chunk: int) -> None:
        self._connection = client
        self._sock = Stream(server_bytes, chunk)
        self._send_lock = anyio.Lock()


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
    ws = Websocket(wire, client, chunk)
    try:
        await reader._Client__run(ws)
    except anyio.EndOfStream:
        pass  # the server's bytes ran out (the caller, asyncari's _run, logs it)
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
