"""Which incident store the gateway opens (``[store] backend``) and the PostgreSQL schema's migrations.

SQLite (the default) creates its tables itself, each feature's ``CREATE TABLE IF NOT EXISTS`` when it
starts. PostgreSQL's schema is versioned (``schema_version``) and made only by ``gateway db migrate``:
``MIGRATIONS`` lists every step, built from the schemas the features own (each module keeps its SQL;
this one only orders them). An applied migration is never changed: a feature's new table or column is
a new step here (``tests/core/test_store_pg.py`` pins the DDL of the applied ones).

The warnings store (recipients, alerts, the outbox) follows ``[store] backend`` too
(``open_warnings_store``): on PostgreSQL its tables are migration 4's, in the schema ``warnings``.

Not here yet (still SQLite files of their own beside ``[store] path``, on either backend): the unit
board, and the accounts and audit.
"""

from __future__ import annotations

from pathlib import Path

from gateway.incident import callback_table, recording_index, remote, store
from gateway.incident.spool import Spooled
from gateway.incident.store import Queries, SqliteStore
from gateway.incident.store_pg import Migration, PgStore, migrate, read_version
from gateway.intake import fallback
from gateway.scenario import leases, runs
from gateway.settings.config import StoreConfig
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
    Migration(4, "the warnings store in schema warnings: recipients, alerts and audit, fan-out cursors, jobs with"
                 " their claiming node, receipts' replay keys, nodes' liveness", pg_schema(outbox.SCHEMA)),
)
VERSION = MIGRATIONS[-1].version


def open_incident_store(cfg: StoreConfig) -> Queries:
    """The blocking incident store ``cfg`` names (``AsyncStore`` drives either). The caller closes it.
    Raises StoreError: SQLite's file unusable, PostgreSQL unreachable (naming what to fix in the DSN)
    or at a schema version this gateway does not know."""
    if cfg.backend == "postgresql":  # with this node's spool for when PostgreSQL is away (incident.spool)
        return Spooled(PgStore(cfg.dsn, schema_version=VERSION), spool_path(cfg))
    return SqliteStore(cfg.path)


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
