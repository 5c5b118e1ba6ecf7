"""Real tier, issue 14: PostgreSQL stopped for 60 s under two nodes while callers keep arriving through
Kamailio. Every caller is answered throughout (each node keeps what PostgreSQL cannot take in its local
spool, ``incident.spool``), each node says it is degraded meanwhile, and once PostgreSQL is back every
call's incident is in it exactly once, complete."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from gateway.incident.store_pg import PgStore
from gateway.stores import VERSION
from sim import pg, sipp
from sim.cluster import running_cluster, started_nodes
from sim.lab import AsteriskInstance
from tests.drills.test_real_cluster import LEASE_S, NAMES, TOKEN, require_cluster_lab

AWAY_S = 60.0
BEFORE_S, AFTER_S = 4.0, 6.0  # callers arrive this long before PostgreSQL stops and after it is back
EVERY_S = 1.0


@pytest.fixture(scope="module")
def nodes(database: pg.PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AsteriskInstance]]:
    require_cluster_lab()
    with started_nodes(database.dsn(), NAMES, tmp_path_factory.mktemp("cluster"), TOKEN, lease_s=LEASE_S) as started:
        yield started


def call_ids_in(server: pg.PgServer) -> Counter[str]:
    store = PgStore(server.dsn(), schema_version=VERSION)
    try:
        found = [store.get(str(i)) for (i,) in store._read("SELECT id FROM incidents")]
    finally:
        store.close()
    return Counter(i.call_id for i in found if i.call_id and i.state == "closed"
                   and any(e.kind == "hung_up" for e in i.timeline))


async def test_postgresql_away_60_s_every_caller_answered_and_stored_once(
    database: pg.PgServer, nodes: list[AsteriskInstance], tmp_path: Path
) -> None:
    async with running_cluster(nodes, NAMES, tmp_path) as lab:
        results: list[sipp.CallResult] = []
        degraded: set[str] = set()

        async def call(n: int) -> None:
            results.append(await lab.call(f"call-{n}", f"+77019990{n:03d}", talk_ms=1000))

        async def watch() -> None:
            while True:
                for gateway, name in zip(lab.gateways, NAMES, strict=True):
                    async with httpx.AsyncClient(timeout=2) as client:
                        report = (await client.get(gateway.url + "/health")).json()
                    if any("local spool" in str(r) for r in report["reasons"]):
                        degraded.add(name)
                await trio.sleep(0.5)

        started = trio.current_time()
        with trio.fail_after(BEFORE_S + AWAY_S + AFTER_S + 60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                async with trio.open_nursery() as callers:
                    n, halted, resumed = 0, False, False
                    while (now := trio.current_time() - started) < BEFORE_S + AWAY_S + AFTER_S:
                        if not halted and now >= BEFORE_S:
                            await trio.to_thread.run_sync(database.halt)
                            halted = True
                        if not resumed and now >= BEFORE_S + AWAY_S:
                            await trio.to_thread.run_sync(database.resume)
                            resumed = True
                        callers.start_soon(call, n)
                        n += 1
                        await trio.sleep(EVERY_S)
                back = time.monotonic()
                while True:  # both spools replayed, every record there
                    stored = await trio.to_thread.run_sync(call_ids_in, database)
                    if all(stored[r.call_id] for r in results):
                        break
                    await trio.sleep(0.5)
                replayed_s = time.monotonic() - back
                nursery.cancel_scope.cancel()
    assert all(r.answered_wall is not None for r in results), tmp_path
    assert {r.call_id: stored[r.call_id] for r in results} == {r.call_id: 1 for r in results}
    assert degraded == set(NAMES)
    print(f"PostgreSQL away {AWAY_S:.0f} s: {len(results)} callers, {len(results)} answered, every incident in it "
          f"once and complete {replayed_s:.1f} s after the last caller")
