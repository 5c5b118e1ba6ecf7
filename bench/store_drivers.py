"""The three incident writers ``bench/store.py`` compares, each with the same ``create(incident)`` and (for
PostgreSQL) ``claim(n)``: today's SQLite AsyncStore, psycopg 3 (sync pool on worker threads) and asyncpg
(through trio-asyncio). The PostgreSQL schema is the minimal equivalent of ``gateway.incident.store``'s
incidents and timeline tables, plus an outbox to claim from."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import psycopg
import trio
import trio_asyncio
from psycopg_pool import ConnectionPool

from gateway.incident.records import Incident, response_location
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.incident.store_pg import PgStore, migrate
from gateway.stores import MIGRATIONS, VERSION
from sim import pg

STATEMENT_TIMEOUT_MS = 5000
SCHEMA = """
DROP TABLE IF EXISTS timeline, incidents, outbox;
CREATE TABLE incidents (
    id text PRIMARY KEY,
    created_wall double precision NOT NULL,
    updated_wall double precision NOT NULL,
    service text NOT NULL,
    state text NOT NULL,
    number text NOT NULL,
    lat double precision,
    lon double precision,
    channel_id text NOT NULL,
    doc bytea NOT NULL
);
CREATE INDEX incidents_number ON incidents(number, created_wall);
CREATE INDEX incidents_created ON incidents(created_wall);
CREATE INDEX incidents_channel ON incidents(channel_id);
CREATE INDEX incidents_place ON incidents(lat, created_wall);
CREATE TABLE timeline (
    incident_id text NOT NULL REFERENCES incidents(id),
    seq integer NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    state text NOT NULL DEFAULT 'queued',
    doc bytea NOT NULL
);
CREATE INDEX outbox_queued ON outbox(id) WHERE state = 'queued';
"""
COLUMNS = "id, created_wall, updated_wall, service, state, number, lat, lon, channel_id, doc"
INCIDENT_PSYCOPG = f"INSERT INTO incidents ({COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
EVENT_PSYCOPG = "INSERT INTO timeline (incident_id, seq, doc) VALUES (%s,%s,%s)"
CLAIM_PSYCOPG = "SELECT id, doc FROM outbox WHERE state = 'queued' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
SENT_PSYCOPG = "UPDATE outbox SET state = 'sending' WHERE id = ANY(%s)"
INCIDENT_ASYNCPG = f"INSERT INTO incidents ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
EVENT_ASYNCPG = "INSERT INTO timeline (incident_id, seq, doc) VALUES ($1,$2,$3)"
CLAIM_ASYNCPG = "SELECT id, doc FROM outbox WHERE state = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
SENT_ASYNCPG = "UPDATE outbox SET state = 'sending' WHERE id = ANY($1::bigint[])"
OUTBOX_DOC = msgspec.json.encode({"alert": "alert-1", "channel": "smpp", "address": "+77010000000",
                                  "body": "Flood warning: move to high ground"})
_encode = msgspec.json.Encoder().encode

Row = tuple[str, float, float, str, str, str, float | None, float | None, str, bytes]
EventRow = tuple[str, int, bytes]


def rows(incident: Incident) -> tuple[Row, list[EventRow]]:
    """The incident's row (its head as JSON, no timeline) and its timeline rows, encoded in the caller's
    task as ``SqliteStore.create_statements`` does."""
    place = response_location(incident)
    head = _encode(msgspec.structs.replace(incident, timeline=[]))
    row: Row = (incident.id, incident.created_wall, incident.updated_wall, incident.service, incident.state,
                incident.caller.number, place.lat if place else None, place.lon if place else None,
                incident.channel_id, head)
    return row, [(incident.id, seq, _encode(e)) for seq, e in enumerate(incident.timeline)]


def reset_schema(dsn: str, outbox_rows: int) -> None:
    """Fresh tables, and ``outbox_rows`` queued outbox rows (blocking; not measured)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)  # type: ignore[arg-type]  # a constant script
        conn.execute("INSERT INTO outbox (doc) SELECT %s FROM generate_series(1, %s)", (OUTBOX_DOC, outbox_rows))
        conn.execute("VACUUM ANALYZE outbox")


@asynccontextmanager
async def open_sqlite(path: Path) -> AsyncIterator[AsyncStore]:
    """Today's store, as the gateway runs it (writes group-committed on its own thread)."""
    store = AsyncStore(SqliteStore(path))
    try:
        yield store
    finally:
        store.sync.close()


