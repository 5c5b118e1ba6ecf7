"""Twilio's wire format as the stand-in (``sim.twilio``) writes it.

``sign`` is Twilio's request signature (HMAC-SHA1 of URL + sorted parameters, keyed with the auth
token, base64), written independently of twilio's validator so tests check one against the other;
then Twilio's error bodies, its RFC 2822 dates, and the ``DateSent`` filters of its message list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import operator
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

from starlette.responses import Response


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's request signature: base64 HMAC-SHA1 over the URL followed by each POST parameter
    name and value, names in sorted order."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def rfc2822(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, UTC))


def _error(status: int, code: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json")


def _wall() -> float:
    """Wall-clock seconds (Twilio's dates are calendar time, not Trio's clock)."""
    return datetime.now(UTC).timestamp()


def _date_filters(query: Mapping[str, str]) -> list[Callable[[float | None], bool]]:
    """Twilio's ``DateSent``, ``DateSent<`` (on or before) and ``DateSent>`` (on or after) filters;
    each takes ``YYYY-MM-DD`` (compared by UTC day) or ``YYYY-MM-DDThh:mm:ssZ``. Unsent messages
    never match. Raises ValueError for a value in neither form."""
    checks = []
    for key, op in (("DateSent", operator.eq), ("DateSent<", operator.le), ("DateSent>", operator.ge)):
        value = query.get(key)
        if value is not None:
            checks.append(_date_check(op, value))
    return checks


def _date_check(op: Callable[[Any, Any], bool], value: str) -> Callable[[float | None], bool]:
    if "T" in value:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        return lambda sent: sent is not None and op(sent, moment)
    day = date.fromisoformat(value)
    return lambda sent: sent is not None and op(datetime.fromtimestamp(sent, UTC).date(), day)
