"""Auth: the host's local key acts only for officers in the config; bearer tokens for their own officer."""

from __future__ import annotations

import hashlib
import json

from starlette.requests import Request
from starlette.responses import Response

from gateway.web.auth import Auth, Officer

KEY = "k" * 64
AUTH = Auth([("aigerim", ["civil-defence"], hashlib.sha256(b"aigerim-token").hexdigest()),
             ("marat", ["dispatcher"], "")], KEY)


def request(**headers: str) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/alerts", "headers": raw})


def refused(answer: Officer | Response) -> tuple[int, str]:
    assert isinstance(answer, Response)
    return answer.status_code, json.loads(bytes(answer.body))["error"]


def test_local_key_acts_for_a_configured_officer() -> None:
    assert AUTH.require(request(**{"X-ECGW-Local-Key": KEY, "X-ECGW-User": "aigerim"}), "civil-defence") == Officer(
        "aigerim", frozenset({"civil-defence"}))


def test_local_key_refuses_a_name_not_in_the_config() -> None:
    local = {"X-ECGW-Local-Key": KEY, "X-ECGW-User": "mallory"}
    assert refused(AUTH.require(request(**local), "civil-defence")) == (
        403, "user 'mallory' is not an officer in [[warnings.users]]")
    # also where any officer will do (units, incidents): the key never makes up an officer
    assert refused(AUTH.require(request(**local)))[0] == 403


def test_local_key_keeps_role_checks() -> None:
    answer = AUTH.require(request(**{"X-ECGW-Local-Key": KEY, "X-ECGW-User": "marat"}), "civil-defence")
    assert refused(answer) == (403, "user 'marat' is not a civil-defence officer")


def test_without_key_or_token_nobody_acts() -> None:
    assert refused(AUTH.require(request(**{"X-ECGW-User": "aigerim"})))[0] == 401
    assert refused(AUTH.require(request(**{"X-ECGW-Local-Key": "x" * 64, "X-ECGW-User": "aigerim"})))[0] == 401
    assert refused(AUTH.require(request(**{"X-ECGW-Local-Key": KEY})))[0] == 401


def test_bearer_token_acts_for_its_own_officer() -> None:
    who = AUTH.require(request(Authorization="Bearer aigerim-token", **{"X-ECGW-User": "marat"}))
    assert who == Officer("aigerim", frozenset({"civil-defence"}))
