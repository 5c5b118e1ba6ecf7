"""Accounts, sessions and the audit trail, kept in the gateway's store (one model of people).

A person has roles (dispatcher, supervisor, civil-defence, drill, admin), a language, and logs in with
a password (argon2id) or, for machines, a bearer token (its SHA-256). Five wrong passwords in a row lock
the account for ``lock_for_s``; a session ends after ``idle_s`` without a request, at logout, and when
its person is disabled or given a new password. The audit trail is append-only (the store refuses to
change or delete a row) and records logins, refusals, account changes and every read of personal data.

``gateway users`` changes accounts from another process while ``gateway run`` serves: every change to
people or sessions counts up ``accounts_version``, every lookup first reads it (one row) and reloads on
a change, so a disabled person's session ends with their next request. (SQLite's ``PRAGMA data_version``
would be cheaper, but misses other processes' commits while this process has a second connection to
the same file, which the incident store is.)

On PostgreSQL (``[store] backend``; tables from migration 5) every gateway node shares them: a session
made on one node is found on the other (its last request's time is written back now and then, so the
other node does not find it idle), failures count up in the row itself (``failures + 1``), so wrong
passwords on both nodes lock the account together, and audit rows are numbered by the database in the
order they commit (writers of audit rows take turns: ``AUDIT_ORDER``), so a reader that follows the trail
by ``seq`` misses none.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from gateway.errors import Conflict, GatewayError, InputError, NotFound
from gateway.incident.sqldb import Db, Execute, SqliteDb
from gateway.people import passwords

Role = Literal["dispatcher", "supervisor", "civil-defence", "drill", "admin"]
ROLES: tuple[Role, ...] = ("dispatcher", "supervisor", "civil-defence", "drill", "admin")
LANGUAGES = ("kk", "ru", "en")
TABLES = """
CREATE TABLE IF NOT EXISTS people (
    name TEXT PRIMARY KEY, roles TEXT NOT NULL, language TEXT NOT NULL, password_hash TEXT NOT NULL DEFAULT '',
    token_sha256 TEXT NOT NULL DEFAULT '', disabled INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0, created_wall REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL, position TEXT NOT NULL DEFAULT '',
    created_wall REAL NOT NULL, seen_wall REAL NOT NULL);
CREATE TABLE IF NOT EXISTS accounts_version (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, wall REAL NOT NULL, who TEXT NOT NULL, via TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS audit_by_who ON audit (who, seq);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target, seq);
"""
SCHEMA = TABLES + """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
PG_SCHEMA = TABLES + """
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"""  # what migration 5 makes (the same tables; PostgreSQL's form of the guards)
AUDIT_ORDER = 0x6563677721  # the key audit writers take turns by (``Db.serialize``)
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")  # as [[warnings.users]] names, so every officer fits


class LoginRefused(GatewayError):
    """Wrong name or password, a locked or disabled account. The message is safe to show."""


class Person(msgspec.Struct, frozen=True):
    name: str
    roles: frozenset[str]
    language: str = "ru"


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """What ``gateway users list`` shows: never a hash."""

    name: str
    roles: list[str]
    language: str
    disabled: bool
    locked_until: float
    failures: int
    has_password: bool
    has_token: bool
    created_wall: float


class Session(msgspec.Struct, kw_only=True):
    person: Person
    csrf: str
    position: str
    created_wall: float
    seen_wall: float


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    wall: float
    who: str
    via: str
    action: str
    target: str
    detail: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """A login name: a lower-case letter, then up to 63 of a-z, 0-9, '.', '_', '-'. Raises InputError."""
    if not NAME_RE.match(name):
        raise InputError(f"name {name[:70]!r}: expected a lower-case letter, then up to 63 of a-z, 0-9, '.', '_', '-'")
    return name


def check_roles(roles: Iterable[str]) -> list[str]:
    found = list(dict.fromkeys(roles))
    wrong = [r for r in found if r not in ROLES]
    if not found or wrong:
        got = f", got {wrong[0]!r}" if wrong else ""
        raise InputError(f"roles: expected one or more of {', '.join(ROLES)}{got}")
    return found


