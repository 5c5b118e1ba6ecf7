"""The incident store on PostgreSQL (issue 14), over psycopg 3 in sync mode.

``PgStore`` has the blocking methods of ``SqliteStore`` and runs the same statements: every ``Statement``
of the store and of the features kept beside it (call-back list, recording index, scenario runs, the CEL
cursor) is portable SQL that SQLite and PostgreSQL both accept (``INSERT ... ON CONFLICT (...) DO UPDATE
SET c = excluded.c`` / ``DO NOTHING``, double-quoted identifiers where PostgreSQL reserves the word). The
only translations live here, at the edge: ``?`` placeholders become ``%s`` and a literal ``%`` is doubled
(so a shared statement never holds a literal ``?``: values are always parameters), and a feature's DDL gets
PostgreSQL's types (``pg_ddl``).

Like ``SqliteStore`` it is a ``store.Queries``: the statements, the row encoding and every query come from
there, and ``AsyncStore`` drives either with its group commit; this class is the connection (``write``,
``_read``, ``apply_schema``, ``close``).

One connection, used by one thread at a time (``AsyncStore`` calls it from its one lane), in autocommit
mode with every write in an explicit transaction (``BEGIN`` ... ``COMMIT``, its statements pipelined): a
read is one round trip and never leaves the connection idle in a transaction. ``statement_timeout`` is
set on the connection. A connection that breaks (server restart, failover) is dropped: that call raises
``StoreError`` and the next one connects again (a multi-host DSN with ``target_session_attrs=read-write``
finds a promoted standby). psycopg's errors become ``StoreError`` here and nowhere else.

Every connection names its node in the session setting ``ecgw.node`` (``NODE_ID``, drawn per process): the
trigger of migration 2 tags the notification of each incident row written with it, so a node's listener
(``gateway.incident.remote``) ignores its own changes and publishes the other nodes'.

Tables are created by versioned migrations only (``migrate``, run by ``gateway db migrate``); opening a
store checks the database's ``schema_version`` and refuses one it does not know, and ``apply_schema``
only checks that a feature's tables are there.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import psycopg
from psycopg import conninfo

from gateway.errors import StoreError, StoreUnavailable
from gateway.incident.store import SEEN_RETENTION_S, Queries, Statement

STATEMENT_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5
NODE_ID = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}".replace(":", "-")  # this process's tag
_TYPES = (("INTEGER", "bigint"), ("REAL", "double precision"), ("BLOB", "bytea"))
MIGRATION_LOCK = 0x6563677720  # pg_advisory_xact_lock key: one migration at a time ("ecgw ")
_TABLES = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")
VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version bigint PRIMARY KEY,
    applied_wall double precision NOT NULL,
    what text NOT NULL
)"""


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``ddl`` in the features' own (SQLite-typed) form, translated by ``pg_ddl``.
    An applied migration is never edited; a change is a new one."""

    version: int
    what: str
    ddl: str


@lru_cache(maxsize=2048)
def pg_sql(sql: str) -> str:
    """A shared statement as psycopg wants it: ``?`` placeholders as ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def pg_ddl(schema: str) -> str:
    """A feature's schema with PostgreSQL's types: INTEGER -> bigint, REAL -> double precision, BLOB -> bytea."""
    for sqlite_type, pg_type in _TYPES:
        schema = re.sub(rf"\b{sqlite_type}\b", pg_type, schema)
    return schema


def where(dsn: str) -> str:
    """The DSN's server, database and user, for messages (never its password)."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable [store] dsn)"
    host, port = parts.get("host") or "localhost (unix socket)", parts.get("port") or "5432"
    return f"{host} port {port} database {parts.get('dbname') or '(default)'} user {parts.get('user') or '(default)'}"


_FIXES = (  # what libpq says -> what the operator fixes (in this order: a failover's message names every host)
    (("read-write", "read-only"), "the hosts in [store] dsn: none is a writable primary"),
    (("password authentication failed", "no password supplied", "role \"", "peer authentication"),
     "the credentials (user and password in [store] dsn)"),
    (("database \"",), "the database name in [store] dsn (run `gateway db migrate` against an existing one)"),
    (("connection refused", "could not translate host name", "name or service not known", "timeout expired",
      "no such file or directory", "network is unreachable", "could not connect"),
     "the host and port in [store] dsn (is PostgreSQL running and listening there?)"),
    (("invalid dsn", "invalid connection option", "missing \"=\"", "invalid uri", "invalid integer value"),
     "the syntax of [store] dsn (a libpq URI: postgresql://user:password@host:port/database)"),
)


def connect_error(dsn: str, exc: psycopg.Error) -> StoreError:
    """A failed connect as an error naming what to fix (host/port, database, credentials, DSN syntax)."""
    said = str(exc).replace(dsn, "[store] dsn").strip()  # libpq may quote the DSN, password and all
    lowered = said.lower()
    fix = next((fix for needles, fix in _FIXES if any(n in lowered for n in needles)),
               _FIXES[-1][1] if isinstance(exc, psycopg.ProgrammingError) else "[store] dsn")
    first = said.splitlines()[0].removeprefix("connection failed: ") if said else type(exc).__name__
    kind = StoreError if isinstance(exc, psycopg.ProgrammingError) else StoreUnavailable  # a DSN that never works
    return kind(f"cannot connect to PostgreSQL at {where(dsn)}: {first}; check {fix}")


def connect(dsn: str, statement_timeout_s: float = STATEMENT_TIMEOUT_S, connect_timeout_s: int = CONNECT_TIMEOUT_S,
            node: str = "") -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection with ``statement_timeout`` set and ``node`` as its ``ecgw.node`` (the tag of the
    incident changes it writes). Raises StoreError naming what to fix."""
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s)
    except psycopg.Error as exc:
        raise connect_error(dsn, exc) from exc
    try:
        conn.execute("SELECT set_config('statement_timeout', %s, false), set_config('ecgw.node', %s, false)",
                     (f"{int(statement_timeout_s * 1000)}ms", node))
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"PostgreSQL at {where(dsn)}: cannot set statement_timeout: {exc}") from exc
    return conn


