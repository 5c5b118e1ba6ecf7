"""The incident store when PostgreSQL's only synchronous standby dies (``gateway.incident.sync_wait``), on a
real primary and standby (``sim.pg``): a write's COMMIT waits ``commit_wait_s`` for the standby, then goes on
committed on the primary only, later writes do not wait at all, ``problems`` says so (``/health``), and once
the standby is back and confirms a probe, commits wait for it again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from gateway.incident.store_pg import PgDb, PgStore, migrate
from gateway.people import accounts
from gateway.stores import MIGRATIONS, VERSION
from gateway.warning.outbox_pg import PgOutbox
from sim import pg
from tests.core.test_store import incident
from tests.core.warning_harness import people
from tests.store_backends import require_postgresql

WAIT_S = 0.5


@pytest.fixture
def pair() -> Iterator[tuple[pg.PgServer, pg.PgServer]]:
    require_postgresql()
    with pg.pg_pair() as (primary, standby):
        migrate(primary.dsn(), MIGRATIONS)
        yield primary, standby


def timed_create(store: PgStore, incident_id: str) -> float:
    started = time.monotonic()
    store.create(incident(incident_id))
    return time.monotonic() - started


def on_primary(primary: pg.PgServer) -> set[str]:
    with psycopg.connect(primary.dsn()) as db:
        return {str(i) for (i,) in db.execute("SELECT id FROM incidents")}


def test_a_dead_standby_costs_one_wait_then_commits_go_on_on_the_primary_and_health_says_so(
        pair: tuple[pg.PgServer, pg.PgServer]) -> None:
    primary, standby = pair
    store = PgStore(primary.dsn(), schema_version=VERSION, commit_wait_s=WAIT_S)
    store.sync_wait.probe_every_s = 1.0
    try:
        assert timed_create(store, "both") < WAIT_S and store.problems() == []
        standby.halt()  # the only synchronous standby gone: PostgreSQL would make every COMMIT wait for ever
        first = timed_create(store, "waited")
        assert WAIT_S <= first < WAIT_S + 2.0
        assert "has not confirmed a commit since" in store.problems()[0]
        unwaited = [timed_create(store, f"alone{n}") for n in range(5)]
        assert max(unwaited) < WAIT_S, unwaited  # no waiting until the next probe
        assert {"both", "waited", *(f"alone{n}" for n in range(5))} <= on_primary(primary)
        standby.resume()  # back, catching up
        deadline = time.monotonic() + 30
        while store.problems() and time.monotonic() < deadline:
            time.sleep(0.2)
            timed_create(store, f"probe{time.monotonic_ns()}")  # every second one write waits again: the probe
        assert store.problems() == []  # the standby confirmed a commit: writes wait for it again
        assert timed_create(store, "both-again") < WAIT_S
    finally:
        store.close()


def test_the_accounts_and_the_warnings_store_do_not_wait_for_a_dead_standby_either(
        pair: tuple[pg.PgServer, pg.PgServer]) -> None:
    """A console request (a session written back) and a fan-out write share the primary: neither may hang."""
    primary, standby = pair
    db = PgDb(primary.dsn(), accounts.PG_SCHEMA, "accounts", schema_version=VERSION)
    outbox = PgOutbox(primary.dsn(), schema_version=VERSION, node_id="node-a")
    try:
        standby.halt()
        for n in range(3):
            started = time.monotonic()
            with db.transaction() as execute:  # a write: its COMMIT waits for the standby
                execute("INSERT INTO accounts_version (one, n) VALUES (1, ?) ON CONFLICT (one) DO UPDATE"
                        " SET n = excluded.n", (n,))
            outbox.put_recipients(people(2, start=2 * n))
            assert time.monotonic() - started < 2 * (db.sync_wait.commit_wait_s + 1.0)
        assert db.sync_wait.problem() and outbox.sync_wait.problem()
        assert outbox.count_recipients() == 6
    finally:
        db.close()
        outbox.close()
