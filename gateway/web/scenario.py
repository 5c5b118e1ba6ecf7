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
from typing import Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError, NotFound
from gateway.incident.desk import Desk, no_caller
from gateway.incident.records import Caller, Location
from gateway.scenario.engine import Engine
from gateway.web.auth import Auth, Officer
from gateway.web.errors import error, json_response, read_body, refusal

log = logging.getLogger(__name__)
Reply = Callable[[str, str, str], Awaitable[object]]  # (incident id, text, actor)
MAX_BODY = 16_384
B = TypeVar("B")


class NewIncident(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    service: Literal["102", "112"] = "102"
    category: str = ""
    number: str = ""
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    note: str = ""


class CategoryBody(msgspec.Struct, forbid_unknown_fields=True):
    category: str


class StatusBody(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["new", "assigned", "en_route", "on_scene", "closed"]


class TextBody(msgspec.Struct, forbid_unknown_fields=True):
    text: str


async def _body(request: Request, kind: type[B]) -> B | Response:
    if len(await request.body()) > MAX_BODY:
        return error(f"body over {MAX_BODY} bytes", 413)
    try:
        return await read_body(request, kind)
    except GatewayError as exc:
        return refusal(exc, what="incident change")


class EscalationApi:
    def __init__(self, engine: Engine, desk: Desk, auth: Auth, replies: dict[str, Reply]) -> None:
        self.engine = engine
        self.desk = desk
        self.auth = auth
        self.replies = replies  # reporter prefix ("tg", "sms") -> how to answer them

    def routes(self) -> list[Route]:
        return [
            Route("/incidents", self.create, methods=["POST"]),
            Route("/incidents/{id}/category", self.category, methods=["POST"]),
            Route("/incidents/{id}/status", self.status, methods=["POST"]),
            Route("/incidents/{id}/reply", self.reply, methods=["POST"]),
            Route("/incidents/{id}/escalation", self.runs, methods=["GET"]),
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
        if (body.lat is None) != (body.lon is None) or (
                body.lat is not None and body.lon is not None
                and not (-90 <= body.lat <= 90 and -180 <= body.lon <= 180)):
            return error("lat and lon: give both, within -90..90 and -180..180", 400)
        places = [Location(source="manual", shape="point", lat=body.lat, lon=body.lon, address=body.address[:300])] \
            if body.lat is not None else ([Location(source="manual", shape="civic", address=body.address[:300])]
                                          if body.address else [])
        category = self.engine.catalogue.categories.get(body.category)
        caller = Caller(raw_number=body.number[:32], number=body.number[:32], display_name="", withheld=False) \
            if body.number else no_caller()
        incident = await self.desk.open(service=body.service, source="api", caller=caller, kind="reported",
                                        actor=who.name, category=body.category,
                                        priority=category.priority if category else 5, locations=places,
                                        note=body.note[:2000] or None)
        return json_response(incident, 201)

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
        if not body.text.strip() or len(body.text) > 1000:
            return error("text: 1-1000 characters", 400)
        try:
            incident = await self.desk.get(request.path_params["id"])
        except NotFound as exc:
            return error(str(exc), 404)
        send = self.replies.get(incident.reporter.partition(":")[0])
        if send is None:
            return error("this incident was not reported by text (Telegram or SMS): call the caller back", 409)
        return await self._change(lambda: send(incident.id, body.text, who.name))

    async def _change(self, act: Callable[[], Awaitable[object]]) -> Response:
        try:
            return json_response(await act())
        except GatewayError as exc:
            return refusal(exc, what="incident change")

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
