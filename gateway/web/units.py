"""HTTP routes of the units board: list, one unit, its history, status and position reports, the
nearest free units for an incident, and assignment."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.protocols.text import repair
from gateway.units.board import UnitBoard
from gateway.units.model import MAX_PROPOSALS
from gateway.web.auth import Auth
from gateway.web.errors import error, json_response, query_int, read_body, refusal

WRITERS = ("dispatcher", "supervisor")


class StatusBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: Annotated[str, Meta(max_length=32)] | None = None
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, Meta(ge=-180, le=180)] | None = None
    reason: Annotated[str, Meta(max_length=500)] = ""
    force: bool = False


class AssignBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    unit: Annotated[str, Meta(max_length=64)]


class UnitRoutes:
    """HTTP translation only: every decision is the board's. Every route needs an officer; changes need a
    dispatcher or a supervisor."""

    def __init__(self, board: UnitBoard, auth: Auth) -> None:
        self.board = board
        self.auth = auth

    def routes(self) -> list[Route]:
        return [
            Route("/units", self.list_units, methods=["GET"]),
            Route("/units/{id}", self.get_unit, methods=["GET"]),
            Route("/units/{id}/history", self.get_history, methods=["GET"]),
            Route("/units/{id}/status", self.post_status, methods=["POST"]),
            Route("/incidents/{id}/proposals", self.get_proposals, methods=["GET"]),
            Route("/incidents/{id}/assign", self.post_assign, methods=["POST"]),
        ]

    async def list_units(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request), Response):
            return who
        kind, status = request.query_params.get("kind", ""), request.query_params.get("status", "")
        if kind and kind not in self.board.kinds:
            return error(f"unknown unit kind {kind!r}: expected one of {', '.join(self.board.kinds)}", 400)
        return json_response(self.board.units(kind, status))

    async def get_unit(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request), Response):
            return who
        try:
            return json_response(self.board.get(request.path_params["id"]))
        except GatewayError as exc:
            return refusal(exc, "-", "units API")

    async def get_history(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request), Response):
            return who
        try:
            return json_response(await self.board.history(request.path_params["id"],
                                                          query_int(request, "limit", 50, 1000)))
        except GatewayError as exc:
            return refusal(exc, "-", "units API")

    async def post_status(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request, *WRITERS), Response):
            return who
        try:
            body = await read_body(request, StatusBody)
            reason = repair(body.reason, lines=True)[0]
            return json_response(await self.board.update(request.path_params["id"], status=body.status, lat=body.lat,
                                                         lon=body.lon, actor=who.name, reason=reason, force=body.force))
        except GatewayError as exc:
            return refusal(exc, who.name, "units API")

    async def get_proposals(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request), Response):
            return who
        try:
            limit = query_int(request, "limit", 3, MAX_PROPOSALS)
            return json_response(await self.board.propose(request.path_params["id"],
                                                          request.query_params.get("kind", ""), limit))
        except GatewayError as exc:
            return refusal(exc, who.name, "units API")

    async def post_assign(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request, *WRITERS), Response):
            return who
        try:
            body = await read_body(request, AssignBody)
            return json_response(await self.board.assign(request.path_params["id"], body.unit, actor=who.name))
        except GatewayError as exc:
            return refusal(exc, who.name, "units API")