def current_version(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """The database's schema version; None when it has no ``schema_version`` table (never migrated)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(found[0]) if found and found[0] is not None else None  # type: ignore[call-overload]


def read_version(dsn: str) -> int | None:
    """``current_version`` of the database at ``dsn``, on a connection of its own. Raises StoreError."""
    conn = connect(dsn)
    try:
        return current_version(conn)
    except psycopg.Error as exc:
        raise StoreError(f"cannot read the schema version at {where(dsn)}: {exc}") from exc
    finally:
        conn.close()


def check_version(dsn: str, found: int | None, known: int) -> None:
    """Refuse a database whose schema this gateway does not know. Raises StoreError saying what to do."""
    if found is None:
        raise StoreError(f"PostgreSQL at {where(dsn)} has no gateway schema: run `gateway db migrate`")
    if found < known:
        raise StoreError(f"PostgreSQL at {where(dsn)} has schema version {found}, this gateway needs {known}:"
                         " run `gateway db migrate`")
    if found > known:
        raise StoreError(f"PostgreSQL at {where(dsn)} has schema version {found}, unknown to this gateway (it knows"
                         f" up to {known}): a newer gateway migrated it; run that version or point [store] dsn"
                         " at this version's database")


def migrate(dsn: str, migrations: Sequence[Migration]) -> tuple[int, int]:
    """Bring the database's schema up to the last of ``migrations``, in one transaction (two nodes
    migrating at once take turns); (version before, version after). Raises StoreError, also for a
    database at a version newer than these."""
    known = migrations[-1].version if migrations else 0
    conn = connect(dsn, statement_timeout_s=300)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))  # before even the first CREATE
            conn.execute(VERSION_TABLE)
            before = current_version(conn) or 0
            if before > known:
                check_version(dsn, before, known)
            for step in migrations:
                if step.version > before:
                    conn.execute(pg_ddl(step.ddl).encode())  # several statements, no parameters
                    conn.execute("INSERT INTO schema_version (version, applied_wall, what) VALUES (%s, %s, %s)",
                                 (step.version, time.time(), step.what))
    except psycopg.Error as exc:
        raise StoreError(f"migrating PostgreSQL at {where(dsn)} failed: {exc}") from exc
    finally:
        conn.close()
    return before, max(before, known)


class PgStore(Queries):
    """The incident store on PostgreSQL. Blocking; one connection, guarded by a lock (see the module).

    Raises StoreError on open when the DSN leads nowhere (naming host/port, database or credentials)
    or the schema is not at ``schema_version``; the caller owns it and closes it. ``node_id`` tags its
    incident changes (``gateway.incident.remote``); no ":" in it.
    """

    def __init__(self, dsn: str, *, schema_version: int, statement_timeout_s: float = STATEMENT_TIMEOUT_S,
                 connect_timeout_s: int = CONNECT_TIMEOUT_S, seen_retention_s: float = SEEN_RETENTION_S,
                 node_id: str = NODE_ID) -> None:
        self.dsn = dsn
        self.node_id = node_id
        self.seen_retention_s = seen_retention_s
        self.statement_timeout_s = statement_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        with self._edge("schema version read") as conn:
            found = current_version(conn)
        try:
            check_version(dsn, found, schema_version)
        except StoreError:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _edge(self, what: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """The connection, (re)connected if need be, for one call; psycopg's errors as StoreError."""
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.dsn, self.statement_timeout_s, self.connect_timeout_s, self.node_id)
            conn = self._conn
            try:
                yield conn
            except psycopg.Error as exc:
                # A primary demoted under us refuses writes as read-only: drop it too, to find the new one.
                lost = conn.broken or conn.closed or isinstance(exc, psycopg.errors.ReadOnlySqlTransaction)
                if lost:  # the next call connects again
                    conn.close()
                    self._conn = None
                raise (StoreUnavailable if lost else StoreError)(f"store {what} failed: {exc}") from exc

    def apply_schema(self, schema: str) -> None:
        """Check that a feature's tables are there (migrations create them: ``gateway db migrate``)."""
        names = _TABLES.findall(schema)
        with self._edge("schema check") as conn:
            missing = [n for n in names if conn.execute("SELECT to_regclass(%s)", (n,)).fetchone() == (None,)]
        if missing:
            raise StoreError(f"PostgreSQL at {where(self.dsn)} lacks table(s) {', '.join(missing)}:"
                             " run `gateway db migrate`")

    def write(self, statements: list[Statement]) -> None:
        """Run statements in one transaction, sent as a pipeline; durable on return."""
        with self._edge("write") as conn, conn.transaction(), conn.pipeline(), conn.cursor() as cur:
            for sql, args in statements:
                cur.execute(pg_sql(sql), args)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Rows of one query. A read is asked again once on a new connection if its own broke (a read has no
        effect to double; a write is never retried here: its commit may have happened)."""
        had = self._conn is not None  # (a connect that fails is not tried twice)
        try:
            with self._edge("read") as conn:
                return conn.execute(pg_sql(sql), args).fetchall()
        except StoreError:
            if not had or self._conn is not None:  # no connection to lose, or the query itself failed
                raise
        with self._edge("read") as conn:
            return conn.execute(pg_sql(sql), args).fetchall()
