"""Two gateway nodes sharing the warnings store on one PostgreSQL (issue 14): each job claimed by one node
only, a fan-out advanced by one node at a time, a restart recovering only the node's own unknown outcomes,
a dead node's taken over once its lease ends, and PostgreSQL away as a StoreError. Each node is a
``PgOutbox`` of its own (its own connection and node id), driven from threads as ``AsyncOutbox`` would."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trio

from gateway.errors import StoreError
from gateway.incident.store_pg import migrate
from gateway.stores import MIGRATIONS, VERSION
from gateway.warning.nodes import AsyncOutbox, Liveness
from gateway.warning.outbox import Queries
from gateway.warning.outbox_pg import PgOutbox
from gateway.warning.records import SENT, AuditEvent
from sim import pg
from tests.core.test_warning_outbox import email_route, record
from tests.core.warning_harness import people
from tests.store_backends import TEMPLATE, Backend, PgCluster, require_postgresql

LEASE_S = 0.5


@pytest.fixture
def nodes(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[tuple[Backend, Queries, Queries]]:
    """The database and its two nodes, "node-a" and "node-b"."""
    database = Backend("postgresql", tmp_path, pg_cluster)
    a, b = database.outbox("node-a"), database.outbox("node-b")
    yield database, a, b
    a.close()
    b.close()


def alert_with_jobs(box: Queries, recipients: int, alert_id: str = "A1") -> int:
    """An alert whose fan-out made one queued e-mail job per recipient; its number."""
    box.put_recipients(people(recipients))
    box.insert_alert(record(alert_id), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = box.get_alert(alert_id)
    box.start_fanout(no, [], 0.0)
    done = False
    while not done:
        _, _, done = box.fanout_chunk(no, ["medeu"], None, 0, 1000, email_route, 0.0)
    return no


def together(*work: Callable[[], object]) -> list[object]:
    """Run each function on a thread of its own, all released at once; their results."""
    start = threading.Barrier(len(work))

    def run(fn: Callable[[], object]) -> object:
        start.wait(timeout=10)
        return fn()

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(run, work, timeout=60))


def drain(box: Queries, batch: int) -> Callable[[], list[tuple[int, int, int]]]:
    def claim_all() -> list[tuple[int, int, int]]:
        got: list[tuple[int, int, int]] = []
        while jobs := box.claim("email", batch, time.time()):
            got.extend(jobs)
        return got
    return claim_all


def test_two_nodes_claiming_at_once_take_every_job_exactly_once(nodes: tuple[Backend, Queries, Queries]) -> None:
    _, a, b = nodes
    alert_with_jobs(a, 3000)
    started = time.perf_counter()
    got_a, got_b = together(drain(a, 20), drain(b, 20))
    took = time.perf_counter() - started
    claimed = Counter(t for _, t, _ in [*got_a, *got_b])  # type: ignore[misc]
    assert len(claimed) == 3000 and set(claimed.values()) == {1}  # every job, none twice
    assert got_a and got_b, "both nodes claimed"
    owners = dict(a._read("SELECT target, owner FROM jobs WHERE state = 1"))
    assert {t for _, t, _ in got_a} == {t for t, o in owners.items() if o == "node-a"}  # type: ignore[misc]
    print(f"\n2 nodes on PostgreSQL: 3000 jobs claimed 20 at a time in {took:.2f} s "
          f"({3000 / took:.0f} jobs/s; node-a {len(got_a)}, node-b {len(got_b)})")  # type: ignore[arg-type]


def test_two_nodes_advancing_one_fanout_neither_skip_nor_repeat(nodes: tuple[Backend, Queries, Queries]) -> None:
    _, a, b = nodes
    a.put_recipients(people(2000))
    a.insert_alert(record("A1"), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = a.get_alert("A1")
    a.start_fanout(no, [], 0.0)

    def advance(box: Queries) -> Callable[[], int]:
        def chunks() -> int:  # each node starts from where it thinks the fan-out is: 0
            cursor, made, done, total = 0, 0, False, 0
            while not done:
                cursor, made, done = box.fanout_chunk(no, ["medeu"], None, cursor, 50, email_route, 0.0)
                total += made
            return total
        return chunks

    made_a, made_b = together(advance(a), advance(b))
    assert made_a + made_b == 2000  # type: ignore[operator]
    assert a.progress(no)["email"].queued == 2000 and a.fanout_done(no)


def test_a_restarted_node_recovers_only_its_own_sending_jobs(nodes: tuple[Backend, Queries, Queries]) -> None:
    database, a, b = nodes
    alert_with_jobs(a, 20)
    mine, theirs = a.claim("email", 5, time.time()), b.claim("email", 5, time.time())
    a.close()
    a = database.outbox("node-a")  # the same node, restarted ([cluster] node_id set)
    assert sorted(a.sending("email")) == sorted(mine)
    a.requeue("email", [(n, t) for n, t, _ in theirs])  # never another node's
    a.release("email", [(n, t) for n, t, _ in theirs], time.time())
    a.finish("email", [(n, t, SENT, "", "", 0.0) for n, t, _ in theirs])
    assert sorted(b.sending("email")) == sorted(theirs)
    a.requeue("email", [(n, t) for n, t, _ in mine])
    assert a.sending("email") == [] and len(a.claim("email", 100, time.time())) == 15
    a.close()


def test_a_dead_nodes_sending_jobs_are_adopted_once_its_lease_ends(nodes: tuple[Backend, Queries, Queries]) -> None:
    _, a, b = nodes
    alert_with_jobs(a, 20)
    now = time.time()
    a.heartbeat(now, LEASE_S)
    b.heartbeat(now, LEASE_S)
    stuck = a.claim("email", 5, now)  # ... and node-a dies handing them on
    assert b.adopt("email", now) == []  # its lease still runs: they are its own
    b.heartbeat(now + 1, LEASE_S)  # node-b lives on; node-a stays silent
    adopted = b.adopt("email", now + 1)
    assert sorted(adopted) == sorted(stuck) and sorted(b.sending("email")) == sorted(stuck)
    assert b.adopt("email", now + 1) == [] and a.adopt("email", now + 1) == []  # once; never from a live node
    a.finish("email", [(n, t, SENT, "late", "", 0.0) for n, t, _ in stuck])  # node-a was only paused: too late
    assert sorted(b.sending("email")) == sorted(stuck)
    b.requeue("email", [(n, t) for n, t, _ in adopted])  # recovered: sent again
    assert len(b.claim("email", 100, now + 1)) == 20


def test_a_dead_nodes_recovered_jobs_go_out_before_the_jobs_queued_after_them(
        nodes: tuple[Backend, Queries, Queries]) -> None:
    _, a, b = nodes
    first = alert_with_jobs(a, 5)  # queued long ago
    now = time.time()
    a.heartbeat(now, LEASE_S)
    stuck = a.claim("email", 5, now)  # node-a dies handing all five on
    a.insert_alert(record("A2"), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = a.get_alert("A2")
    a.start_fanout(no, [], now)
    while not a.fanout_chunk(no, ["medeu"], None, 0, 1000, email_route, now)[2]:
        pass  # a second alert's five jobs, queued now
    b.heartbeat(now + 1, LEASE_S)
    adopted = b.adopt("email", now + 1)
    b.requeue("email", [(n, t) for n, t, _ in adopted])
    assert sorted((n, t) for n, t, _ in b.claim("email", 5, now + 2)) == sorted((n, t) for n, t, _ in stuck)
    assert {n for n, _, _ in stuck} == {first}


def test_two_nodes_adopting_at_once_share_a_dead_nodes_jobs(nodes: tuple[Backend, Queries, Queries]) -> None:
    database, a, b = nodes
    c = database.outbox("node-c")
    alert_with_jobs(a, 400)
    now = time.time()
    dead = c.claim("email", 400, now)
    for box in (a, b):
        box.heartbeat(now + 10, LEASE_S)
    got_a, got_b = together(lambda: a.adopt("email", now + 10), lambda: b.adopt("email", now + 10))
    assert sorted([*got_a, *got_b]) == sorted(dead)  # type: ignore[misc]
    c.close()


def test_an_old_sqlite_file_gets_the_owner_column_and_keeps_its_sending_jobs(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path)  # one node: PostgreSQL's tables come from migrations
    box = backend.outbox()
    no = alert_with_jobs(box, 3)
    stuck = box.claim("email", 2, time.time())
    box._tx(lambda db: db.execute("ALTER TABLE jobs DROP COLUMN owner"))  # as a file from before
    box.close()
    box = backend.outbox()
    assert sorted(box.sending("email")) == sorted(stuck) and box.progress(no)["email"].sending == 2
    box.close()


def test_postgresql_away_is_a_store_error_and_the_node_carries_on_when_it_is_back() -> None:
    require_postgresql()
    with pg.pg_server() as server:
        migrate(server.dsn(), MIGRATIONS)
        box = PgOutbox(server.dsn(), schema_version=VERSION, node_id="node-a", connect_timeout_s=2)
        alert_with_jobs(box, 10)
        server.halt()
        for call in (lambda: box.claim("email", 5, time.time()), lambda: box.sending("email"),
                     lambda: box.heartbeat(time.time(), LEASE_S)):
            with pytest.raises(StoreError, match="warnings store|cannot connect to PostgreSQL"):
                call()
        with pytest.raises(StoreError, match="cannot connect to PostgreSQL at .*check the host and port"):
            PgOutbox(server.dsn(), schema_version=VERSION, connect_timeout_s=2)
        server.resume()
        assert len(box.claim("email", 5, time.time())) == 5  # a new connection
        box.close()


def test_a_database_without_the_warnings_tables_is_refused(pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.dsn(pg_cluster.database(TEMPLATE))
    box = PgOutbox(dsn, schema_version=VERSION)
    with box._edge("drop") as conn:
        conn.execute("DROP TABLE warnings.outbox_nodes")
    box.close()
    with pytest.raises(StoreError, match=r"lacks the warnings table\(s\) outbox_nodes: run `gateway db migrate`"):
        PgOutbox(dsn, schema_version=VERSION)


async def test_a_busy_nodes_lease_is_renewed_on_time(nodes: tuple[Backend, Queries, Queries]) -> None:
    """The store's worker busy with a long transaction (a 20,000-job fan-out chunk takes seconds under load),
    and the adoption that ``Liveness.run`` does every turn waiting behind it: the renewals go on meanwhile, so
    the other node never takes the live node's jobs for a dead one's (the failover drill's duplicates)."""
    _, a, b = nodes
    alert_with_jobs(a, 5)
    box = AsyncOutbox(a)
    lease_s = 1.5  # renewed every 0.5 s: a loaded CI machine may be late by a few hundred ms, not by a second
    liveness = Liveness(box, lease_s=lease_s)
    mine = a.claim("email", 5, time.time())  # node-a is handing these on

    async def busy() -> None:
        await box.call(a._tx, lambda db: db.execute("SELECT pg_sleep(4)"))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(liveness.run, busy)
            nursery.start_soon(busy)  # the chunk
            for _ in range(8):  # 4 s: over two leases' time with the worker busy throughout
                await trio.sleep(0.5)
                b.heartbeat(time.time(), lease_s)
                assert b.adopt("email", time.time()) == [], "node-b took a live node's jobs"
                assert liveness.fresh()
            nursery.cancel_scope.cancel()
    assert len(mine) == 5 and sorted(a.sending("email")) == sorted(mine)
