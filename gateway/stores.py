"""Which incident store the gateway opens (``[store] backend``) and the PostgreSQL schema's migrations.

SQLite (the default) creates its tables itself, each feature's ``CREATE TABLE IF NOT EXISTS`` when it
starts. PostgreSQL's schema is versioned (``schema_version``) and made only by ``gateway db migrate``:
``MIGRATIONS`` lists every step, built from the schemas the features own (each module keeps its SQL;
this one only orders them). An applied migration is never changed: a feature's new table or column is
a new step here (``tests/core/test_store_pg.py`` pins the DDL of the applied ones).

The accounts (with sessions and the audit trail) and the unit board are opened here too
(``open_accounts``, ``open_units_db``): on SQLite in files of their own beside ``[store] path`` as before,
on PostgreSQL in the shared database (migrations 5 and 6), where every node sees the same.
The warnings store (recipients, alerts, the outbox) follows ``[store] backend`` too
(``open_warnings_store``): on PostgreSQL its tables are migration 7's, in the schema ``warnings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.incident import callback_table, nodes, recording_index, remote, store
from gateway.incident.spool import Spooled
from gateway.incident.sqldb import Db, SqliteDb
from gateway.incident.store import Queries, SqliteStore
from gateway.incident.store_pg import Migration, PgDb, PgStore, migrate, read_version
from gateway.intake import fallback
from gateway.people import accounts
from gateway.people.accounts import Accounts
from gateway.scenario import leases, runs
from gateway.settings.config import StoreConfig
from gateway.units import board
from gateway.warning import outbox
from gateway.warning.outbox_pg import PgOutbox, pg_schema

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "incidents, timeline, directory, replay keys, call-backs, recordings and holds, scenario runs,"
                 " CEL cursor",
              "".join((store.SCHEMA, callback_table.SCHEMA, recording_index.SCHEMA, runs.SCHEMA,
                       fallback.CURSOR_SCHEMA))),
    Migration(2, "incident changes notified to the other nodes (trigger, pg_notify), incidents by updated_wall",
              remote.SCHEMA),
    Migration(3, "scenario run leases (which node executes which run) and their fence", leases.SCHEMA),
    Migration(4, "gateway nodes: each node's last report of what it holds (calls, queue, scenario runs)",
              nodes.SCHEMA),
    Migration(5, "accounts, sessions, lockouts and the append-only audit trail (numbered by the database)",
              accounts.PG_SCHEMA),
    Migration(6, "the units board: units (one row each, written by compare-and-swap), their log, notes to incidents",
              board.SCHEMA),
    Migration(7, "the warnings store in schema warnings: recipients, alerts and audit, fan-out cursors, jobs with"
                 " their claiming node, receipts' replay keys, nodes' liveness", pg_schema(outbox.SCHEMA)),
)
VERSION = MIGRATIONS[-1].version
ACCOUNTS_CONNECT_WAIT_S = 0.25  # how long a console request waits for PostgreSQL to be connected again


def open_incident_store(cfg: StoreConfig) -> Queries:
    """The blocking incident store ``cfg`` names (``AsyncStore`` drives either). The caller closes it.
    Raises StoreError: SQLite's file unusable, PostgreSQL unreachable (naming what to fix in the DSN)
    or at a schema version this gateway does not know."""
    if cfg.backend == "postgresql":  # with this node's spool for when PostgreSQL is away (incident.spool)
        return Spooled(PgStore(cfg.dsn, schema_version=VERSION, commit_wait_s=cfg.commit_wait_s), spool_path(cfg))
    return SqliteStore(cfg.path)


def open_accounts(cfg: StoreConfig, **options: Any) -> Accounts:
    """The accounts, sessions and audit trail (``options``: ``Accounts``'s): in the SQLite store's file, or
    in PostgreSQL shared by every node. The caller closes them. Raises StoreError (on PostgreSQL also a
    schema not at ``VERSION``: run ``gateway db migrate``)."""
    if cfg.backend == "postgresql":
        # The console asks for sessions from the event loop: with PostgreSQL away it is refused at once.
        return Accounts(PgDb(cfg.dsn, accounts.PG_SCHEMA, "accounts", schema_version=VERSION,
                             connect_wait_s=ACCOUNTS_CONNECT_WAIT_S), **options)
    return Accounts(cfg.path, **options)


def open_units_db(cfg: StoreConfig) -> Db:
    """Where the unit board keeps its units: ``units.db`` beside ``[store] path``, or PostgreSQL shared
    by every node. The board owns and closes it. Raises StoreError."""
    if cfg.backend == "postgresql":
        return PgDb(cfg.dsn, board.SCHEMA, "units store", schema_version=VERSION)
    return SqliteDb(Path(cfg.path).with_name("units.db"), board.SCHEMA, "units store")


def open_warnings_store(cfg: StoreConfig, sqlite_path: str | Path, node_id: str) -> outbox.Queries:
    """The blocking warnings store: the SQLite file ``sqlite_path`` ([warnings] store_path), or PostgreSQL's
    tables shared by the nodes, this one claiming as ``node_id``. The caller closes it. Raises StoreError."""
    if cfg.backend == "postgresql":
        return PgOutbox(cfg.dsn, schema_version=VERSION, node_id=node_id)
    return outbox.Outbox(sqlite_path)


def spool_path(cfg: StoreConfig) -> Path:
    """Where a PostgreSQL node keeps the writes PostgreSQL could not take: beside ``[store] path``."""
    return Path(cfg.path).with_suffix(".spool.sqlite3")


def migrate_store(cfg: StoreConfig) -> tuple[int, int] | None:
    """Bring the PostgreSQL schema up to ``VERSION``: (version before, after); None for SQLite (nothing
    to do: its tables are made when the gateway starts). Raises StoreError."""
    if cfg.backend != "postgresql":
        return None
    return migrate(cfg.dsn, MIGRATIONS)


def schema_version(cfg: StoreConfig) -> int | None:
    """The PostgreSQL database's schema version (None: never migrated). Raises StoreError."""
    return read_version(cfg.dsn)
