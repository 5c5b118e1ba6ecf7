"""Real tier, issue 14: one Exercise fanned out by two ``gateway run`` nodes sharing one real PostgreSQL, their
drill channels pointed at the same SMSC, SMTP and Telegram stand-ins on loopback.

Both up: each recipient gets the warning exactly once, whichever node claimed it. Node A SIGKILLed half-way
through the sends: node B adopts A's unsettled ("sending") jobs once A's lease ends and finishes the alert;
nobody is missed, and only those jobs can have gone twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import psycopg
import pytest
import trio

from gateway.warning.engine import CLAIM_MAX
from gateway.warning.slots import Slot
from sim import pg
from sim.cluster_fanout import (
    StandIns,
    Tally,
    audience,
    audit,
    in_flight,
    job_owners,
    open_stand_ins,
    start_fanout,
    wait_sent,
    write_warnings_node,
)
from sim.lab import GatewayProcess

N = 10_000  # 9,000 in medeu: 4,000 SMS, 4,500 e-mails, 500 Telegram messages
LEASE_S = 2.0
NAMES = ("node-a", "node-b")
CHANNELS = 3  # drill:smpp, drill:email, drill:telegram
# What a node has claimed and not yet settled: each channel's workers hold at most one claim batch each.
IN_FLIGHT_MAX = CHANNELS * Slot.workers * CLAIM_MAX


@asynccontextmanager
async def two_nodes(dsn: str, workdir: Path) -> AsyncIterator[tuple[StandIns, list[GatewayProcess]]]:
    """The stand-ins, and node A's and node B's gateways on ``dsn`` sending to them, until the block exits."""
    async with open_stand_ins() as stand_ins, AsyncExitStack() as stack:
        gateways = []
        for name in NAMES:  # one after the other: both adopt the same officers into the shared accounts
            path = write_warnings_node(workdir / name, name, dsn, stand_ins, lease_s=LEASE_S)
            gateway = GatewayProcess(path, workdir / name / "gateway.log", need_ari=False)
            stack.push_async_callback(gateway.stop)
            await gateway.start()
            gateways.append(gateway)
        yield stand_ins, gateways


async def test_both_nodes_send_one_exercise_and_each_recipient_gets_it_once(database: pg.PgServer,
                                                                               tmp_path: Path) -> None:
    async with two_nodes(database.dsn(), tmp_path) as (stand_ins, (node_a, node_b)):
        with trio.fail_after(90):
            alert_id = await start_fanout(node_a, N)
            started = trio.current_time()
            await wait_sent(node_b, alert_id)  # B, which drafted nothing, sees it finish too
            await wait_sent(node_a, alert_id)
            took = trio.current_time() - started
            trail = await audit(node_b, alert_id)
        counts = stand_ins.delivered()
    owners = job_owners(database.dsn(), alert_id)
    medeu = audience(N)
    doubled = {ref: n for ref, n in counts.items() if n > 1}
    print(f"{len(medeu)} recipients warned in {took:.1f} s by two nodes; jobs by node: "
          f"node-a {owners['node-a']}, node-b {owners['node-b']}; sent twice: {len(doubled)}")
    assert set(counts) == medeu, f"missed {len(medeu - set(counts))}, strangers {len(set(counts) - medeu)}"
    assert not doubled, f"{len(doubled)} recipients warned twice, e.g. {sorted(doubled.items())[:5]}"
    assert set(owners) == {"node-a", "node-b"} and sum(owners.values()) == len(medeu), owners
    assert [e["kind"] for e in trail].count("sent") == 1  # marked sent once, by whichever node saw it end first


def jobs_now(database: pg.PgServer) -> str:
    """The outbox as it stands (for a failure's message): jobs by channel, state and owner; the nodes' leases;
    who holds locks on jobs."""
    with psycopg.connect(database.dsn()) as db:
        jobs = db.execute("SELECT channel, state, owner, count(*) FROM warnings.jobs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
                          ).fetchall()
        nodes = db.execute("SELECT node, expires_wall - extract(epoch FROM now()) FROM warnings.outbox_nodes"
                           ).fetchall()
        locks = db.execute("SELECT a.pid, a.state, left(a.query, 120), l.mode FROM pg_locks l JOIN pg_stat_activity a"
                           " ON a.pid = l.pid WHERE l.relation = 'warnings.jobs'::regclass").fetchall()
    return f"jobs {jobs}; leases (s left) {nodes}; locks on jobs {locks}"


async def test_node_a_killed_mid_fanout_node_b_finishes_it(database: pg.PgServer, tmp_path: Path) -> None:
    medeu = audience(N)
    async with two_nodes(database.dsn(), tmp_path) as (stand_ins, (node_a, node_b)):
        tally = Tally(stand_ins)
        with trio.fail_after(120):
            alert_id = await start_fanout(node_a, N)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tally.run)
                while sum(tally.counts.values()) < len(medeu) // 2:
                    await trio.sleep(tally.every_s)
                node_a.kill()
                killed = trio.current_time()
                at_kill = sum(tally.sample().values())
                # What A wrote before it died reaches the stand-ins and PostgreSQL; A's lease runs >= 1.3 s more.
                await trio.sleep(0.3)
                settled = trio.current_time()
                orphans = await trio.to_thread.run_sync(in_flight, database.dsn(), "node-a")
                with trio.move_on_after(90) as waiting:
                    await wait_sent(node_b, alert_id)
                if waiting.cancelled_caught:
                    pytest.fail(f"B never finished the fan-out: {await trio.to_thread.run_sync(jobs_now, database)}")
                finished = trio.current_time()
                nursery.cancel_scope.cancel()
            counts = tally.sample()
            trail = await audit(node_b, alert_id)
    owners = job_owners(database.dsn(), alert_id)
    missed = medeu - set(counts)
    doubled = {ref: n for ref, n in counts.items() if n > 1}
    resent = sum(e["detail"].get("outcome_unknown_resent", 0) for e in trail if e["kind"] == "recovered")
    first_adopted = tally.first_rise(orphans, after=settled)
    reached = tally.all_reached(medeu)
    assert first_adopted is not None and reached is not None
    print(f"N={N} ({len(medeu)} warned); killed A after {at_kill} messages with {len(orphans)} jobs in flight "
          f"(bound {IN_FLIGHT_MAX}); kill -> B's first send of A's jobs {first_adopted - killed:.2f} s; "
          f"kill -> last recipient reached {reached - killed:.2f} s; kill -> sent on B {finished - killed:.2f} s; "
          f"resent with unknown outcome {resent}; doubled {len(doubled)}; missed {len(missed)}; "
          f"jobs by node: node-a {owners['node-a']}, node-b {owners['node-b']}")
    assert at_kill < len(medeu)  # the kill really was half-way
    assert not missed, f"{len(missed)} recipients never warned"
    assert set(counts) == medeu and max(counts.values()) <= 2
    assert len(orphans) <= IN_FLIGHT_MAX
    assert set(doubled) <= set(orphans)  # only A's unsettled jobs can have gone twice
    assert len(doubled) <= resent <= len(orphans)
    assert LEASE_S * 2 / 3 - 0.1 <= first_adopted - killed <= LEASE_S + 2.0  # A's lease ends, then B adopts
    assert not in_flight(database.dsn(), "node-a")  # B took over every job A left sending
