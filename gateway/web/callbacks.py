"""HTTP routes of the call-back list: who to call back, and a dispatcher's call-back from their position.

The list holds callers' numbers: reading it needs a dispatcher, supervisor or admin and is written to
the audit trail with who read it, as an incident's card is. A call-back is a dispatcher's (or a
supervisor's) act, audited too; what it does is ``intake.call_back``'s.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.intake.call_back import CallBacks
from gateway.web.auth import Auth, Officer
from gateway.web.errors import error, json_response, read_body, refusal

READERS = ("dispatcher", "supervisor", "admin")
CALLERS = ("dispatcher", "supervisor")
KEY_LONGEST = 80


class CallBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    position: Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


class CallbackRoutes:
    """HTTP translation only."""

    def __init__(self, callbacks: CallBacks, auth: Auth) -> None:
        self.callbacks = callbacks
        self.auth = auth

    def routes(self) -> list[Route]:
        return [Route("/callbacks", self.list_callbacks, methods=["GET"]),
                Route("/callbacks/{key}/call", self.call_back, methods=["POST"])]

    async def list_callbacks(self, request: Request) -> Response:
        if (denied := self.auth.reader(request, *READERS)) is not None:
            return denied
        try:
            found = await self.callbacks.entries()
        except GatewayError as exc:
            return refusal(exc, "-", "call-back list")
        await self.auth.audit(request, "callbacks_listed", "", f"{len(found)} numbers")
        return json_response(found)

    async def call_back(self, request: Request) -> Response:
        """``{"position": "pos1"}``: ring that position, then the caller. 202 with the attempt; the outcome
        follows on the incidents' timelines."""
        who = self.auth.require(request, *CALLERS)
        if not isinstance(who, Officer):
            return who
        key = request.path_params["key"]
        if len(key) > KEY_LONGEST:
            return error(f"key: at most {KEY_LONGEST} characters", 404)
        try:
            body = await read_body(request, CallBody)
            attempt = await self.callbacks.call(key, body.position, who.name)
        except GatewayError as exc:
            return refusal(exc, who.name, "call-back")
        await self.auth.audit(request, "callback_started", attempt.incidents[0], f"{attempt.number} from "
                              f"{attempt.position}")
        return json_response(attempt, 202)
