"""Fixtures the real-tier drills share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.incident.store_pg import migrate
from gateway.stores import MIGRATIONS
from sim import pg
from tests.store_backends import require_postgresql


@pytest.fixture(scope="module")
def database() -> Iterator[pg.PgServer]:
    """A PostgreSQL of the module's own on loopback, at the gateway's schema, for its nodes to share."""
    require_postgresql()
    with pg.pg_server() as server:
        migrate(server.dsn(), MIGRATIONS)
        yield server
