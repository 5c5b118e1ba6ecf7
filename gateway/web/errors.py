"""How the HTTP API answers: one JSON body for errors, and one mapping from our errors to status codes.

Routes raise (or let through) the gateway's typed errors; ``refusal`` turns one into the response
and logs it, so every route of every feature says no the same way:

    NotFound                 404   no such incident, unit, alert, recipient
    Conflict                 409   not in a state that allows it (closed, busy, already approved)
    InputError               400   the request itself is wrong; the client can fix it
    StoreError, ChannelError,
    AsteriskError            503   the gateway could not do it now (disk, provider, Asterisk)
    any other GatewayError   500
"""

from __future__ import annotations

import logging
from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import AsteriskError, ChannelError, Conflict, GatewayError, InputError, NotFound, StoreError

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
B = TypeVar("B")


class ApiError(msgspec.Struct):
    """Every error the API answers with: what is wrong, in words an officer can act on."""

    error: str


class BadRequest(InputError):
    """A body or query parameter that is not what the route takes."""


def json_response(body: object, status: int = 200) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def error(message: str, status: int) -> Response:
    return json_response(ApiError(message), status)


def status_of(exc: GatewayError) -> int:
    match exc:
        case NotFound():
            return 404
        case Conflict():
            return 409
        case InputError():
            return 400
        case StoreError() | ChannelError() | AsteriskError():
            return 503
        case _:
            return 500


def refusal(exc: GatewayError, who: str = "-", what: str = "request") -> Response:
    """The answer to a refused request, logged (a refusal is something an officer saw)."""
    status = status_of(exc)
    log.log(logging.ERROR if status >= 500 else logging.INFO, "%s refused for %s (%d): %s", what, who, status, exc)
    return error(str(exc), status)


async def read_body(request: Request, kind: type[B]) -> B:
    """The request's JSON body as ``kind``; raises BadRequest saying what is wrong with it."""
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"bad body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"bad body: expected a JSON object ({exc})") from exc


def query_int(request: Request, name: str, default: int, most: int) -> int:
    """An integer query parameter 1..``most``; raises BadRequest."""
    raw = request.query_params.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} {raw!r}: expected an integer 1-{most}") from None
    if not 1 <= value <= most:
        raise BadRequest(f"{name} {value}: expected 1-{most}")
    return value
