"""Outbox claim throughput for ``bench/store.py`` (issue 14): the warnings store's own ``claim`` and ``finish``.

The gateway's statements, not a stand-in schema: ``Outbox`` (SQLite, its own file, as ``[warnings]
store_path``) and ``PgOutbox`` (a fresh database of ``sim.pg``'s server, made by ``gateway db migrate``'s
migrations). ``--jobs`` queued SMS jobs of one alert; each node is what the engine's SMS worker does:
through its ``AsyncOutbox`` (one worker thread), claim ``--claim-batch`` jobs, then finish them as sent,
until none is left. One node on each backend; then two nodes claiming concurrently on PostgreSQL, each
its own connection and node id. Every claimed job is counted: a job claimed twice, or never, fails the
run, and the store's own progress must show every job sent with one attempt.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from gateway.incident.store_pg import migrate
from gateway.stores import MIGRATIONS, VERSION
from gateway.warning.nodes import AsyncOutbox
from gateway.warning.outbox import Outbox, Queries
from gateway.warning.outbox_pg import PgOutbox
from gateway.warning.records import SENT
from sim import pg

ALERT_NO = 1
CHANNEL = "sms"
LOAD_CHUNK = 10_000  # jobs per loading transaction (not measured)


@dataclass
class ClaimRun:
    name: str
    nodes: int
    jobs: int
    elapsed_s: float
    rounds: list[float]  # seconds per claim + finish, every node's
    per_node: list[int]  # jobs each node claimed

    @property
    def rate(self) -> float:
        return self.jobs / self.elapsed_s


def queue_jobs(outbox: Queries, jobs: int) -> None:
    """``jobs`` queued SMS jobs of one alert, as a fan-out chunk leaves them (blocking; not measured)."""
    now = time.time()
    for first in range(1, jobs + 1, LOAD_CHUNK):
        outbox.start_fanout(ALERT_NO, [(CHANNEL, t, 1) for t in range(first, min(jobs + 1, first + LOAD_CHUNK))], now)


async def drain(db: AsyncOutbox, batch: int, claimed: list[tuple[int, int]], rounds: list[float]) -> None:
    """One node's SMS worker with an instant channel: claim, finish as sent, until nothing is due."""
    while True:
        t0 = time.perf_counter()
        jobs = await db.call(db.sync.claim, CHANNEL, batch, time.time())
        if not jobs:
            return
        now = time.time()
        await db.call(db.sync.finish, CHANNEL, [(a, t, SENT, f"p{t}", "", now) for a, t, _ in jobs], (), now)
        rounds.append(time.perf_counter() - t0)
        claimed.extend((a, t) for a, t, _ in jobs)


async def claim_run(name: str, nodes: list[Queries], jobs: int, batch: int) -> ClaimRun:
    """Queue ``jobs``, drain them with every node at once, and check each went out exactly once.
    Raises RuntimeError naming the jobs claimed twice or never."""
    await trio.to_thread.run_sync(queue_jobs, nodes[0], jobs)
    claimed: list[list[tuple[int, int]]] = [[] for _ in nodes]
    rounds: list[float] = []
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for node, mine in zip(nodes, claimed, strict=True):
            nursery.start_soon(drain, AsyncOutbox(node), batch, mine, rounds)
    elapsed = time.perf_counter() - start
    counts = Counter(job for mine in claimed for job in mine)
    twice = [job for job, n in counts.items() if n > 1]
    if twice or len(counts) != jobs:
        raise RuntimeError(f"{name}: {len(twice)} jobs claimed twice (e.g. {twice[:3]}), "
                           f"{jobs - len(counts)} never claimed, of {jobs}")
    progress = (await trio.to_thread.run_sync(nodes[0].progress, ALERT_NO))[CHANNEL]
    if progress.sent != jobs or progress.retried:
        raise RuntimeError(f"{name}: the store shows {progress.sent} of {jobs} sent, {progress.retried} retried")
    run = ClaimRun(name, len(nodes), jobs, elapsed, rounds, [len(mine) for mine in claimed])
    print(f"  {name}: {run.rate:,.0f} jobs/s ({', '.join(f'{n:,}' for n in run.per_node)} per node; "
          "none twice)", flush=True)
    return run


async def on_sqlite(args: argparse.Namespace) -> ClaimRun:
    with tempfile.TemporaryDirectory(prefix="ecgw-outbox-bench-") as workdir:
        outbox = Outbox(Path(workdir) / "warnings.sqlite3")
        try:
            return await claim_run("sqlite Outbox, 1 node", [outbox], args.jobs, args.claim_batch)
        finally:
            outbox.close()


async def on_postgresql(name: str, server: pg.PgServer, unix: bool, nodes: int,
                        args: argparse.Namespace) -> ClaimRun:
    """A fresh migrated database of ``server``; ``nodes`` PgOutbox connections claiming as node ids of their own."""
    database = f"outbox_{'unix' if unix else 'tcp'}_{nodes}"
    await trio.to_thread.run_sync(server.psql, f"DROP DATABASE IF EXISTS {database}",
                                  f"CREATE DATABASE {database} OWNER {server.user}")
    dsn = dataclasses.replace(server, database=database).dsn(unix=unix)
    await trio.to_thread.run_sync(migrate, dsn, MIGRATIONS)
    opened: list[Queries] = []
    try:
        for k in range(nodes):
            opened.append(await trio.to_thread.run_sync(_pg_outbox(dsn, f"bench-node-{k}")))
        return await claim_run(name, opened, args.jobs, args.claim_batch)
    finally:
        for outbox in opened:
            outbox.close()


def _pg_outbox(dsn: str, node_id: str) -> Callable[[], PgOutbox]:
    return lambda: PgOutbox(dsn, schema_version=VERSION, node_id=node_id)


async def run_outbox(args: argparse.Namespace, server: pg.PgServer, primary: pg.PgServer) -> list[ClaimRun]:
    print(f"== outbox claim: {args.jobs:,} SMS jobs, {args.claim_batch} per claim, each claim then finish "
          "(sent) in its own transaction", flush=True)
    return [await on_sqlite(args),
            await on_postgresql("PgOutbox unix, 1 node", server, True, 1, args),
            await on_postgresql("PgOutbox unix, 2 nodes", server, True, 2, args),
            await on_postgresql("PgOutbox tcp+sync sb, 1 node", primary, False, 1, args),
            await on_postgresql("PgOutbox tcp+sync sb, 2 nodes", primary, False, 2, args)]


def report_outbox(runs: list[ClaimRun], batch: int, percentile: Callable[[list[float], float], float]) -> None:
    base = runs[0]
    print(f"\n== outbox claim + finish: jobs/s and ms per round ({batch} jobs a round); ratios against {base.name} ==")
    print(f"{'':30s} {'nodes':>5s} {'jobs/s':>8s} {'ratio':>5s} │ {'p50 ms':>7s} {'p99 ms':>7s} │ "
          f"{'per node':>15s} {'twice':>5s}")
    for r in runs:
        print(f"{r.name:30s} {r.nodes:5d} {r.rate:8,.0f} {r.rate / base.rate:5.2f} │ "
              f"{percentile(r.rounds, 0.5) * 1000:7.2f} {percentile(r.rounds, 0.99) * 1000:7.2f} │ "
              f"{'/'.join(f'{n:,}' for n in r.per_node):>15s} {0:5d}")
    print("round: one claim (SELECT ... FOR UPDATE SKIP LOCKED + UPDATE, RETURNING on PostgreSQL) and one finish, "
          "each a transaction through the node's AsyncOutbox thread; twice: jobs claimed by more than one node "
          "(the run fails if any)")
