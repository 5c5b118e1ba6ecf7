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
    """The request's JSON body as ``kind``; raises BadRequest saying what is wrong with it and where."""
    return decode_body(await request.body(), kind)


def decode_body(body: bytes, kind: type[B]) -> B:
    """``body`` as ``kind``: every route decodes its JSON here, so every bad body is a 400 naming its field
    (msgspec's messages end "- at `$.field`"), and nothing a client sends can make a 500."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"bad body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"bad body: expected a JSON object ({exc})") from exc
    except UnicodeDecodeError as exc:  # raised for a string holding bytes that are not UTF-8
        raise BadRequest(f"bad body: text is not UTF-8{_where_not_utf8(body)}") from exc


def _where_not_utf8(body: bytes) -> str:
    """" at `$.field`" for the first string holding bytes that are not UTF-8 (only on this error path)."""
    try:
        document = msgspec.json.decode(body.decode("utf-8", "replace"))
    except (msgspec.DecodeError, UnicodeError):
        return ""

    def find(node: object, path: str) -> str | None:
        if isinstance(node, str):
            return path if "\ufffd" in node else None
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if found := find(value, path + (f"[{key}]" if isinstance(key, int) else f".{key}")):
                return found
        return None

    found = find(document, "$")
    return f" - at `{found}`" if found else ""


def query_text(request: Request, name: str, default: str = "", longest: int = 200) -> str:
    """A text query parameter of at most ``longest`` characters; raises BadRequest."""
    value = request.query_params.get(name, default)
    if len(value) > longest:
        raise BadRequest(f"{name}: at most {longest} characters")
    return value


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
