"""HTTP routes of the response side: dispatchers create, classify and move incidents, answer the
people who reported by text, see scenario progress and acknowledge; responders acknowledge from
an e-mailed link.

An e-mailed link only shows a page: acknowledging takes a POST (its button), because mail
scanners open every link they see and must not acknowledge on a responder's behalf.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError, NotFound
from gateway.incident.desk import Desk, no_caller
from gateway.incident.records import Caller, Location
from gateway.protocols import ani
from gateway.protocols.text import repair
from gateway.scenario.engine import Engine
from gateway.settings import AniConfig
from gateway.web.auth import Auth, Officer
from gateway.web.errors import error, json_response, read_body, refusal

log = logging.getLogger(__name__)
Reply = Callable[[str, str, str], Awaitable[object]]  # (incident id, text, actor)
MAX_BODY = 65_536  # above every body's field limits, so a long field is refused by name, not by size
B = TypeVar("B")


Category = Annotated[str, Meta(max_length=64)]


class NewIncident(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Limits are refused with 400 naming the field, never cut: what a dispatcher typed is kept as typed
    (control and bidi characters dropped and flagged on the first event, as for every source)."""

    service: Literal["102", "112", "1402"] = "102"  # 1402: the non-emergency line
    category: Category = ""
    number: Annotated[str, Meta(max_length=32)] = ""
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, Meta(ge=-180, le=180)] | None = None
    address: Annotated[str, Meta(max_length=300)] = ""
    note: Annotated[str, Meta(max_length=2000)] = ""


class CategoryBody(msgspec.Struct, forbid_unknown_fields=True):
    category: Category


class StatusBody(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["new", "assigned", "en_route", "on_scene", "closed"]


class NoteBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, max_length=2000)]


class SceneBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The incident's location: ``copy`` a caller's candidate by its index, or give the corrected place
    (coordinates, an address, or both)."""

    copy: Annotated[int, Meta(ge=0, le=10_000)] | None = None
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, Meta(ge=-180, le=180)] | None = None
    address: Annotated[str, Meta(max_length=300)] = ""


class TextBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, max_length=1000)]


async def _body(request: Request, kind: type[B]) -> B | Response:
    if len(await request.body()) > MAX_BODY:
        return error(f"body over {MAX_BODY} bytes", 413)
    try:
        return await read_body(request, kind)
    except GatewayError as exc:
        return refusal(exc, what="incident change")


def _scene_problem(body: SceneBody) -> str:
    if (body.lat is None) != (body.lon is None):
        return "lat and lon: give both or neither"
    given = body.lat is not None or bool(body.address.strip())
    if body.copy is not None and given:
        return "copy: give either a caller location to copy or a place, not both"
    if body.copy is None and not given:
        return "give copy (a caller location's index), or lat and lon, or an address"
    return ""


class EscalationApi:
    def __init__(self, engine: Engine, desk: Desk, auth: Auth, replies: dict[str, Reply],
                 ani_cfg: AniConfig | None = None) -> None:
        self.engine = engine
        self.ani = ani_cfg or AniConfig()
        self.desk = desk
        self.auth = auth
        self.replies = replies  # reporter prefix ("tg", "sms") -> how to answer them

    def routes(self) -> list[Route]:
        return [
            Route("/incidents", self.create, methods=["POST"]),
            Route("/incidents/{id}/category", self.category, methods=["POST"]),
            Route("/incidents/{id}/status", self.status, methods=["POST"]),
            Route("/incidents/{id}/reply", self.reply, methods=["POST"]),
            Route("/incidents/{id}/notes", self.note, methods=["POST"]),
            Route("/incidents/{id}/scene", self.scene, methods=["POST"]),
            Route("/incidents/{id}/escalation", self.runs, methods=["GET"]),
            Route("/categories", self.categories, methods=["GET"]),
            Route("/acks/{token}", self.console_ack, methods=["POST"]),
            Route("/ack/{token}", self.link_page, methods=["GET"]),
            Route("/ack/{token}", self.link_ack, methods=["POST"]),
        ]

    async def _officer(self, request: Request) -> Officer | Response:
        return self.auth.require(request, "dispatcher", "supervisor")

    async def _acting(self, request: Request, kind: type[B]) -> tuple[Officer, B] | Response:
        """The acting dispatcher and the request's body, or the refusal to send."""
        who = await self._officer(request)
        if isinstance(who, Response):
            return who
        body = await _body(request, kind)
        return body if isinstance(body, Response) else (who, body)

    async def create(self, request: Request) -> Response:
        got = await self._acting(request, NewIncident)
        if isinstance(got, Response):
            return got
        who, body = got
        if body.category and body.category not in self.engine.catalogue.categories:
            return error(f"unknown category {body.category!r}", 400)
        if (body.lat is None) != (body.lon is None):
            return error("lat and lon: give both or neither", 400)
        address, address_flags = repair(body.address)
        note, note_flags = repair(body.note, lines=True)
        places = [Location(source="manual", shape="point", lat=body.lat, lon=body.lon, address=address)] \
            if body.lat is not None else ([Location(source="manual", shape="civic", address=address)]
                                          if address else [])
        category = self.engine.catalogue.categories.get(body.category)
        repaired = [f"{field}_{flag}" for field, flags in (("address", address_flags), ("note", note_flags))
                    for flag in flags]
        incident = await self.desk.open(service=body.service, source="api", caller=self._caller(body.number),
                                        kind="reported", actor=who.name, category=body.category,
                                        priority=category.priority if category else 5, locations=places,
                                        note=note or None, flags=",".join(repaired) or None)
        return json_response(incident, 201)

    def _caller(self, number: str) -> Caller:
        """The number a dispatcher typed, read as the network's would be (E.164, flags for anything odd)."""
        return ani.normalise(number, "", cfg=self.ani) if number.strip() else no_caller()

    async def category(self, request: Request) -> Response:
        got = await self._acting(request, CategoryBody)
        if isinstance(got, Response):
            return got
        who, body = got
        found = self.engine.catalogue.categories.get(body.category)
        if found is None:
            return error(f"unknown category {body.category!r}: expected one of "
                         f"{', '.join(sorted(self.engine.catalogue.categories))}", 400)
        return await self._change(lambda: self.desk.set_category(request.path_params["id"], found.name,
                                                                 found.priority, actor=who.name))

    async def status(self, request: Request) -> Response:
        got = await self._acting(request, StatusBody)
        if isinstance(got, Response):
            return got
        who, body = got
        return await self._change(lambda: self.desk.set_status(request.path_params["id"], body.status,
                                                               actor=who.name))

    async def reply(self, request: Request) -> Response:
        got = await self._acting(request, TextBody)
        if isinstance(got, Response):
            return got
        who, body = got
        text = repair(body.text, lines=True)[0]
        if not text:
            return error("text: nothing to send once control characters are dropped", 400)
        try:
            incident = await self.desk.get(request.path_params["id"])
        except NotFound as exc:
            return error(str(exc), 404)
        send = self.replies.get(incident.reporter.partition(":")[0])
        if send is None:
            return error("this incident was not reported by text (Telegram or SMS): call the caller back", 409)
        return await self._change(lambda: send(incident.id, text, who.name))

    async def note(self, request: Request) -> Response:
        """A dispatcher's note on the incident's timeline (what the caller said, what was done)."""
        got = await self._acting(request, NoteBody)
        if isinstance(got, Response):
            return got
        who, body = got
        text, flags = repair(body.text, lines=True)
        if not text:
            return error("text: nothing left once control characters are dropped", 400)
        return await self._change(lambda: self.desk.record(request.path_params["id"], "note", actor=who.name,
                                                           text=text, flags=",".join(flags) or None))

    async def scene(self, request: Request) -> Response:
        """Copy a caller's location into the incident's, or correct the incident's by hand."""
        got = await self._acting(request, SceneBody)
        if isinstance(got, Response):
            return got
        who, body = got
        problem = _scene_problem(body)
        if problem:
            return error(problem, 400)
        address = repair(body.address)[0]
        place = None if body.copy is not None else Location(
            source="manual", shape="point" if body.lat is not None else "civic", lat=body.lat, lon=body.lon,
            address=address)
        return await self._change(lambda: self.desk.set_scene(request.path_params["id"], actor=who.name,
                                                              copy=body.copy, place=place))

    async def _change(self, act: Callable[[], Awaitable[object]]) -> Response:
        try:
            return json_response(await act())
        except GatewayError as exc:
            return refusal(exc, what="incident change")

    async def categories(self, request: Request) -> Response:
        """The categories a dispatcher may choose, with their titles (kk, ru, en) and priorities."""
        who = await self._officer(request)
        if isinstance(who, Response):
            return who
        return json_response([{"name": c.name, "title": c.title, "priority": c.priority}
                              for c in sorted(self.engine.catalogue.categories.values(), key=lambda c: -c.priority)])

    async def runs(self, request: Request) -> Response:
        who = await self._officer(request)
        if isinstance(who, Response):
            return who
        return json_response(await self.engine.runs_of(request.path_params["id"]))

    async def console_ack(self, request: Request) -> Response:
        who = await self._officer(request)
        if isinstance(who, Response):
            return who
        return await self._ack(request.path_params["token"], who.name, "console")

    async def link_page(self, request: Request) -> Response:
        token = html.escape(request.path_params["token"])
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Подтверждение</title>"
            f"<form method=post action='/ack/{token}'><button type=submit>Подтверждаю / Растаймын / "
            "Acknowledge</button></form>")

    async def link_ack(self, request: Request) -> Response:
        return await self._ack(request.path_params["token"], "e-mail link", "email")

    async def _ack(self, token: str, by: str, via: str) -> Response:
        if len(token) > 64:
            return error("no such notification", 404)
        try:
            result = await self.engine.acknowledge(token, by=by, via=via)
        except GatewayError as exc:
            return error(str(exc), 503)
        if result == "unknown":
            return error("no such notification waiting for acknowledgement", 404)
        if result == "unit_busy":
            return error("the responder's unit is busy with another incident: not acknowledged", 409)
        return json_response({"result": result})
