"""Serving the API: Hypercorn's Trio worker, and a body limit in front of every route."""

from __future__ import annotations

from typing import Any

import msgspec
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from gateway.web.errors import ApiError

_json = msgspec.json.Encoder()


MAX_BODY = 1 << 20  # webhooks, reports, API bodies
LARGE_BODIES = {"/recipients": 1 << 30}  # recipient list imports (CSV) may be large


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over the limit before they are read into memory: the webhooks and report
    endpoints face the internet, and one huge POST must not take the process (and 112 intake) down."""

    def __init__(self, app: Any, limit: int = MAX_BODY, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.larger = LARGE_BODIES if larger is None else larger

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next((n for prefix, n in self.larger.items() if scope["path"].startswith(prefix)), self.limit)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await _refuse(send, limit)
            return
        received, started = 0, False

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Any, limit: int) -> None:
    body = _json.encode(ApiError(f"request body over {limit} bytes (or a bad Content-Length)"))
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # the unread rest of the body makes the connection unusable
    await send({"type": "http.response.body", "body": body})


async def run_server(app: Any, host: str, port: int,
                     *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; ``started()`` reports the bound addresses once listening."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
