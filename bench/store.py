"""Store driver benchmark (issue 14): which PostgreSQL driver the incident store should be ported to.

Same run, same incidents, same machine. The baseline is today's store: ``AsyncStore(SqliteStore(path))``
(WAL, synchronous=FULL, one writer thread, group commit). Against it, on a throwaway PostgreSQL 15 of
``sim.pg`` (fsync and synchronous_commit on), an equivalent minimal schema (an incidents row with its
msgspec JSON as bytea, the timeline rows, one transaction per create, as ``SqliteStore.create_statements``):
  (b) psycopg 3, sync, a ``psycopg_pool.ConnectionPool`` called through ``trio.to_thread.run_sync``;
  (c) asyncpg through trio-asyncio (``trio_asyncio.open_loop()`` + ``aio_as_trio``);
each over the server's unix socket and over loopback TCP, and over TCP to a primary with a synchronous
streaming standby (the multi-node centre of issue 14); and the port itself, ``PgStore`` under
``AsyncStore`` (one connection, the same group commit as SQLite, statements pipelined). Both pools hold
--pool connections with statement_timeout set on every one. A last column, for reference only, runs asyncpg
on a stock asyncio loop: what the driver costs without the trio-asyncio bridge.

Per column: create → committed latency p50/p99, sequential and with --tasks concurrent Trio tasks, creates/s
of each, and CPU per create of this process (``time.process_time`` over both runs, worker threads
included: what the gateway's own CPU budget pays) and of the PostgreSQL processes (/proc). Then the outbox
claim: --outbox rows claimed by --claimers concurrent tasks, each transaction ``SELECT ... FOR UPDATE SKIP
LOCKED LIMIT n`` + ``UPDATE``, rows/s for both drivers.

Last, the warnings outbox itself (``bench/store_outbox.py``): --jobs jobs claimed --claim-batch at a time
and finished, by the gateway's ``Outbox`` on SQLite (the baseline), by ``PgOutbox`` as one node and as two
nodes claiming concurrently (no job claimed twice), over the unix socket and with a synchronous standby.
``--only creates|outbox`` runs one section.

Run as root or as a user that may run PostgreSQL: ``python bench/store.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.store_drivers import (
    STATEMENT_TIMEOUT_MS,
    AsyncpgStore,
    PsycopgStore,
    open_pgstore,
    open_sqlite,
    reset_schema,
    rows,
)
from bench.store_outbox import report_outbox, run_outbox
from gateway.incident.records import Caller, Incident, Location
from gateway.incident.store import event
from sim import pg

Create = Callable[[Incident], Awaitable[None]]
Timed = Callable[[Create, str, int, int], Awaitable[tuple[list[float], float]]]


@dataclass
class Column:
    name: str
    sequential: list[float]  # seconds per create, one at a time
    sequential_s: float
    concurrent: list[float]  # seconds per create, TASKS at a time
    concurrent_s: float
    cpu_ms: float  # this process, per create
    server_cpu_ms: float | None  # the PostgreSQL processes, per create
    claimed_per_s: float | None = None

    @property
    def sequential_rate(self) -> float:
        return len(self.sequential) / self.sequential_s

    @property
    def concurrent_rate(self) -> float:
        return len(self.concurrent) / self.concurrent_s


def make_incident(tag: str, i: int) -> Incident:
    """A call as intake stores it first: the caller, one PIDF-LO point, arrival and queueing."""
    number = f"+7701{i % 10_000_000:07d}"
    inc = Incident(id=f"{tag}-{i:08d}", service="112", created_wall=time.time(), channel_id=f"ch-{tag}-{i}",
                   caller=Caller(raw_number=number, number=number, display_name="", withheld=False))
    inc.locations.append(Location(source="pidf-lo", shape="point", lat=43.2381 + i * 1e-6, lon=76.9456))
    inc.best_location = 0
    inc.timeline.append(event("call_arrived", number=number))
    inc.timeline.append(event("queued", service="112", position_hint=""))
    inc.updated_wall = inc.created_wall
    return inc


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed_creates(create: Create, tag: str, count: int, tasks: int) -> tuple[list[float], float]:
    """``count`` creates by ``tasks`` concurrent tasks; each create's latency and the elapsed time."""
    latencies: list[float] = []

    async def worker(first: int) -> None:
        for i in range(first, count, tasks):
            incident = make_incident(tag, i)
            t0 = time.perf_counter()
            await create(incident)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(tasks):
            nursery.start_soon(worker, k)
    return latencies, time.perf_counter() - start


