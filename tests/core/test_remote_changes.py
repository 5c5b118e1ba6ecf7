"""Two gateway nodes on one real PostgreSQL (``sim.pg``, a fresh database per test): an incident node A creates
or changes reaches node B's bus through the database (``gateway.incident.remote``: trigger, LISTEN/NOTIFY),
never A's own twice; B's listener outlives its connection and catches up; a burst is read a few times."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from gateway.app import Gateway, isolated
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import IncidentSummary
from gateway.incident.remote import RemoteChanges
from gateway.incident.store import AsyncStore, summary
from gateway.incident.store_pg import PgStore
from gateway.settings import load
from gateway.stores import VERSION
from sim.lab import shipped_config
from tests.core.test_store import incident
from tests.store_backends import TEMPLATE, PgCluster


@dataclass
class Node:
    store: AsyncStore
    bus: Bus
    recorder: Recorder
    remote: RemoteChanges


@asynccontextmanager
async def node(dsn: str, name: str) -> AsyncIterator[Node]:
    """One gateway's store, recorder, bus and listener, tagged ``name``; all stopped and closed on leaving."""
    sync = PgStore(dsn, schema_version=VERSION, node_id=name)
    store, bus = AsyncStore(sync), Bus()
    recorder = Recorder(store, bus)
    remote = RemoteChanges(dsn, store, bus, node_id=name, catch_up_slack_s=2.0, recorder=recorder)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(remote.run)
            assert remote.state == "listening"
            yield Node(store, bus, recorder, remote)
            nursery.cancel_scope.cancel()
    finally:
        store._lane.close()
        sync.close()


async def until(seen: trio.MemoryReceiveChannel[IncidentSummary], wanted: IncidentSummary, within_s: float = 2.0,
                ) -> list[IncidentSummary]:
    """Every summary received up to ``wanted``; fails after ``within_s``."""
    got = []
    with trio.fail_after(within_s):
        while not got or got[-1] != wanted:
            got.append(await seen.receive())
    return got


async def nothing_more(seen: trio.MemoryReceiveChannel[IncidentSummary], wait_s: float = 0.5) -> list[IncidentSummary]:
    extra = []
    with trio.move_on_after(wait_s):
        extra.append(await seen.receive())
    return extra


def two_nodes_database(pg_cluster: PgCluster) -> str:
    return pg_cluster.dsn(pg_cluster.database(TEMPLATE))


async def test_what_node_a_writes_reaches_node_b_and_a_hears_itself_only_once(pg_cluster: PgCluster) -> None:
    dsn = two_nodes_database(pg_cluster)
    async with node(dsn, "a") as a, node(dsn, "b") as b, a.bus.subscribe() as a_sees, b.bus.subscribe() as b_sees:
        held = a.recorder.track(Held(incident("x1")))
        await a.recorder.create(held)
        created = summary(held.incident)
        assert (await until(b_sees, created))[-1] == created
        await a.recorder.record(held, "answered", state="answered", changes={"category": "fire"})
        answered = summary(held.incident)
        assert await until(b_sees, answered) == [answered]
        assert [s.state for s in await until(a_sees, answered)] == ["new", "answered"]  # its Recorder's two
        assert await nothing_more(a_sees) == [] and await nothing_more(b_sees, 0.1) == []
        own, theirs = a.remote.statistics(), b.remote.statistics()
        assert own.own == own.notifications >= 2 and own.reads == own.published == 0
        assert theirs.own == 0 and theirs.published >= 2


async def test_b_survives_losing_its_connection_and_catches_up(pg_cluster: PgCluster) -> None:
    database = pg_cluster.database(TEMPLATE)
    dsn = pg_cluster.dsn(database)
    async with node(dsn, "a") as a, node(dsn, "b") as b, b.bus.subscribe() as b_sees:
        held = a.recorder.track(Held(incident("x2")))
        await a.recorder.create(held)
        await until(b_sees, summary(held.incident))
        # The server ends B's listening connection, and takes no new ones for a while: B reconnects meanwhile.
        pg_cluster.admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        pg_cluster.admin.execute("SELECT pg_terminate_backend(%s)", (b.remote.backend_pid,))
        with trio.fail_after(2):
            while b.remote.state != "reconnecting":
                await trio.sleep(0.01)
        assert b.remote.health().startswith("reconnecting (")
        for category in ("fire", "flood", "gas"):  # A's store keeps its connection: it writes
            await a.recorder.record(held, "categorised", changes={"category": category})
        other = a.recorder.track(Held(incident("x3", number="+77019999999")))
        await a.recorder.create(other)
        assert await nothing_more(b_sees, 0.3) == []  # nobody listens on B
        pg_cluster.admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        got = await until(b_sees, summary(held.incident), within_s=4.0)  # after a backoff of up to 1.6 s
        got += [s for s in await nothing_more(b_sees, 0.3)]
        assert summary(other.incident) in got and b.remote.state == "listening"
        assert b.remote.statistics().reconnects >= 1
        await a.recorder.record(held, "closed", state="closed")  # and it listens again
        await until(b_sees, summary(held.incident))


