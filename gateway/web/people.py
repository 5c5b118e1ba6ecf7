"""Logging in and out, who am I, and the audit trail (supervisors and admins; JSON or CSV export).

The session cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it)
and Secure when the gateway serves HTTPS. ``POST /login`` answers the session's CSRF token, which the
console sends back in ``X-CSRF-Token`` with every change (``web.auth``).
"""

from __future__ import annotations

import csv
import io
from functools import partial
from typing import Annotated

import msgspec
import trio
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.people.accounts import Accounts, LoginRefused
from gateway.web.auth import Auth
from gateway.web.errors import decode_body, error, json_response, query_int, refusal

AUDITORS = ("supervisor", "admin")


class LoginBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(max_length=64)]
    password: Annotated[str, Meta(max_length=1024)]
    position: Annotated[str, Meta(max_length=32)] = ""


class Me(msgspec.Struct, kw_only=True):
    name: str
    roles: list[str]
    language: str
    position: str = ""
    csrf: str = ""  # only for a session: the console sends it back with every change
    tile_url: str = ""  # the centre's map tiles ("": the console draws the zones instead)
    pmtiles_url: str = ""  # or the raster PMTiles archive the gateway serves (``[http] pmtiles``)


class PeopleRoutes:
    def __init__(self, accounts: Accounts, auth: Auth, *, secure_cookies: bool = False, tile_url: str = "",
                 pmtiles_url: str = "") -> None:
        self.accounts = accounts
        self.auth = auth
        self.secure = secure_cookies
        self.tile_url = tile_url
        self.pmtiles_url = pmtiles_url

    def routes(self) -> list[Route]:
        return [Route("/login", self.login, methods=["POST"]), Route("/logout", self.logout, methods=["POST"]),
                Route("/me", self.me, methods=["GET"]), Route("/audit", self.audit, methods=["GET"])]

    async def login(self, request: Request) -> Response:
        try:
            body = decode_body(await request.body(), LoginBody)
            token, session = await trio.to_thread.run_sync(
                lambda: self.accounts.login(body.name, body.password, position=body.position))
        except LoginRefused as exc:
            return error(str(exc), 401)
        except GatewayError as exc:
            return refusal(exc, what="login")
        person = session.person
        reply = json_response(Me(name=person.name, roles=sorted(person.roles), language=person.language,
                                 position=session.position, csrf=session.csrf, tile_url=self.tile_url,
                                 pmtiles_url=self.pmtiles_url))
        reply.set_cookie(Auth.COOKIE, token, httponly=True, samesite="strict", secure=self.secure, path="/")
        return reply

    async def logout(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request), Response):
            return who
        token = request.cookies.get(Auth.COOKIE, "")
        if token:
            await trio.to_thread.run_sync(self.accounts.logout, token)
        reply = Response(status_code=204)
        reply.delete_cookie(Auth.COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure)
        return reply

    async def me(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request), Response):
            return who
        session = self.accounts.session(request.cookies.get(Auth.COOKIE, "")) if who.via == "session" else None
        person = self.accounts.person(who.name)
        return json_response(Me(name=who.name, roles=sorted(who.roles), language=person.language if person else "ru",
                                position=session.position if session else "", csrf=session.csrf if session else "",
                                tile_url=self.tile_url, pmtiles_url=self.pmtiles_url))

    async def audit(self, request: Request) -> Response:
        """The trail after ``after`` (a sequence number), oldest first (``order=newest``: newest first);
        ``who`` and ``target`` narrow it to a person or an incident; ``format=csv`` for an export."""
        if isinstance(who := self.auth.require(request, *AUDITORS), Response):
            return who
        try:
            after, limit = query_int(request, "after", 0, 2**62) if "after" in request.query_params else 0, \
                query_int(request, "limit", 1000, 10_000)
        except GatewayError as exc:
            return refusal(exc, who.name, "audit")
        query = request.query_params
        who_, target = query.get("who", "")[:64], query.get("target", "")[:200]
        newest = query.get("order") == "newest"
        entries = await trio.to_thread.run_sync(partial(self.accounts.audit_trail, after, limit, who=who_,
                                                        target=target, newest_first=newest))
        await self.auth.audit(request, "audit_read", "", f"after {after} who {who_!r} target {target!r}")
        if request.query_params.get("format") != "csv":
            return json_response(entries)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["seq", "wall", "who", "via", "action", "target", "detail"])
        writer.writerows([e.seq, e.wall, *map(_cell, (e.who, e.via, e.action, e.target, e.detail))] for e in entries)
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": "attachment; filename=audit.csv"})


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a name typed at the login form can be anything)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
