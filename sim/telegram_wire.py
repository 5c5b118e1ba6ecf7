"""The Telegram Bot API's wire format as the stand-in (``sim.telegram``) reads and writes it.

Telegram's error object (``ApiError``, ``bad_request``), its HTML parse mode reduced to allowed
tags, balance and plain text (``plain_text``), message length in UTF-16 units, and request
parameters from a query string plus a JSON or form body, with ``reply_markup`` given either way.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import Response

HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code",
             "pre", "blockquote", "tg-emoji"}
_json = msgspec.json.Encoder()


class ApiError(Exception):
    """Answered as Telegram's error object: ``{"ok": false, "error_code", "description"}``."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(what: str) -> ApiError:
    return ApiError(400, f"Bad Request: {what}")


class _Entities(HTMLParser):
    """Telegram's HTML parse mode reduced to what matters here: allowed tags, balance, plain text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.text: list[str] = []
        self.open: list[str] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        lines = self.source.splitlines(keepends=True) or [""]
        return len(("".join(lines[: line - 1]) + lines[line - 1][:col]).encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise bad_request(f'can\'t parse entities: Unsupported start tag "{tag}" at byte offset {self._offset()}')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise bad_request(f'can\'t parse entities: Unmatched end tag at byte offset {self._offset()}, '
                              f'expected "</{self.open[-1] if self.open else ""}>", found "</{tag}>"')
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def plain_text(text: str, parse_mode: str) -> str:
    """The message text after entity parsing, as Telegram stores and counts it."""
    if parse_mode.upper() != "HTML":
        return text
    parser = _Entities(text)
    parser.feed(text)
    parser.close()
    if parser.open:
        raise bad_request(f'can\'t parse entities: Can\'t find end tag corresponding to start tag "{parser.open[-1]}"')
    return "".join(parser.text)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _reply(body: object, status: int = 200) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {name} specified") from None


def _markup(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise bad_request("can't parse reply keyboard markup JSON object") from None
    if not isinstance(value, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    return value


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if ctype == "application/json" and body:
        try:
            decoded = json.loads(body)
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise bad_request("can't parse JSON object")
        params.update(decoded)
    elif ctype == "application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif body:
        raise bad_request(f"unsupported content type {ctype!r} in this stand-in")
    return params
