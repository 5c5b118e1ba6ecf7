"""The throwaway PostgreSQL of ``sim.pg`` (issue 14) on 127.0.0.1: it starts and takes the gateway's
password, a synchronous standby has every commit, a failover is found through the multi-host URI, and
nothing keeps running once a block exits."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import trio

from sim import pg
from tests.store_backends import require_postgresql


@pytest.fixture(autouse=True)
def postgresql_installed() -> None:
    require_postgresql()


def assert_gone(servers: list[pg.PgServer]) -> None:
    for server in servers:
        assert server.pid is not None
        assert not Path(f"/proc/{server.pid}").exists() or "zombie" in Path(f"/proc/{server.pid}/status").read_text()
        assert pg.processes_in(server.base) == []
        assert not server.base.exists()


def test_server_takes_the_gateway_password_over_tcp_and_unix_socket_and_stops_clean() -> None:
    with pg.pg_server() as server:  # every step is bounded inside sim.pg (start 30 s, each tool 60 s)
        for dsn in (server.dsn(), server.dsn(unix=True)):
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                row = conn.execute("SELECT current_user, current_setting('fsync'),"
                                   " current_setting('synchronous_commit'), inet_server_addr()::text").fetchone()
            assert row is not None and row[:3] == ("ecgw", "on", "on")
            assert row[3] == ("127.0.0.1/32" if "@127.0.0.1" in dsn else None)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.dsn().replace(server.password, "wrong"), connect_timeout=5)
        assert server.pid in server.processes()
    assert_gone([server])


def test_a_commit_on_the_primary_is_on_the_standby_and_a_failover_is_found_by_the_multi_host_dsn() -> None:
    with pg.pg_pair() as (primary, standby):
        assert primary.psql("SELECT application_name || ' ' || sync_state FROM pg_stat_replication") == "standby1 sync"
        with psycopg.connect(primary.dsn(), connect_timeout=5, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = remote_apply")  # visible there, not only on its disk
            conn.execute("CREATE TABLE calls (id text PRIMARY KEY)")
            conn.execute("INSERT INTO calls VALUES ('before-failover')")
        with psycopg.connect(standby.dsn(), connect_timeout=5) as conn:
            assert conn.execute("SELECT id FROM calls").fetchall() == [("before-failover",)]
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("INSERT INTO calls VALUES ('on-the-standby')")

        primary.kill()
        standby.promote()
        dsn = pg.multi_host_dsn([primary, standby])
        assert f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}/" in dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.info.port == standby.port
            conn.execute("INSERT INTO calls VALUES ('after-failover')")
            assert [r[0] for r in conn.execute("SELECT id FROM calls ORDER BY id")] == ["after-failover",
                                                                                        "before-failover"]
    assert_gone([primary, standby])


async def test_trio_blocks_stop_the_pair_even_when_cancelled() -> None:
    with trio.move_on_after(60) as scope:
        async with pg.open_pg_pair() as (primary, standby):
            servers = [primary, standby]
            reply = await trio.to_thread.run_sync(standby.psql, "SELECT pg_is_in_recovery()")
            assert reply == "t"
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert_gone(servers)
