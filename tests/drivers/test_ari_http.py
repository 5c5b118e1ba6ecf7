"""gateway.asterisk.ari_http.RestClient against a scripted HTTP server on loopback: keep-alive reuse,
the one retry on a connection closed unanswered, chunked and close-delimited replies, and bad replies
becoming AriError (never a hang, never another exception type)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from gateway.asterisk import ari as ari_module
from gateway.asterisk.ari import Ari, ChannelGone
from gateway.asterisk.ari_http import RestClient
from gateway.errors import AriError

# (request number on this server, request) -> reply, or (reply, then close), or None: close unanswered
Script = Callable[[int, bytes], bytes | tuple[bytes, bool] | None]


@asynccontextmanager
async def server(script: Script,
                 chunks: list[bytes] | None = None) -> AsyncIterator[tuple[int, list[bytes], list[int]]]:
    """A server answering each request by ``script``; yields (port, requests seen, connections opened).
    ``chunks``: each read from a connection is added there."""
    requests: list[bytes] = []
    connections: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        connections.append(len(connections))
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    if chunks is not None:
                        chunks.append(data)
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                body, buffer = buffer[:length], buffer[length:]
                requests.append(head + b"\r\n\r\n" + body)
                reply = script(len(requests), requests[-1])
                if reply is None:
                    return
                data, close = reply if isinstance(reply, tuple) else (reply, False)
                await stream.send_all(data)
                if close:
                    return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield port, requests, connections
        nursery.cancel_scope.cancel()


def ok(body: bytes = b"", status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nServer: Asterisk\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def test_request_line_headers_body_and_keep_alive() -> None:
    async with server(lambda n, _: ok(b'{"n": %d}' % n)) as (port, requests, connections):
        client = RestClient("127.0.0.1", port, "ecgw", "secret")
        with trio.fail_after(5):
            assert await client.request("POST", "channels/1.2/answer") == (200, b'{"n": 1}')
            assert await client.request("PUT", "applications/ecgw/eventFilter", b'{"a":1}') == (200, b'{"n": 2}')
        await client.aclose()
    first = requests[0].decode()
    assert first.startswith("POST /ari/channels/1.2/answer HTTP/1.1\r\n")
    assert "Authorization: Basic ZWNndzpzZWNyZXQ=\r\n" in first and "Content-Length: 0\r\n" in first
    assert "Content-Type: application/json" in requests[1].decode() and requests[1].endswith(b'{"a":1}')
    assert len(connections) == 1  # kept alive


async def test_no_content_and_chunked_replies() -> None:
    replies = {1: ok(status="204 No Content"),
               2: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n"}
    async with server(lambda n, _: replies[n]) as (port, _requests, connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5):
            assert await client.request("POST", "channels/1/ring") == (204, b"")
            assert await client.request("GET", "channels") == (200, b"[1,2,3]")
        await client.aclose()
    assert len(connections) == 1


async def test_a_connection_closed_unanswered_is_retried_once_on_a_new_one() -> None:
    async with server(lambda n, _: None if n == 2 else ok(b"fine")) as (port, requests, connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5):
            assert await client.request("GET", "asterisk/ping") == (200, b"fine")
            assert await client.request("GET", "asterisk/ping") == (200, b"fine")  # first try dropped
        await client.aclose()
    assert len(requests) == 3 and len(connections) == 2


async def test_connection_close_is_honoured() -> None:
    async with server(lambda n, _: ok(b"x", extra="Connection: close\r\n")) as (port, _requests, connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5):
            for _ in range(3):
                assert await client.request("GET", "x") == (200, b"x")
        await client.aclose()
    assert len(connections) == 3


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # closed mid-body
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 2000 Huge\r\nContent-Length: 0\r\n\r\n",
])
async def test_bad_replies_are_ari_errors(reply: bytes) -> None:
    async with server(lambda n, _: (reply, True)) as (port, _requests, _connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5), pytest.raises(AriError):
            await client.request("GET", "channels")
        await client.aclose()


async def test_a_server_that_never_answers_twice_and_one_that_is_not_there() -> None:
    async with server(lambda n, _: None) as (port, _requests, _connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5), pytest.raises(AriError, match="closed twice"):
            await client.request("GET", "x")
        await client.aclose()
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    free = listener.getsockname()[1]
    listener.close()
    with trio.fail_after(5), pytest.raises(AriError, match="unreachable"):
        await RestClient("127.0.0.1", free, "u", "p").request("GET", "x")


async def test_a_target_that_would_break_the_request_line_is_refused() -> None:
    client = RestClient("127.0.0.1", 9, "u", "p")
    with pytest.raises(AriError, match="not a request line"):
        client._head("GET", "/ari/x HTTP/1.1\r\nEvil: 1", None)


ANSWER, SUBSCRIBE = ("POST", "channels/c1/answer", None), ("POST", "applications/ecgw/subscription?eventSource=c", None)


async def test_pipelined_requests_go_in_one_write_and_their_replies_come_in_order() -> None:
    replies = {1: ok(status="404 Not Found"), 2: ok(b'{"name": "ecgw"}'), 3: ok(b"pong")}
    chunks: list[bytes] = []
    async with server(lambda n, _: replies[n], chunks) as (port, requests, connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5):
            assert await client.pipeline([ANSWER, SUBSCRIBE]) == [(404, b""), (200, b'{"name": "ecgw"}')]
            assert await client.request("GET", "asterisk/ping") == (200, b"pong")  # the connection is kept
        await client.aclose()
    assert chunks[0] == requests[0] + requests[1]  # both came in one write
    assert requests[1].startswith(b"POST /ari/applications/ecgw/subscription?eventSource=c HTTP/1.1\r\n")
    assert len(connections) == 1


async def test_a_server_closing_after_part_of_a_pipeline_is_an_ari_error() -> None:
    async with server(lambda n, _: (ok(b"x", extra="Connection: close\r\n"), True)) as (port, requests, _c):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5), pytest.raises(AriError, match="closed after 1 of 2"):
            await client.pipeline([ANSWER, SUBSCRIBE])
        await client.aclose()
    assert len(requests) == 1


async def test_a_pipeline_on_a_connection_closed_unanswered_is_sent_again_whole() -> None:
    async with server(lambda n, _: None if n == 2 else ok(str(n).encode())) as (port, requests, connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        with trio.fail_after(5):
            assert await client.request("GET", "asterisk/ping") == (200, b"1")
            assert await client.pipeline([ANSWER, SUBSCRIBE]) == [(200, b"3"), (200, b"4")]
        await client.aclose()
    assert len(requests) == 4 and len(connections) == 2


async def answer_and_subscribe(script: Script) -> tuple[bool | Exception, list[bytes]]:
    """``Ari.answer_and_subscribe`` against ``script``: its result (or what it raised), and the requests seen."""
    async with server(script) as (port, requests, _connections):
        client = RestClient("127.0.0.1", port, "u", "p")
        ari = Ari(None, "ecgw", client)
        with trio.fail_after(5):
            try:
                result: bool | Exception = await ari.answer_and_subscribe("c1")
            except AriError as exc:
                result = exc
        await client.aclose()
    return result, requests


async def test_answer_and_subscribe_together() -> None:
    result, requests = await answer_and_subscribe(lambda n, _: ok(status="204 No Content") if n == 1 else ok(b"{}"))
    assert result is True
    assert requests[0].startswith(b"POST /ari/channels/c1/answer ")
    assert requests[1].startswith(b"POST /ari/applications/ecgw/subscription?eventSource=channel%3Ac1 ")


async def test_answer_of_a_channel_gone_raises_and_a_refused_subscription_is_only_reported() -> None:
    gone, _ = await answer_and_subscribe(lambda n, _: ok(status="404 Not Found"))
    assert isinstance(gone, ChannelGone)
    refused, _ = await answer_and_subscribe(
        lambda n, _: ok(status="204 No Content") if n == 1 else ok(b"{}", status="422 Unprocessable Entity"))
    assert refused is False


async def test_answer_and_subscribe_ask_each_alone_when_the_pair_fails() -> None:
    def script(n: int, _request: bytes) -> bytes | tuple[bytes, bool]:  # the first connection ends after one reply
        return (ok(status="204 No Content"), True) if n == 1 else ok(status="204 No Content")
    result, requests = await answer_and_subscribe(script)
    assert result is True
    assert [r.split(b" ")[1].split(b"?")[0] for r in requests] == [
        b"/ari/channels/c1/answer", b"/ari/channels/c1/answer", b"/ari/applications/ecgw/subscription"]


async def test_answer_and_subscribe_that_get_no_reply_in_time_fail_without_asking_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ari_module, "REST_TIMEOUT_S", 0.2)
    result, requests = await answer_and_subscribe(lambda n, _: b"")  # read, never answered
    assert isinstance(result, AriError) and "no reply within" in str(result)
    assert len(requests) == 2
