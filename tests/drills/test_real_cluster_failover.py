"""Real tier, issue 14: the PostgreSQL primary under both nodes dies while calls arrive; its synchronous
standby is promoted. Both gateways find the new primary by themselves (a multi-host DSN with
``target_session_attrs=read-write``), every call is answered throughout (each node spools what it cannot
commit, ``incident.spool``, and replays it), every incident committed before the kill is on the promoted
standby (synchronous replication: committed means on both), and each call of the run is stored exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from gateway.incident.store_pg import migrate
from gateway.stores import MIGRATIONS
from sim import pg, sipp
from sim.cluster import running_cluster, started_nodes
from sim.lab import AsteriskInstance
from tests.drills.test_real_cluster import LEASE_S, NAMES, TOKEN, final, require_cluster_lab

CALLS = 16
EVERY_S = 0.25  # 4 calls a second, the primary killed after the fourth
PROMOTE_AFTER_S = 1.0  # an operator's (or a watchdog's) reaction, shortened


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[pg.PgServer, pg.PgServer]]:
    require_cluster_lab()
    with pg.pg_pair() as (primary, standby):
        migrate(primary.dsn(), MIGRATIONS)
        yield primary, standby


@pytest.fixture(scope="module")
def nodes(pair: tuple[pg.PgServer, pg.PgServer],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AsteriskInstance]]:
    with started_nodes(pg.multi_host_dsn(list(pair)), NAMES, tmp_path_factory.mktemp("cluster"), TOKEN,
                       lease_s=LEASE_S) as started:
        yield started


def numbers_in(server: pg.PgServer) -> dict[str, int]:
    with psycopg.connect(server.dsn(), connect_timeout=2) as db:
        return {str(n): int(c) for n, c in db.execute("SELECT number, count(*) FROM incidents GROUP BY number")}


async def first_write_after(server: pg.PgServer, known: int, timeout: float = 30.0) -> float:
    """Until ``server`` holds more than ``known`` incidents (a write accepted there); the wall time then."""
    with trio.fail_after(timeout):
        while True:
            try:
                if sum((await trio.to_thread.run_sync(numbers_in, server)).values()) > known:
                    return time.time()
            except psycopg.Error:
                pass  # not promoted yet, or not up
            await trio.sleep(0.05)


async def health(url: str) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url + "/health")).json()  # type: ignore[no-any-return]


async def test_primary_killed_and_standby_promoted_every_call_answered_and_stored_once(
    pair: tuple[pg.PgServer, pg.PgServer], nodes: list[AsteriskInstance], tmp_path: Path
) -> None:
    primary, standby = pair
    async with running_cluster(nodes, NAMES, tmp_path) as lab:
        results: dict[str, sipp.CallResult] = {}
        degraded: set[str] = set()

        async def call(n: int) -> None:
            number = f"+770188800{n:02d}"
            results[number] = await lab.call(f"call-{n}", number)

        async def watch_health() -> None:  # each node says it is degraded while PostgreSQL is away
            while True:
                for gateway, name in zip(lab.gateways, NAMES, strict=True):
                    report = await health(gateway.url)
                    if any("spool" in str(r) or "store" in str(r) for r in report["reasons"]):  # type: ignore[attr-defined]
                        degraded.add(name)
                await trio.sleep(0.2)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_health)
            async with trio.open_nursery() as callers:
                for n in range(CALLS):
                    if n == 4:
                        await trio.sleep(0.5)  # the first four stored and committed on both servers
                        committed = numbers_in(primary)
                        killed = time.time()
                        await trio.to_thread.run_sync(primary.kill)
                        callers.start_soon(promote_later, standby)
                    callers.start_soon(call, n)
                    await trio.sleep(EVERY_S)
                written = await first_write_after(standby, sum(committed.values()))
            await final(lab.gateways[1], list(results.values()))  # every record complete, wherever it was made
            nursery.cancel_scope.cancel()
        for gateway in lab.gateways:
            with trio.fail_after(15):
                while (await health(gateway.url))["status"] != "ok":
                    await trio.sleep(0.2)
    assert all(r.answered_wall is not None for r in results.values()), tmp_path
    after = numbers_in(standby)
    assert all(after.get(number) == 1 for number in committed), (committed, after)  # nothing committed lost
    assert {n: c for n, c in after.items() if n in results} == {n: 1 for n in results}  # every call once
    assert degraded == set(NAMES)
    print(f"primary killed -> first write accepted on the promoted standby {written - killed:.2f} s "
          f"(promoted after {PROMOTE_AFTER_S:.1f} s); {CALLS} calls, {CALLS} answered, {len(after)} incidents "
          f"stored once each; {len(committed)} committed before the kill, all on the standby")


async def promote_later(standby: pg.PgServer) -> None:
    await trio.sleep(PROMOTE_AFTER_S)
    await trio.to_thread.run_sync(standby.promote)
