"""The incident store's backends for tests: ``backend`` runs a test on SQLite and on PostgreSQL (issue 14).

One throwaway PostgreSQL (``sim.pg``) per session; a database migrated once (``gateway.stores.MIGRATIONS``)
is the template every PostgreSQL test copies into a fresh database of its own. Without PostgreSQL's
binaries the PostgreSQL cases are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from gateway.errors import DrillError
from gateway.incident.sqldb import Db, SqliteDb
from gateway.incident.store import SEEN_RETENTION_S, SqliteStore
from gateway.incident.store_pg import PgDb, PgStore, migrate
from gateway.people import accounts
from gateway.stores import MIGRATIONS, VERSION
from gateway.units import board
from gateway.warning.outbox import Outbox, Queries
from gateway.warning.outbox_pg import PgOutbox
from sim import pg

TEMPLATE = "ecgw_template"
_numbers = itertools.count()


class PgCluster:
    """The session's server: fresh databases on demand, owned by the gateway's role."""

    def __init__(self, server: pg.PgServer) -> None:
        self.server = server
        self.admin = psycopg.connect(f"host={server.sockets} port={server.port} user={pg.SUPERUSER} dbname=postgres",
                                     autocommit=True)

    def dsn(self, database: str) -> str:
        s = self.server
        return f"postgresql://{s.user}:{s.password}@/{database}?host={quote(str(s.sockets), safe='')}&port={s.port}"

    def database(self, template: str = "template0") -> str:
        """A new empty (or ``template``-copied) database; its name."""
        name = f"t{next(_numbers)}"
        self.admin.execute(f"CREATE DATABASE {name} OWNER {self.server.user} TEMPLATE {template}")
        return name


def require_postgresql() -> None:
    """Skip without PostgreSQL's binaries; in CI (which installs them) fail instead."""
    try:
        pg.bindir()
    except DrillError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI (make deps installs it): {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    require_postgresql()
    with pg.pg_server() as server:
        cluster = PgCluster(server)
        # Behaviour, not a power cut, is tested here (bench/store.py measures the durable server): without
        # fsync the dozens of databases made from the template are not all flushed again at shutdown.
        cluster.admin.execute("ALTER SYSTEM SET fsync = off")
        cluster.admin.execute("SELECT pg_reload_conf()")
        cluster.admin.execute(f"CREATE DATABASE {TEMPLATE} OWNER {server.user} TEMPLATE template0")
        migrate(cluster.dsn(TEMPLATE), MIGRATIONS)
        try:
            yield cluster
        finally:
            cluster.admin.close()


class Backend:
    """One test's store: ``open()`` gives a new connection to the same database each time."""

    def __init__(self, kind: str, tmp_dir: Path, cluster: PgCluster | None = None) -> None:
        tmp_dir.mkdir(exist_ok=True)
        self.kind, self.path, self.cluster = kind, tmp_dir / "gateway.sqlite3", cluster
        self.dsn = cluster.dsn(cluster.database(TEMPLATE)) if cluster is not None else ""

    def sibling(self, name: str) -> Backend:
        """Another store of the same kind, empty: a second SQLite file, or a second database."""
        return Backend(self.kind, self.path.parent / name, self.cluster)

    def open(self, *, seen_retention_s: float = SEEN_RETENTION_S, short_waits: bool = False) -> SqliteStore:
        """The store; ``short_waits``: a write waits at most ~0.1-0.3 s for a lock another client holds."""
        if self.kind == "postgresql":
            return PgStore(self.dsn, schema_version=VERSION, seen_retention_s=seen_retention_s,
                           statement_timeout_s=0.3 if short_waits else 5.0)
        store = SqliteStore(self.path, synchronous="OFF", seen_retention_s=seen_retention_s)
        if short_waits:
            store._db.execute("PRAGMA busy_timeout=100")
        return store

    def accounts_db(self) -> Db:
        """The accounts' tables: in the store's SQLite file, or in the database (a new connection: a node)."""
        if self.kind == "postgresql":
            return PgDb(self.dsn, accounts.PG_SCHEMA, "accounts", schema_version=VERSION)
        return SqliteDb(self.path, accounts.SCHEMA, "accounts")

    def units_db(self) -> Db:
        """The unit board's tables: ``units.db`` beside the store, or in the database (a new connection)."""
        if self.kind == "postgresql":
            return PgDb(self.dsn, board.SCHEMA, "units store", schema_version=VERSION)
        return SqliteDb(self.path.with_name("units.db"), board.SCHEMA, "units store")

    def sql(self, statement: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """One statement (``?`` placeholders) on a connection of the test's own, committed: the database as
        an operator or another program sees it. Raises the driver's own errors."""
        if self.kind == "postgresql":
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                cur = conn.execute(statement.replace("?", "%s"), args)
                return cur.fetchall() if cur.description else []
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            return db.execute(statement, args).fetchall()
        finally:
            db.close()

    def outbox(self, node_id: str = "node-a", *, statement_timeout_s: float = 5.0) -> Queries:
        """The warnings store (``node_id`` claims on PostgreSQL; SQLite is one node's): a new connection each time."""
        if self.kind == "postgresql":
            return PgOutbox(self.dsn, schema_version=VERSION, node_id=node_id, statement_timeout_s=statement_timeout_s,
                            connect_timeout_s=2)
        return Outbox(self.path.with_name("warnings.sqlite3"), synchronous="NORMAL")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Another client holds the database (every incident write of ours fails) while inside."""
        if self.kind == "postgresql":
            with psycopg.connect(self.dsn) as other:
                other.execute("LOCK TABLE incidents, timeline, seen IN ACCESS EXCLUSIVE MODE")
                yield
                other.rollback()
            return
        other = sqlite3.connect(self.path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            yield
            other.execute("ROLLBACK")
        finally:
            other.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "postgresql":
        return Backend("postgresql", tmp_path, request.getfixturevalue("pg_cluster"))
    return Backend("sqlite", tmp_path)