def server_cpu_s(server: pg.PgServer | None) -> float:
    """utime + stime of every process of the server (the pool's backends live through the run)."""
    if server is None:
        return 0.0
    total = 0
    for pid in server.processes():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def asyncio_timed_creates(create: Create, tag: str, count: int, tasks: int) -> tuple[list[float], float]:
    """``timed_creates`` on a stock asyncio loop (the reference column)."""
    import asyncio

    latencies: list[float] = []

    async def worker(first: int) -> None:
        for i in range(first, count, tasks):
            incident = make_incident(tag, i)
            t0 = time.perf_counter()
            await create(incident)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(tasks)))
    return latencies, time.perf_counter() - start


async def measure(name: str, create: Create, args: argparse.Namespace, server: pg.PgServer | None,
                  timed: Timed = timed_creates) -> Column:
    await timed(create, f"{name}-warm", 50, 5)  # connections made, statements prepared
    cpu0, server0 = time.process_time(), server_cpu_s(server)
    sequential, sequential_s = await timed(create, f"{name}-seq", args.sequential, 1)
    concurrent, concurrent_s = await timed(create, f"{name}-conc", args.concurrent, args.tasks)
    creates = len(sequential) + len(concurrent)
    cpu_ms = (time.process_time() - cpu0) * 1000 / creates
    server_ms = (server_cpu_s(server) - server0) * 1000 / creates if server is not None else None
    column = Column(name, sequential, sequential_s, concurrent, concurrent_s, cpu_ms, server_ms)
    print(f"  {name}: {column.sequential_rate:,.0f}/s sequential, {column.concurrent_rate:,.0f}/s with "
          f"{args.tasks} tasks, {cpu_ms:.2f} ms CPU per create", flush=True)
    return column


async def claim_rate(claim: Callable[[int], Awaitable[int]], args: argparse.Namespace) -> float:
    """Rows/s claimed by ``args.claimers`` tasks until the outbox is empty."""
    claimed = 0

    async def claimer() -> None:
        nonlocal claimed
        while (got := await claim(args.claim_batch)) > 0:
            claimed += got

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(args.claimers):
            nursery.start_soon(claimer)
    elapsed = time.perf_counter() - start
    if claimed != args.outbox:
        raise RuntimeError(f"claimed {claimed} of {args.outbox} outbox rows")
    return claimed / elapsed


async def run_psycopg(name: str, dsn: str, args: argparse.Namespace, server: pg.PgServer) -> Column:
    await trio.to_thread.run_sync(reset_schema, dsn, args.outbox)
    store = await trio.to_thread.run_sync(PsycopgStore.open, dsn, args.pool)
    try:
        column = await measure(name, store.create, args, server)
        column.claimed_per_s = await claim_rate(store.claim, args)
    finally:
        await trio.to_thread.run_sync(store.close)
    return column


async def run_asyncpg(name: str, dsn: str, args: argparse.Namespace, server: pg.PgServer) -> Column:
    await trio.to_thread.run_sync(reset_schema, dsn, args.outbox)
    store = await AsyncpgStore.open(dsn, args.pool)
    try:
        column = await measure(name, store.create, args, server)
        column.claimed_per_s = await claim_rate(store.claim, args)
    finally:
        await store.close()
    return column


def asyncpg_on_asyncio(dsn: str, args: argparse.Namespace, server: pg.PgServer) -> Column:
    """asyncpg on a stock asyncio loop: what the driver costs without the trio-asyncio bridge. A reference
    only: the gateway is a Trio program."""
    import asyncio

    import asyncpg

    async def run() -> Column:
        pool = await asyncpg.create_pool(dsn, min_size=args.pool, max_size=args.pool,
                                         server_settings={"statement_timeout": str(STATEMENT_TIMEOUT_MS)})
        store = AsyncpgStore(pool)

        async def create(incident: Incident) -> None:
            await store.on_asyncio(*rows(incident))

        try:
            return await measure("(asyncpg, stock asyncio, unix)", create, args, server, asyncio_timed_creates)
        finally:
            await pool.close()

    reset_schema(dsn, 0)
    # A stock loop: importing trio_asyncio made its own loop the default of asyncio.run.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(run())


async def run_sqlite(args: argparse.Namespace) -> Column:
    with tempfile.TemporaryDirectory(prefix="ecgw-store-bench-") as workdir:
        async with open_sqlite(Path(workdir) / "gateway.sqlite3") as store:
            return await measure("sqlite AsyncStore", store.create, args, None)


async def run_pgstore(name: str, server: pg.PgServer, unix: bool, args: argparse.Namespace) -> Column:
    async with open_pgstore(server, unix=unix) as store:
        return await measure(name, store.create, args, server)


