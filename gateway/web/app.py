"""HTTP API (Starlette on Hypercorn's Trio worker): incidents, live events, health, metrics.

Bodies are the msgspec records of ``gateway.records``; the OpenAPI document is generated
from the same Structs, so the API and its description cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.errors import NotFound, StoreError
from gateway.incident.bus import Bus
from gateway.incident.records import Incident, IncidentSummary
from gateway.incident.store import AsyncStore
from gateway.metrics import Metrics

_json = msgspec.json.Encoder()


class Health(msgspec.Struct, kw_only=True):
    status: str
    ari_connected: bool
    ami_connected: bool
    asterisk_fully_booted: bool
    asterisk_channels: int | None
    queue_length: int
    active_calls: int
    positions: dict[str, str]
    store: str
    warning_channels: dict[str, str] = {}
    responder_channels: dict[str, str] = {}
    scenario_runs: int = 0
    sla_breaches: int = 0
    alarm_sites: dict[str, float | None] = {}  # account -> last periodic test (wall clock)


class ApiError(msgspec.Struct):
    error: str


def json_response(body: object, status: int = 200) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 document whose schemas come from the msgspec records."""
    from gateway.scenario.machine import Run
    from gateway.units.board import AssignBody, Proposals
    from gateway.units.board import StatusBody as UnitStatusBody
    from gateway.units.model import Unit
    from gateway.web.scenario import CategoryBody, NewIncident, StatusBody, TextBody

    (incident, summary, health, error, new, category, status, text, runs, unit, units, unit_status, assign,
     proposals), components = msgspec.json.schema_components(
        [Incident, list[IncidentSummary], Health, ApiError, NewIncident, CategoryBody, StatusBody, TextBody,
         list[Run], Unit, list[Unit], UnitStatusBody, AssignBody, Proposals],
        ref_template="#/components/schemas/{name}")
    path_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]

    def post(summary_text: str, body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        return {"post": {"summary": summary_text, "parameters": path_id,
                         "requestBody": {"content": {"application/json": {"schema": body}}},
                         "responses": ok(reply) | not_found}}

    def ok(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
        return {"200": {"description": "OK", "content": {media: {"schema": schema}}}}

    not_found = {"404": {"description": "No such incident", "content": {"application/json": {"schema": error}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Emergency telephony gateway", "version": "1"},
        "paths": {
            "/incidents": {"get": {"summary": "Recent incidents, newest first", "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "since", "in": "query", "schema": {"type": "number"}}], "responses": ok(summary)},
                "post": {"summary": "A dispatcher opens an incident (runs its category's scenario)",
                         "requestBody": {"content": {"application/json": {"schema": new}}},
                         "responses": {"201": {"description": "Created",
                                               "content": {"application/json": {"schema": incident}}}}}},
            "/incidents/{id}/category": post("Change the category: the scenario switches", category, incident),
            "/incidents/{id}/status": post("Move the response status forward", status, incident),
            "/incidents/{id}/reply": post("Answer the person who reported by Telegram or SMS", text, incident),
            "/incidents/{id}/escalation": {"get": {"summary": "The incident's scenario runs", "parameters": path_id,
                                                   "responses": ok(runs)}},
            "/incidents/{id}/assign": post("Assign a free unit", assign, unit),
            "/incidents/{id}/proposals": {"get": {"summary": "The nearest free units", "parameters": path_id,
                                                  "responses": ok(proposals)}},
            "/units": {"get": {"summary": "Every unit with status and position", "responses": ok(units)}},
            "/units/{id}/status": post("A unit's status or position", unit_status, unit),
            "/acks/{token}": {"post": {"summary": "Acknowledge a notification from the console",
                                       "responses": ok({"type": "object"})}},
            "/incidents/{id}": {"get": {"summary": "One incident with its timeline", "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": ok(incident) | not_found}},
            "/events": {"get": {"summary": "Server-sent events: one IncidentSummary per new or changed incident",
                                "responses": ok({"type": "string"}, "text/event-stream")}},
            "/health": {"get": {"summary": "Service health", "responses": ok(health)}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": ok({"type": "string"}, "text/plain")}},
            "/openapi.json": {"get": {"summary": "This document", "responses": ok({"type": "object"})}},
        },
        "components": {"schemas": components},
    }


def build_app(store: AsyncStore, bus: Bus, metrics: Metrics, health: Callable[[], Health],
              extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    async def list_incidents(request: Request) -> Response:
        try:
            limit = min(1000, max(1, int(request.query_params.get("limit", "100"))))
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            return json_response(ApiError("limit must be an integer and since a number"), 400)
        return json_response(await store.recent(limit, since))

    async def get_incident(request: Request) -> Response:
        try:
            return json_response(await store.get(request.path_params["id"]))
        except NotFound as exc:
            return json_response(ApiError(str(exc)), 404)

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            yield b": incident events\n\n"
            async with bus.subscribe() as changes:
                while True:
                    with trio.move_on_after(15):
                        change = await changes.receive()
                        yield b"event: incident\ndata: " + _json.encode(change) + b"\n\n"
                        continue
                    yield b": keep-alive\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def get_health(request: Request) -> Response:
        report = health()
        try:
            await store.recent(1)
        except StoreError as exc:
            report.store, report.status = f"error: {exc}", "degraded"
        return json_response(report, 200 if report.status == "ok" else 503)

    async def get_metrics(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    document = _json.encode(openapi())

    async def get_openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    return Starlette(routes=[
        Route("/incidents", list_incidents), Route("/incidents/{id}", get_incident), Route("/events", events),
        Route("/health", get_health), Route("/metrics", get_metrics), Route("/openapi.json", get_openapi),
        *extra_routes,
    ], middleware=[Middleware(BodyLimit)])


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


async def run_server(app: Starlette, host: str, port: int,
                     *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; ``started()`` reports the bound addresses once listening."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
