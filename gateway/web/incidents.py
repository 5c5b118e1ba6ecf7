"""Reading incidents: the recent list, one incident with its timeline, and the live change stream (SSE).

They hold callers' numbers and locations: every read needs a person or a token (``web.auth``), and
opening an incident's card is written to the audit trail with who opened it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.errors import NotFound
from gateway.incident.bus import Bus
from gateway.incident.records import IncidentSummary
from gateway.incident.store import AsyncStore
from gateway.web.auth import Auth
from gateway.web.errors import error, json_response

_json = msgspec.json.Encoder()
KEEP_ALIVE_S = 15.0


READERS = ("dispatcher", "supervisor", "admin", "drill")  # callers' numbers and locations: not for everyone


def incident_routes(store: AsyncStore, bus: Bus, auth: Auth) -> list[Route]:
    async def list_incidents(request: Request) -> Response:
        if (denied := auth.reader(request, *READERS)) is not None:
            return denied
        try:
            limit = min(1000, max(1, int(request.query_params.get("limit", "100"))))
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            since = math.nan
        if not math.isfinite(since):
            return error("limit must be an integer and since a number (Unix time)", 400)
        await auth.audit(request, "incidents_listed", f"limit {limit}")
        return json_response(await store.recent(limit, since))

    async def get_incident(request: Request) -> Response:
        if (denied := auth.reader(request, *READERS)) is not None:
            return denied
        try:
            incident = await store.get(request.path_params["id"])
        except NotFound as exc:
            return error(str(exc), 404)
        await auth.audit(request, "incident_read", incident.id)
        return json_response(incident)

    async def events(request: Request) -> Response:
        if (denied := auth.reader(request, *READERS)) is not None:
            return denied
        await auth.audit(request, "events_opened")
        return StreamingResponse(_changes(bus), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return [Route("/incidents", list_incidents, methods=["GET"]), Route("/incidents/{id}", get_incident),
            Route("/events", events)]


async def _changes(bus: Bus) -> AsyncIterator[bytes]:
    """One ``incident`` event per new or changed incident; a comment every 15 s keeps proxies open. What
    has piled up while the client was being written to goes out in one write: a busy centre's changes
    cost a send each otherwise, for every console."""
    yield b": incident events\n\n"
    async with bus.subscribe() as changes:
        while True:
            with trio.move_on_after(KEEP_ALIVE_S):
                frames = [_frame(await changes.receive())]
                while len(frames) < 100:
                    try:
                        frames.append(_frame(changes.receive_nowait()))
                    except trio.WouldBlock:
                        break
                yield b"".join(frames)
                continue
            yield b": keep-alive\n\n"


def _frame(change: IncidentSummary) -> bytes:
    return b"event: incident\ndata: " + _json.encode(change) + b"\n\n"
