"""Auth: sessions with their CSRF token, bearer tokens for their own person, and the host's local key
acting only for enabled accounts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway.people.accounts import Accounts, token_digest
from gateway.web.auth import Auth, Officer

KEY = "k" * 64
PASSWORD = "correct horse battery"


@pytest.fixture
def auth(tmp_path: Path) -> Auth:
    accounts = Accounts(tmp_path / "gateway.sqlite3")
    accounts.adopt([("aigerim", ["civil-defence"], token_digest("aigerim-token")), ("marat", ["dispatcher"], "")])
    accounts.reset("marat", PASSWORD)
    return Auth(accounts, KEY)


def request(method: str = "POST", cookie: str = "", **headers: str) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    if cookie:
        raw.append((b"cookie", f"{Auth.COOKIE}={cookie}".encode()))
    return Request({"type": "http", "method": method, "path": "/alerts", "headers": raw})


def refused(answer: Officer | Response) -> tuple[int, str]:
    assert isinstance(answer, Response)
    return answer.status_code, json.loads(bytes(answer.body))["error"]


def test_local_key_acts_for_an_enabled_account(auth: Auth) -> None:
    assert auth.require(request(**{"X-ECGW-Local-Key": KEY, "X-ECGW-User": "aigerim"}), "civil-defence") == Officer(
        "aigerim", frozenset({"civil-defence"}), "local")


def test_local_key_refuses_a_name_that_is_no_account(auth: Auth) -> None:
    local = {"X-ECGW-Local-Key": KEY, "X-ECGW-User": "mallory"}
    assert refused(auth.require(request(**local), "civil-defence")) == (
        403, "user 'mallory' is not an enabled account (gateway users list)")
    assert refused(auth.require(request(**local)))[0] == 403  # also where anyone logged in will do
    auth.accounts.disable("aigerim")
    assert refused(auth.require(request(**{"X-ECGW-Local-Key": KEY, "X-ECGW-User": "aigerim"})))[0] == 403


def test_roles_are_checked_whoever_asks(auth: Auth) -> None:
    answer = auth.require(request(**{"X-ECGW-Local-Key": KEY, "X-ECGW-User": "marat"}), "civil-defence")
    assert refused(answer) == (403, "user 'marat' is not a civil-defence officer")


def test_without_key_token_or_session_nobody_acts(auth: Auth) -> None:
    assert refused(auth.require(request(**{"X-ECGW-User": "aigerim"})))[0] == 401
    assert refused(auth.require(request(**{"X-ECGW-Local-Key": "x" * 64, "X-ECGW-User": "aigerim"})))[0] == 401
    assert refused(auth.require(request(**{"X-ECGW-Local-Key": KEY})))[0] == 401
    assert refused(auth.require(request(cookie="forged")))[0] == 401
    assert auth.reader(request("GET", **{"X-ECGW-Local-Key": KEY})) is None  # the host may read
    assert refused(auth.reader(request("GET")))[0] == 401  # type: ignore[arg-type]


def test_bearer_token_acts_for_its_own_person(auth: Auth) -> None:
    who = auth.require(request(Authorization="Bearer aigerim-token", **{"X-ECGW-User": "marat"}))
    assert who == Officer("aigerim", frozenset({"civil-defence"}), "token")
    assert refused(auth.require(request(Authorization="Bearer guess")))[0] == 401


def test_a_session_reads_freely_but_changes_only_with_its_csrf_token(auth: Auth) -> None:
    token, session = auth.accounts.login("marat", PASSWORD)
    assert auth.require(request("GET", cookie=token)) == Officer("marat", frozenset({"dispatcher"}), "session")
    assert refused(auth.require(request("POST", cookie=token))) == (
        403, "missing or wrong X-CSRF-Token for this session")
    assert refused(auth.require(request("POST", cookie=token, **{"X-CSRF-Token": "x" * 43})))[0] == 403
    assert auth.require(request("POST", cookie=token, **{"X-CSRF-Token": session.csrf})) == Officer(
        "marat", frozenset({"dispatcher"}), "session")
    auth.accounts.logout(token)
    assert refused(auth.require(request("GET", cookie=token)))[0] == 401