@asynccontextmanager
async def open_pgstore(server: pg.PgServer, *, unix: bool) -> AsyncIterator[AsyncStore]:
    """The gateway's own PostgreSQL store (``PgStore`` under ``AsyncStore``: one connection, group commit,
    statements pipelined) on a fresh, migrated database of ``server``."""
    name = f"pgstore_{'unix' if unix else 'tcp'}"
    await trio.to_thread.run_sync(server.psql, f"DROP DATABASE IF EXISTS {name}",
                                  f"CREATE DATABASE {name} OWNER {server.user}")
    dsn = dataclasses.replace(server, database=name).dsn(unix=unix)
    await trio.to_thread.run_sync(migrate, dsn, MIGRATIONS)
    store = AsyncStore(await trio.to_thread.run_sync(lambda: PgStore(dsn, schema_version=VERSION)))
    try:
        yield store
    finally:
        store.sync.close()


class PsycopgStore:
    """psycopg 3 in its sync mode: a connection pool, each call on a Trio worker thread."""

    def __init__(self, pool: ConnectionPool, size: int) -> None:
        self.pool = pool
        self.limiter = trio.CapacityLimiter(size)  # a thread never waits for a connection

    @classmethod
    def open(cls, dsn: str, size: int) -> PsycopgStore:
        """Blocking: the pool with all ``size`` connections made."""
        pool = ConnectionPool(dsn, min_size=size, max_size=size, open=False,
                              kwargs={"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"})
        pool.open(wait=True, timeout=30)
        return cls(pool, size)

    def close(self) -> None:
        self.pool.close()

    def _create(self, row: Row, events: list[EventRow]) -> None:
        with self.pool.connection() as conn, conn.cursor() as cur:  # commits when the block ends
            cur.execute(INCIDENT_PSYCOPG, row)
            cur.executemany(EVENT_PSYCOPG, events)

    async def create(self, incident: Incident) -> None:
        row, events = rows(incident)
        await trio.to_thread.run_sync(self._create, row, events, limiter=self.limiter)

    def _claim(self, n: int) -> int:
        with self.pool.connection() as conn:
            ids = [r[0] for r in conn.execute(CLAIM_PSYCOPG, (n,))]
            if ids:
                conn.execute(SENT_PSYCOPG, (ids,))
        return len(ids)

    async def claim(self, n: int) -> int:
        """Claim up to ``n`` queued outbox rows in one transaction; how many."""
        return await trio.to_thread.run_sync(self._claim, n, limiter=self.limiter)


class AsyncpgStore:
    """asyncpg's pool on the trio-asyncio loop; each call crosses into asyncio with ``aio_as_trio``."""

    def __init__(self, pool: object) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, size: int) -> AsyncpgStore:
        """Inside ``trio_asyncio.open_loop()``: the pool with all ``size`` connections made."""
        import asyncpg

        pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(
            dsn, min_size=size, max_size=size, server_settings={"statement_timeout": str(STATEMENT_TIMEOUT_MS)})
        return cls(pool)

    async def close(self) -> None:
        await trio_asyncio.aio_as_trio(self.pool.close)()  # type: ignore[attr-defined]

    async def on_asyncio(self, row: Row, events: list[EventRow]) -> None:
        """The create itself, on the asyncio loop."""
        async with self.pool.acquire() as conn, conn.transaction():  # type: ignore[attr-defined]
            await conn.execute(INCIDENT_ASYNCPG, *row)
            await conn.executemany(EVENT_ASYNCPG, events)

    async def create(self, incident: Incident) -> None:
        row, events = rows(incident)
        await trio_asyncio.aio_as_trio(self.on_asyncio)(row, events)

    async def _claim(self, n: int) -> int:  # runs on asyncio
        async with self.pool.acquire() as conn, conn.transaction():  # type: ignore[attr-defined]
            ids = [r[0] for r in await conn.fetch(CLAIM_ASYNCPG, n)]
            if ids:
                await conn.execute(SENT_ASYNCPG, ids)
        return len(ids)

    async def claim(self, n: int) -> int:
        """Claim up to ``n`` queued outbox rows in one transaction; how many."""
        return await trio_asyncio.aio_as_trio(self._claim)(n)
