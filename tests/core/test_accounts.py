"""People, their sessions and the audit trail, on SQLite and on PostgreSQL (``backend``)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import psycopg
import pytest

from gateway.errors import Conflict, InputError, NotFound
from gateway.people import passwords
from gateway.people.accounts import Accounts, LoginRefused, token_digest
from tests.store_backends import Backend

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def accounts(backend: Backend, clock: Clock | None = None) -> Accounts:
    """Accounts on the backend's database; each call a connection of its own (on PostgreSQL: a node)."""
    return Accounts(backend.accounts_db(), idle_s=900, lock_after=5, lock_for_s=900, clock=clock or Clock())


def test_a_person_logs_in_with_the_right_password_only_and_the_hash_is_argon2id(backend: Backend) -> None:
    people = accounts(backend)
    people.add("marat", ["dispatcher"], language="kk", password=PASSWORD)
    token, session = people.login("marat", PASSWORD, position="pos1")
    assert (session.person.name, session.person.roles, session.person.language) == ("marat", {"dispatcher"}, "kk")
    assert people.session(token) == session and session.position == "pos1" and len(session.csrf) >= 32
    stored = str(backend.sql("SELECT password_hash FROM people")[0][0])
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PASSWORD not in stored
    for name, password in (("marat", "wrong password!"), ("nobody", PASSWORD), ("MARAT", PASSWORD)):
        with pytest.raises(LoginRefused, match="wrong name or password"):
            people.login(name, password)
    assert people.session("not-a-token") is None


def test_five_wrong_passwords_lock_the_account_for_its_time_even_for_the_right_one(backend: Backend) -> None:
    clock = Clock()
    people = accounts(backend, clock)
    people.add("marat", ["dispatcher"], password=PASSWORD)
    for _ in range(4):
        with pytest.raises(LoginRefused, match="wrong name or password"):
            people.login("marat", "guess guess guess")
    with pytest.raises(LoginRefused, match="too many wrong passwords: try again in 15 minutes"):
        people.login("marat", "guess guess guess")
    with pytest.raises(LoginRefused, match="too many wrong passwords"):
        people.login("marat", PASSWORD)
    clock.now += 901
    assert people.login("marat", PASSWORD)[1].person.name == "marat"
    actions = [(e.who, e.action) for e in people.audit_trail()]
    assert actions.count(("marat", "login_refused")) == 6 and ("marat", "account_locked") in actions
    assert actions[-1] == ("marat", "login")


def other_process(backend: Backend, call: str) -> None:
    """``call`` on Accounts opened in another process (as `gateway users`), on the same database."""
    where = (f"PgDb({backend.dsn!r}, accounts.PG_SCHEMA, 'accounts', schema_version=VERSION)"
             if backend.kind == "postgresql" else repr(str(backend.path)))
    code = ("from gateway.people import accounts; from gateway.incident.store_pg import PgDb;"
            f" from gateway.stores import VERSION; accounts.Accounts({where}).{call}")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_session_ends_when_idle_at_logout_and_when_its_person_is_disabled_elsewhere(backend: Backend) -> None:
    """Also with the incident store open on the same file in this process, as in `gateway run` (opening
    a second connection once dropped the first one's locks, and another process's change went unseen)."""
    backend.open()
    clock = Clock()
    people = accounts(backend, clock)
    people.add("marat", ["dispatcher"], password=PASSWORD)
    idle, _ = people.login("marat", PASSWORD)
    clock.now += 600
    assert people.session(idle) is not None  # a request keeps it alive...
    clock.now += 901
    assert people.session(idle) is None  # ...and 15 minutes without one end it
    kept, _ = people.login("marat", PASSWORD)
    gone, _ = people.login("marat", PASSWORD)
    people.logout(gone)
    assert people.session(gone) is None and people.session(kept) is not None
    other_process(backend, 'disable("marat")')  # `gateway users disable` while `gateway run` serves
    assert people.session(kept) is None and people.person("marat") is None
    with pytest.raises(LoginRefused, match="this account is disabled"):
        people.login("marat", PASSWORD)
    other_process(backend, 'reset("marat", "a new password now")')
    assert people.login("marat", "a new password now")[1].person.name == "marat"


def test_names_roles_languages_and_passwords_are_checked(backend: Backend) -> None:
    people = accounts(backend)
    for name, roles, language, password, problem in (
            ("Marat", ["dispatcher"], "ru", PASSWORD, "name"), ("1m", ["dispatcher"], "ru", PASSWORD, "name"),
            ("marat", ["chief"], "ru", PASSWORD, "roles"), ("marat", [], "ru", PASSWORD, "roles"),
            ("marat", ["dispatcher"], "de", PASSWORD, "language"), ("marat", ["dispatcher"], "ru", "short", "password"),
            ("marat", ["dispatcher"], "ru", "aaaaaaaaaaaaaaaa", "password")):
        with pytest.raises(InputError, match=problem):
            people.add(name, roles, language=language, password=password)
    people.add("marat", ["dispatcher", "supervisor"], password=PASSWORD)
    with pytest.raises(Conflict):
        people.add("marat", ["dispatcher"], password=PASSWORD)
    with pytest.raises(NotFound):
        people.disable("nobody")
    [account] = people.accounts()
    assert (account.name, account.roles, account.has_password, account.has_token) == (
        "marat", ["dispatcher", "supervisor"], True, False)


def test_officers_from_the_config_become_accounts_and_their_tokens_keep_working(backend: Backend) -> None:
    people = accounts(backend)
    digest = token_digest("machine-token-123")
    assert people.adopt([("aigerim", ["civil-defence"], digest), ("marat", ["dispatcher"], "")]) == ["aigerim", "marat"]
    assert people.adopt([("aigerim", ["civil-defence"], digest)]) == []  # once only: accounts rule from then on
    assert people.by_token("machine-token-123") == people.person("aigerim")
    assert people.by_token("another") is None
    assert dict(people.roles()) == {"aigerim": ["civil-defence"], "marat": ["dispatcher"]}
    with pytest.raises(LoginRefused):  # no password yet: `gateway users reset` gives one
        people.login("marat", "")


def test_the_audit_trail_is_append_only(backend: Backend) -> None:
    people = accounts(backend)
    people.audit("marat", "session", "incident_read", "20261204-1", "")
    [entry] = [e for e in people.audit_trail() if e.action == "incident_read"]
    assert (entry.who, entry.target) == ("marat", "20261204-1")
    refused = (sqlite3.IntegrityError, psycopg.errors.RaiseException)
    for sql in ("UPDATE audit SET who = 'x'", "DELETE FROM audit", *(["TRUNCATE audit"] if backend.kind != "sqlite"
                                                                      else [])):
        with pytest.raises(refused, match="append-only"):
            backend.sql(sql)
    assert [e.action for e in people.audit_trail()] == ["incident_read"]


def test_a_weaker_hash_is_remade_at_the_next_login(backend: Backend) -> None:
    from argon2 import PasswordHasher

    people = accounts(backend)
    people.add("marat", ["dispatcher"], password=PASSWORD)
    backend.sql("UPDATE people SET password_hash = ?", (PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD),))
    people.login("marat", PASSWORD)
    assert not passwords.needs_rehash(str(backend.sql("SELECT password_hash FROM people")[0][0]))