class Accounts:
    """Blocking; one connection guarded by a lock. Call the slow parts (``login``, ``audit``) from a
    worker thread; session and token lookups are answered from memory.

    ``db``: a SQLite file (its tables made here), or a ``Db`` (``gateway.stores.open_accounts``); owned
    and closed by ``close``. Raises StoreError when it cannot be opened."""

    def __init__(self, db: str | Path | Db, *, idle_s: float = 900.0, lock_after: int = 5,
                 lock_for_s: float = 900.0, clock: Callable[[], float] = time.time) -> None:
        self.idle_s, self.lock_after, self.lock_for_s = idle_s, lock_after, lock_for_s
        self.clock = clock
        self._db = db if isinstance(db, Db) else SqliteDb(db, SCHEMA, "accounts")
        if not self._db.rows("SELECT 1 FROM accounts_version"):  # a new database (a write only then)
            with self._db.transaction() as execute:
                execute("INSERT INTO accounts_version VALUES (1, 0) ON CONFLICT DO NOTHING", ())
        self._lock = threading.RLock()
        self._touched: dict[str, float] = {}  # session digest -> the seen_wall last stored (shared db only)
        self._version = -1
        self._people: dict[str, tuple[Person, bool, str]] = {}  # name -> (person, disabled, token digest)
        self._tokens: dict[str, str] = {}  # token digest -> name
        self._sessions: dict[str, Session] = {}  # session token digest -> session

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading ------------------------------------------------------------------------------

    def _sql(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.rows(sql, args)

    def _fresh(self) -> None:
        """Reload people when anyone changed them or the sessions (``accounts_version``). Cached sessions
        stay, with their last request's time, unless their row went (logout, disable, new password) or
        their person was disabled."""
        version = int(self._sql("SELECT n FROM accounts_version")[0][0])
        if version == self._version:
            return
        rows = self._sql("SELECT name, roles, language, disabled, token_sha256 FROM people")
        self._people = {str(n): (Person(str(n), frozenset(str(r).split(",")), str(lang)), bool(d), str(t))
                        for n, r, lang, d, t in rows}
        self._tokens = {t: n for n, (_, disabled, t) in self._people.items() if t and not disabled}
        stored = {str(d) for (d,) in self._sql("SELECT token_sha256 FROM sessions")}
        self._sessions = {d: msgspec.structs.replace(s, person=self._people[s.person.name][0])
                          for d, s in self._sessions.items()
                          if d in stored and not self._people.get(s.person.name, (None, True))[1]}
        self._version = version

    def person(self, name: str) -> Person | None:
        """An enabled person by name, or None."""
        with self._lock:
            self._fresh()
            found = self._people.get(name)
            return found[0] if found and not found[1] else None

    def by_token(self, token: str) -> Person | None:
        with self._lock:
            self._fresh()
            name = self._tokens.get(token_digest(token))
            return self._people[name][0] if name else None

    def roles(self) -> Mapping[str, list[str]]:
        """Every enabled person's roles, as the warnings workflow asks for them (a live view)."""
        return _RolesView(self)

    def accounts(self) -> list[Account]:
        with self._lock:
            rows = self._sql("SELECT name, roles, language, disabled, locked_until, failures, password_hash != '', "
                             "token_sha256 != '', created_wall FROM people ORDER BY name")
        return [Account(name=str(n), roles=str(r).split(","), language=str(lang), disabled=bool(d),
                        locked_until=float(lu), failures=int(f), has_password=bool(p),
                        has_token=bool(t), created_wall=float(c)) for n, r, lang, d, lu, f, p, t, c in rows]

    # -- changing accounts --------------------------------------------------------------------

    def _write(self, statements: list[tuple[str, tuple[object, ...]]], *, changes: bool = True,
               then: Callable[[Execute], None] | None = None) -> None:
        """One transaction; ``changes``: it changes people or sessions (other processes must reload);
        ``then`` runs more in the same transaction. Raises Conflict, StoreError."""
        bump = [("UPDATE accounts_version SET n = n + 1", ())] if changes else []
        with self._lock:
            with self._db.transaction() as execute:
                if any(sql.startswith("INSERT INTO audit") for sql, _ in statements):
                    self._db.serialize(execute, AUDIT_ORDER)  # numbered in the order they commit
                for sql, args in [*statements, *bump]:
                    execute(sql, args)
                if then is not None:
                    then(execute)
            self._fresh()

    def add(self, name: str, roles: Iterable[str], *, language: str = "ru", password: str = "",
            token_sha256: str = "", by: str = "host") -> None:
        """A new person. Raises InputError for a bad name, role, language or password; Conflict if taken."""
        roles, hashed = check_roles(roles), passwords.hash_password(password) if password else ""
        if language not in LANGUAGES:
            raise InputError(f"language: expected kk, ru or en, got {language[:10]!r}")
        with self._lock:
            if self._sql("SELECT 1 FROM people WHERE name = ?", (check_name(name),)):
                raise Conflict(f"a person named {name!r} exists already")
            self._write([("INSERT INTO people(name, roles, language, password_hash, token_sha256, created_wall) "
                          "VALUES (?, ?, ?, ?, ?, ?)", (name, ",".join(roles), language, hashed, token_sha256,
                                                        self.clock())),
                         self._audit_row(by, "cli", "person_added", name, ",".join(roles))])

    def adopt(self, people: Iterable[tuple[str, Iterable[str], str]]) -> list[str]:
        """Officers still listed in the config (``[[warnings.users]]``: name, roles, token digest) become
        accounts if they are not yet; their tokens keep working. Returns the names added."""
        added = []
        for name, roles, digest in people:
            if self.person(name) is None and not self._sql("SELECT 1 FROM people WHERE name = ?", (name,)):
                self.add(name, roles, token_sha256=digest, by="config")
                added.append(name)
        return added

    def disable(self, name: str, *, by: str = "host") -> None:
        self._require(name)
        self._write([("UPDATE people SET disabled = 1 WHERE name = ?", (name,)),
                     ("DELETE FROM sessions WHERE name = ?", (name,)),
                     self._audit_row(by, "cli", "person_disabled", name, "")])

    def reset(self, name: str, password: str, *, by: str = "host") -> None:
        """A new password: unlocks and enables the account and ends its sessions."""
        self._require(name)
        hashed = passwords.hash_password(password)
        self._write([("UPDATE people SET password_hash = ?, failures = 0, locked_until = 0, disabled = 0 "
                      "WHERE name = ?", (hashed, name)),
                     ("DELETE FROM sessions WHERE name = ?", (name,)),
                     self._audit_row(by, "cli", "password_reset", name, "")])

    def set_token(self, name: str, digest: str, *, by: str = "host") -> None:
        """A new bearer token (its SHA-256) for a person or machine; the old one stops working."""
        self._require(name)
        self._write([("UPDATE people SET token_sha256 = ? WHERE name = ?", (digest, name)),
                     self._audit_row(by, "cli", "token_issued", name, "")])

    def _require(self, name: str) -> None:
        if not self._sql("SELECT 1 FROM people WHERE name = ?", (name,)):
            raise NotFound(f"no person named {name!r}")

    # -- logging in ---------------------------------------------------------------------------

    def login(self, name: str, password: str, *, position: str = "", via: str = "web") -> tuple[str, Session]:
        """A new session (its token, shown once) for the right password. Raises LoginRefused; every
        attempt is audited. Slow on purpose (argon2id): call it from a worker thread."""
        now = self.clock()
        row = self._sql("SELECT password_hash, disabled, failures, locked_until FROM people WHERE name = ?",
                        (name[:64],))
        stored, disabled, failures, locked_until = row[0] if row else ("", 0, 0, 0.0)
        right = passwords.verify(str(stored), password)  # also for unknown names: the same time either way
        if not row or disabled or float(locked_until) > now or not right:
            self._refused(name[:64], bool(row), bool(disabled), float(locked_until), int(failures), right, now)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        rehash = [("UPDATE people SET password_hash = ? WHERE name = ?", (passwords.hash_password(password), name))] \
            if passwords.needs_rehash(str(stored)) else []
        self._write([("UPDATE people SET failures = 0, locked_until = 0 WHERE name = ?", (name,)), *rehash,
                     ("INSERT INTO sessions(token_sha256, name, csrf, position, created_wall, seen_wall) "
                      "VALUES (?, ?, ?, ?, ?, ?)", (token_digest(token), name, csrf, position, now, now)),
                     self._audit_row(name, via, "login", position, "")])
        person = self.person(name)
        assert person is not None
        return token, Session(person=person, csrf=csrf, position=position, created_wall=now, seen_wall=now)

    def _refused(self, name: str, known: bool, disabled: bool, locked_until: float, failures: int, right: bool,
                 now: float) -> None:
        """Record and raise the refusal. A wrong password counts towards the lock; the lock and a disabled
        account are named only to someone who gave the right password or is locked out anyway."""
        audit = [self._audit_row(name, "web", "login_refused", "", "")]
        if known and locked_until > now:
            self._write(audit, changes=False)
            raise LoginRefused(f"too many wrong passwords: try again in {(locked_until - now) / 60:.0f} minutes")
        if known and disabled and right:
            self._write(audit, changes=False)
            raise LoginRefused("this account is disabled")
        if not known or disabled:
            self._write(audit, changes=False)
            raise LoginRefused("wrong name or password")
        locked: list[bool] = []

        def count(execute: Execute) -> None:  # in the row itself: another node's failures count too
            row = execute("UPDATE people SET failures = CASE WHEN failures + 1 >= ? THEN 0 ELSE failures + 1 END, "
                          "locked_until = CASE WHEN failures + 1 >= ? THEN ? ELSE locked_until END WHERE name = ? "
                          "RETURNING failures, locked_until",
                          (self.lock_after, self.lock_after, now + self.lock_for_s, name))
            locked.append(bool(row) and float(row[0][1]) > now)
            if row and int(row[0][0]) == 0:  # this failure locked it
                execute(*self._audit_row(name, "web", "account_locked", name, f"{self.lock_after} wrong passwords"))

        self._write(audit, then=count)
        raise LoginRefused(f"too many wrong passwords: try again in {self.lock_for_s / 60:.0f} minutes"
                           if locked[0] else "wrong name or password")

    def session(self, token: str) -> Session | None:
        """The live session for a cookie's token, or None (unknown, ended, idle too long, person disabled)."""
        digest, now = token_digest(token), self.clock()
        with self._lock:
            self._fresh()
            found = self._sessions.get(digest)
            if found is None:
                rows = self._sql("SELECT name, csrf, position, created_wall, seen_wall FROM sessions "
                                 "WHERE token_sha256 = ?", (digest,))
                person = self.person(str(rows[0][0])) if rows else None
                if person is None:
                    return None
                _, csrf, position, created, seen = rows[0]
                self._touched[digest] = float(seen)
                found = Session(person=person, csrf=str(csrf), position=str(position), created_wall=float(created),
                                seen_wall=float(seen))
                self._sessions[digest] = found
            if now - found.seen_wall > self.idle_s and self._db.shared:  # another node may have seen it since
                stored = self._sql("SELECT seen_wall FROM sessions WHERE token_sha256 = ?", (digest,))
                found.seen_wall = max(found.seen_wall, float(stored[0][0]) if stored else 0.0)
                self._touched[digest] = found.seen_wall
            if now - found.seen_wall > self.idle_s:
                self._sessions.pop(digest, None)
                self._touched.pop(digest, None)
                return None
            found.seen_wall = now  # in memory (a restart keeps the stored time)...
            if self._db.shared and now - self._touched.setdefault(digest, now) > self.idle_s / 4:
                self._touched[digest] = now  # ...and now and then in the row, for the other nodes
                self._write([("UPDATE sessions SET seen_wall = ? WHERE token_sha256 = ? AND seen_wall < ?",
                              (now, digest, now))], changes=False)
            return found

    def logout(self, token: str) -> None:
        digest = token_digest(token)
        with self._lock:
            session = self._sessions.pop(digest, None)
            who = session.person.name if session else ""
        self._write([("DELETE FROM sessions WHERE token_sha256 = ?", (digest,))]
                    + ([self._audit_row(who, "web", "logout", "", "")] if who else []))

    # -- the audit trail ----------------------------------------------------------------------

    def _audit_row(self, who: str, via: str, action: str, target: str, detail: str) -> tuple[str, tuple[object, ...]]:
        return ("INSERT INTO audit(wall, who, via, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (self.clock(), who, via, action, target[:200], detail[:500]))

    def audit(self, who: str, via: str, action: str, target: str = "", detail: str = "") -> None:
        """Append one entry (a read of personal data, an action). Blocking: from a worker thread."""
        self._write([self._audit_row(who, via, action, target, detail)], changes=False)

    def audit_trail(self, after_seq: int = 0, limit: int = 1000, *, who: str = "", target: str = "",
                    newest_first: bool = False) -> list[AuditEntry]:
        """Entries after ``after_seq`` (oldest first), or the newest ones first; ``who`` and ``target``
        narrow it to one person or one incident (exact names, both indexed)."""
        where, args = ["seq > ?"], [after_seq]
        for column, value in (("who", who), ("target", target)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)  # type: ignore[arg-type]
        order = "DESC" if newest_first else ""
        with self._lock:
            rows = self._sql("SELECT seq, wall, who, via, action, target, detail FROM audit "
                             f"WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?", (*args, limit))
        return [AuditEntry(seq=int(s), wall=float(w), who=str(who), via=str(v), action=str(a), target=str(t),
                           detail=str(d)) for s, w, who, v, a, t, d in rows]


class _RolesView(Mapping[str, list[str]]):
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def __getitem__(self, name: str) -> list[str]:
        person = self.accounts.person(name)
        if person is None:
            raise KeyError(name)
        return sorted(person.roles)

    def __iter__(self) -> Iterator[str]:
        return iter([a.name for a in self.accounts.accounts() if not a.disabled])

    def __len__(self) -> int:
        return len(list(iter(self)))
