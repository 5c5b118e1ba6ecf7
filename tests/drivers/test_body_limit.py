"""Oversized request bodies are refused before they are read into memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.web.app import build_app
from gateway.web.server import BodyLimit, run_server


async def echo(request: Request) -> Response:
    return Response(str(len(await request.body())))


async def test_bodies_over_the_limit_are_refused_declared_or_streamed() -> None:
    app = Starlette(routes=[Route("/in", echo, methods=["POST"]), Route("/recipients", echo, methods=["POST"])],
                    middleware=[Middleware(BodyLimit, limit=1000, larger={"/recipients": 5000})])

    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"x" * 500

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(run_server, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.post("/in", content=b"x" * 900)).text == "900"
                declared = await client.post("/in", content=b"x" * 1001)
                assert declared.status_code == 413 and "over 1000 bytes" in declared.json()["error"]
                streamed = await client.post("/in", content=chunks(10))  # chunked: no Content-Length
                assert streamed.status_code == 413
                assert (await client.post("/recipients", content=b"x" * 4000)).text == "4000"
            nursery.cancel_scope.cancel()


async def test_a_body_trickling_in_is_refused_once_its_time_is_up_and_streams_are_not() -> None:
    """A client sending a byte a second held a request (and its memory) for as long as it liked."""
    app = Starlette(routes=[Route("/in", echo, methods=["POST"]), Route("/stream", stream)],
                    middleware=[Middleware(BodyLimit, timeout_s=1.0)])

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x"
            await trio.sleep(0.5)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(run_server, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=url) as client:
                started = trio.current_time()
                slow = await client.post("/in", content=trickle())
                assert slow.status_code == 408 and "within 1 s" in slow.json()["error"]
                assert trio.current_time() - started < 5
                async with client.stream("GET", "/stream") as events:  # no body: the deadline does not apply
                    lines = [line async for line in events.aiter_lines() if line]
                assert lines == ["tick 0", "tick 1", "tick 2"]
            nursery.cancel_scope.cancel()


async def stream(request: Request) -> StreamingResponse:
    async def ticks() -> AsyncIterator[bytes]:
        for n in range(3):
            await trio.sleep(0.8)  # longer, in all, than the body deadline
            yield f"tick {n}\n".encode()
    return StreamingResponse(ticks())


async def test_a_bug_in_a_route_answers_json_500_and_is_logged_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = build_app([Route("/broken", broken)])
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(run_server, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=url) as client:
                reply = await client.get("/broken")
            while not (logged := [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]):
                await trio.sleep(0.05)  # the server logs once the answer is on its way
            nursery.cancel_scope.cancel()
    assert reply.status_code == 500 and reply.json() == {"error": "internal error (RuntimeError); it is logged"}
    assert logged[0].name == "gateway.web.server"