async def run_all(args: argparse.Namespace, server: pg.PgServer, primary: pg.PgServer) -> list[Column]:
    import trio_asyncio

    print(f"== incident creates: {args.sequential} sequential, {args.concurrent} by {args.tasks} tasks; "
          f"pools of {args.pool}; outbox {args.outbox:,} rows by {args.claimers} claimers, "
          f"{args.claim_batch} per claim", flush=True)
    columns = [await run_sqlite(args)]
    columns.append(await run_pgstore("PgStore AsyncStore unix", server, True, args))
    columns.append(await run_pgstore("PgStore AsyncStore tcp+sync sb", primary, False, args))
    columns.append(await run_psycopg("psycopg unix", server.dsn(unix=True), args, server))
    columns.append(await run_psycopg("psycopg tcp", server.dsn(), args, server))
    columns.append(await run_psycopg("psycopg tcp+sync standby", primary.dsn(), args, primary))
    async with trio_asyncio.open_loop():
        columns.append(await run_asyncpg("asyncpg unix", server.dsn(unix=True), args, server))
        columns.append(await run_asyncpg("asyncpg tcp", server.dsn(), args, server))
        columns.append(await run_asyncpg("asyncpg tcp+sync standby", primary.dsn(), args, primary))
    return columns


def report(columns: list[Column], args: argparse.Namespace) -> None:
    base = columns[0]
    print("\n== store drivers: create -> committed (ms), creates/s, CPU per create (ms); "
          f"ratios against {base.name} ==")
    print(f"{'':30s} {'seq p50':>7s} {'seq p99':>7s} {'seq/s':>6s} {'ratio':>5s} │ "
          f"{'conc p50':>8s} {'conc p99':>8s} {'conc/s':>6s} {'ratio':>5s} │ {'gw CPU':>6s} {'ratio':>5s} "
          f"{'pg CPU':>6s} │ {'claim rows/s':>12s}")
    for c in columns:
        pg_cpu = f"{c.server_cpu_ms:6.2f}" if c.server_cpu_ms is not None else f"{'-':>6s}"
        claimed = f"{c.claimed_per_s:12,.0f}" if c.claimed_per_s is not None else f"{'n/a':>12s}"
        print(f"{c.name:30s} {percentile(c.sequential, 0.5) * 1000:7.2f} {percentile(c.sequential, 0.99) * 1000:7.2f}"
              f" {c.sequential_rate:6.0f} {c.sequential_rate / base.sequential_rate:5.2f} │"
              f" {percentile(c.concurrent, 0.5) * 1000:8.2f} {percentile(c.concurrent, 0.99) * 1000:8.2f}"
              f" {c.concurrent_rate:6.0f} {c.concurrent_rate / base.concurrent_rate:5.2f} │"
              f" {c.cpu_ms:6.2f} {c.cpu_ms / base.cpu_ms:5.2f} {pg_cpu} │ {claimed}")
    print("gw CPU: this process (the gateway's share); pg CPU: the PostgreSQL processes; claim: "
          "SELECT ... FOR UPDATE SKIP LOCKED LIMIT n + UPDATE per transaction")


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sequential", type=int, default=2000, help="creates one at a time")
    p.add_argument("--concurrent", type=int, default=5000, help="creates by --tasks concurrent tasks")
    p.add_argument("--tasks", type=int, default=50)
    p.add_argument("--pool", type=int, default=10, help="connections in each driver's pool")
    p.add_argument("--outbox", type=int, default=50_000, help="outbox rows to claim")
    p.add_argument("--claimers", type=int, default=4)
    p.add_argument("--claim-batch", type=int, default=100, help="rows per claim (drivers and warnings outbox)")
    p.add_argument("--jobs", type=int, default=20_000, help="warnings outbox jobs to claim and finish")
    p.add_argument("--only", choices=["creates", "outbox"], help="one section (default: both)")
    p.add_argument("--quick", action="store_true", help="short smoke run of the benchmark itself")
    args = p.parse_args()
    if args.quick:
        args.sequential, args.concurrent, args.outbox, args.jobs = 100, 500, 2000, 2000
    return args


def main() -> None:
    args = cli()
    with pg.pg_server() as server, pg.pg_pair() as (primary, _standby):
        print(f"PostgreSQL {server.psql('SHOW server_version')} in {server.base} (port {server.port}); "
              f"with a synchronous standby: port {primary.port}", flush=True)
        columns: list[Column] = []
        if args.only != "outbox":
            columns = trio.run(run_all, args, server, primary)
            columns.append(asyncpg_on_asyncio(server.dsn(unix=True), args, server))
        claims = trio.run(run_outbox, args, server, primary) if args.only != "creates" else []
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if columns:
        report(columns, args)
    if claims:
        report_outbox(claims, args.claim_batch, percentile)


if __name__ == "__main__":
    main()
