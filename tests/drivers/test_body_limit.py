"""Oversized request bodies are refused before they are read into memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