async def test_a_burst_is_read_a_few_times_and_ends_at_the_last_state(pg_cluster: PgCluster) -> None:
    dsn = two_nodes_database(pg_cluster)
    async with node(dsn, "a") as a, node(dsn, "b") as b, b.bus.subscribe() as b_sees:
        held = a.recorder.track(Held(incident("x4")))
        await a.recorder.create(held)
        await until(b_sees, summary(held.incident))
        reads = b.remote.statistics().reads
        for n in range(200):
            await a.recorder.record(held, "note", changes={"position": f"p{n}"})
        got = await until(b_sees, summary(held.incident))
        assert got[-1].position == "p199"
        burst = b.remote.statistics().reads - reads
        assert burst < 40, burst
        print(f"200 updates on A: {b.remote.statistics().notifications - 1} notifications on B, {burst} reads")


async def test_latency_from_a_write_to_b_bus(pg_cluster: PgCluster) -> None:
    dsn = two_nodes_database(pg_cluster)
    async with node(dsn, "a") as a, node(dsn, "b") as b, b.bus.subscribe() as b_sees:
        held = a.recorder.track(Held(incident("x5")))
        await a.recorder.create(held)
        await until(b_sees, summary(held.incident))
        took = []
        for n in range(100):
            start = time.perf_counter()
            await a.recorder.record(held, "note", changes={"position": f"p{n}"})
            await until(b_sees, summary(held.incident))
            took.append(time.perf_counter() - start)
        print(f"A write -> B bus over {len(took)} updates: p50 {statistics.median(took) * 1000:.1f} ms,"
              f" max {max(took) * 1000:.1f} ms")
        assert max(took) < 1.0


async def test_a_postgresql_gateway_listens_and_health_says_so(pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = pg_cluster.database(TEMPLATE)
    path = shipped_config(tmp_path)
    path.write_text(re.sub(r'(?m)^backend = "sqlite".*$', f'backend = "postgresql"\ndsn = "{pg_cluster.dsn(database)}"',
                           path.read_text()))
    gateway = Gateway(load(path))
    assert gateway.remote is not None and gateway.health().other_nodes == "connecting"
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(isolated, "other nodes' incident changes", gateway.remote.run)
            assert gateway.health().other_nodes == "listening"
            pg_cluster.admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
            pg_cluster.admin.execute("SELECT pg_terminate_backend(%s)", (gateway.remote.backend_pid,))
            with trio.fail_after(2):
                while gateway.remote.state != "reconnecting":
                    await trio.sleep(0.01)
            report = gateway.health()
            assert report.other_nodes.startswith("reconnecting (") and any(
                r.startswith("other nodes' incident changes: reconnecting") for r in report.reasons)
            pg_cluster.admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
            nursery.cancel_scope.cancel()
    finally:
        gateway.store._lane.close()
        gateway.store.sync.close()
    (tmp_path / "sqlite").mkdir()
    assert Gateway(load(shipped_config(tmp_path / "sqlite"))).remote is None  # SQLite: one node, nothing to hear


async def test_a_change_node_b_makes_to_an_incident_node_a_holds_is_not_undone_by_a_s_next_write(
        pg_cluster: PgCluster) -> None:
    """A call on A (A holds the incident), its dispatcher on B's console: B's category reaches A's copy, so
    A's next write (the hang-up) keeps it; both nodes' events are on the timeline, each once."""
    dsn = two_nodes_database(pg_cluster)
    async with node(dsn, "a") as a, node(dsn, "b") as b:
        call = a.recorder.track(Held(incident("merged"), saved=False))
        await a.recorder.create(call)
        await a.recorder.record(call, "answered", state="answered")
        on_b = await b.recorder.acquire("merged")
        await b.recorder.record(on_b, "category_changed", actor="dispatcher:marat", changes={"category": "fire"})
        b.recorder.release(on_b)
        with trio.fail_after(5):
            while call.incident.category != "fire":
                await trio.sleep(0.01)
        await a.recorder.record(call, "hung_up", actor="caller", state="closed")
        stored = await a.store.get("merged")
        assert (stored.category, stored.state) == ("fire", "closed")
        assert [e.kind for e in stored.timeline] == ["call_arrived", "answered", "category_changed", "hung_up"]
        assert [e.kind for e in call.incident.timeline] == [e.kind for e in stored.timeline]
        a.recorder.release(call)
