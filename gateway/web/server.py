"""Serving the API: Hypercorn's Trio worker, and a body limit in front of every route."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from gateway.web.errors import ApiError

_json = msgspec.json.Encoder()


log = logging.getLogger(__name__)
MAX_BODY = 1 << 20  # webhooks, reports, API bodies
BODY_TIMEOUT_S = 10.0  # a whole body, however it trickles in
LARGE_BODIES = {"/recipients": 1 << 30}  # recipient list imports (CSV) may be large


class _TooLarge(BaseException):
    """Not an Exception: the app's own error handling must not turn it into a 500 on its way out."""


class _TooSlow(BaseException):
    """As _TooLarge."""


class BodyLimit:
    """Refuse request bodies over the limit before they are read into memory, and bodies not complete
    within ``timeout_s`` (a client trickling a byte a second holds a request, and its memory, for as long
    as it likes otherwise): the webhooks and report endpoints face the internet, and one huge or endless
    POST must not take the process (and 112 intake) down. Large imports get their own size limit and a
    proportionate time."""

    def __init__(self, app: Any, limit: int = MAX_BODY, larger: dict[str, int] | None = None,
                 timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.limit = limit
        self.larger = LARGE_BODIES if larger is None else larger
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next((n for prefix, n in self.larger.items() if scope["path"].startswith(prefix)), self.limit)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await _refuse(send, limit)
            return
        allowed_s = self.timeout_s + max(0, limit - MAX_BODY) / (100 << 20) * 60  # an import: 1 min per 100 MB
        deadline = trio.current_time() + allowed_s
        received, started, complete = 0, False, False

        async def counted() -> Any:
            nonlocal received, complete
            if complete:  # after the body, receive() waits for the client to go (SSE): no deadline
                return await receive()
            with trio.move_on_at(deadline):
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    complete = not message.get("more_body", False)
                    if received > limit:
                        raise _TooLarge
                return message
            raise _TooSlow

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _refuse(send, limit)
        except _TooSlow:
            log.info("%s %s: body not complete within %.0f s, refused", scope.get("method"), scope["path"],
                     allowed_s)
            if not started:
                await _answer(send, 408, f"request body not complete within {allowed_s:.0f} s")


async def _refuse(send: Any, limit: int) -> None:
    await _answer(send, 413, f"request body over {limit} bytes (or a bad Content-Length)")


async def _answer(send: Any, status: int, message: str) -> None:
    body = _json.encode(ApiError(message))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # the unread rest of the body makes the connection unusable
    await send({"type": "http.response.body", "body": body})


async def run_server(app: Any, host: str, port: int, certfile: str = "", keyfile: str = "",
                     *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled (HTTPS with ``certfile``/``keyfile``); ``started()`` reports the bound
    addresses once listening."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    if certfile:
        config.certfile, config.keyfile = certfile, keyfile
    config.accesslog = None
    config.errorlog = log  # a request that fails inside the app is logged here with its traceback
    config.graceful_timeout = 1.0
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]


class SecurityHeaders:
    """Every answer tells the browser to run only our own scripts and styles (no inline script, no
    other origin), never to frame us, guess types or send our URLs elsewhere: hostile text in a
    caller's name or a Telegram message stays text even if a page forgot to escape it."""

    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                     b"img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
                                     b"object-src 'none'; base-uri 'none'; form-action 'self'; "
                                     b"frame-ancestors 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]

    def __init__(self, app: Any, images_from: str = "") -> None:
        """``images_from``: the origin of the centre's tile server, the one place images may come from."""
        self.app = app
        self.headers = [(name, value.replace(b"img-src 'self'", b"img-src 'self' " + images_from.encode())
                         if images_from and name == b"content-security-policy" else value)
                        for name, value in self.HEADERS]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, with_headers)
