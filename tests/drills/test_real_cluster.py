"""Real tier, issue 14: two active nodes, each a real Asterisk with its own gateway, sharing one real
PostgreSQL, with Kamailio in front spreading the callers over both.

Each node's dispatcher phones are its own sipp; a call's incident is read through node B's API whichever
node took it (the store is shared). The second test SIGKILLs node A's gateway *and* its Asterisk while
calls are up: new calls are answered by B (Kamailio's INVITE timeout moves a call sent to the dead node),
every incident stored before the kill is there exactly once, the calls that were up on A are cut
(counted: that is the machine gone, not a record lost), the scenario run A was executing goes on on B once
its lease ends (no step started twice), B's /health shows A lost, and B closes the cut call's incident and
puts its caller on the call-back list."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from gateway.asterisk import sandbox
from gateway.incident.records import Incident
from sim import pg, sipp
from sim.cluster import node_uri, running_cluster, started_nodes
from sim.lab import AsteriskInstance, GatewayProcess
from tests.conftest import _real_tier_available
from tests.drills.test_real_escalation import TOKEN, timeline, wait_for
from tests.store_backends import require_postgresql

LEASE_S = 2.0
NAMES = ("node-a", "node-b")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def require_cluster_lab() -> None:
    """Skip without Asterisk, sipp, Kamailio or PostgreSQL; in CI (which installs them all) fail instead."""
    reason = _real_tier_available() or (None if shutil.which("kamailio", path="/usr/sbin:/usr/bin")
                                        else "kamailio is not installed")
    if reason and os.environ.get("CI"):
        pytest.fail(f"real tier required in CI: {reason}")
    if reason:
        pytest.skip(reason)
    require_postgresql()


@pytest.fixture(scope="module")
def nodes(database: pg.PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AsteriskInstance]]:
    require_cluster_lab()
    with started_nodes(database.dsn(), NAMES, tmp_path_factory.mktemp("cluster"), TOKEN, lease_s=LEASE_S) as started:
        yield started


uri = node_uri


async def nodes_seen(gateway: GatewayProcess) -> dict[str, dict[str, object]]:
    """What ``gateway``'s /health says of every node, by name."""
    async with httpx.AsyncClient(timeout=5) as client:
        report = (await client.get(gateway.url + "/health")).json()
    return {str(n["node"]): n for n in report["nodes"]}


async def wait_nodes(gateway: GatewayProcess, alive: dict[str, bool], timeout: float = 15.0) -> float:
    """Until ``gateway``'s /health shows each node alive (or lost) as ``alive`` says; the wall time then."""
    with trio.fail_after(timeout):
        while {k: bool(v["alive"]) for k, v in (await nodes_seen(gateway)).items()} != alive:
            await trio.sleep(0.1)
    return time.time()


def stored(database: pg.PgServer) -> dict[str, list[tuple[str, str]]]:
    """Every incident in the shared store: number → [(id, state)], straight from PostgreSQL."""
    found: dict[str, list[tuple[str, str]]] = {}
    with psycopg.connect(database.dsn()) as db:
        for incident_id, number, state in db.execute("SELECT id, number, state FROM incidents"):
            found.setdefault(number, []).append((incident_id, state))
    return found


async def final(gateway: GatewayProcess, results: list[sipp.CallResult]) -> list[Incident]:
    return [await gateway.wait_incident(r.call_id, until="hung_up") for r in results]


async def test_both_nodes_take_calls_into_one_store_and_each_reads_every_incident(
    database: pg.PgServer, nodes: list[AsteriskInstance], tmp_path: Path
) -> None:
    async with running_cluster(nodes, NAMES, tmp_path) as lab:
        results = [await lab.call(f"call-{i}", f"+7701777000{i}") for i in range(4)]
        assert all(r.returncode == 0 and r.answered_wall is not None for r in results), tmp_path
        routed = lab.proxy.routed()
        assert sorted(routed[r.call_id] for r in results) == sorted([uri(n) for n in nodes] * 2)
        for reader in lab.gateways:  # node B reads node A's incidents and A reads B's
            incidents = await final(reader, results)
            tags = {"nodea" if routed[r.call_id] == uri(nodes[0]) else "nodeb" for r in results}
            assert {i.id.split("-")[2].split(".")[0] for i in incidents} == tags
    rows = stored(database)
    assert all(len(rows[f"+7701777000{i}"]) == 1 for i in range(4)), rows


async def test_node_a_killed_new_calls_are_answered_by_b_and_no_stored_incident_is_lost(
    database: pg.PgServer, nodes: list[AsteriskInstance], tmp_path: Path
) -> None:
    """Kills node A: the module's last test."""
    dead, alive = nodes
    async with running_cluster(nodes, NAMES, tmp_path) as lab, \
            httpx.AsyncClient(base_url=lab.gateways[0].url, timeout=5, headers=AUTH) as on_a, \
            httpx.AsyncClient(base_url=lab.gateways[1].url, timeout=5, headers=AUTH) as on_b:
        for gateway in lab.gateways:
            await wait_nodes(gateway, {"node-a": True, "node-b": True})
        before = [await lab.call(f"before-{i}", f"+7701777100{i}") for i in range(2)]
        await final(lab.gateways[1], before)
        reply = await on_a.post("/incidents", json={"service": "102", "category": "crime_in_progress",
                                                    "lat": 43.2389, "lon": 76.8897, "note": "cluster drill"})
        assert reply.status_code == 201, reply.text
        escalated = reply.json()["id"]
        await wait_for(on_a, escalated, "awaiting_ack")  # node A runs its scenario, waiting 5 s for an answer
        up: list[sipp.CallResult] = []
        async with trio.open_nursery() as nursery:
            async def long_call(i: int) -> None:
                up.append(await lab.call(f"up-{i}", f"+7701777200{i}", talk_ms=6000))

            for i in range(2):
                nursery.start_soon(long_call, i)
                await trio.sleep(0.3)
            await trio.sleep(1.5)  # both answered and talking, one on each node
            killed_wall = time.time()
            lab.gateways[0].kill()
            pid = sandbox.pid(sandbox.locate(dead.cfg))
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            lost: list[float] = []

            async def seen_lost() -> None:
                lost.append(await wait_nodes(lab.gateways[1], {"node-a": False, "node-b": True}) - killed_wall)

            nursery.start_soon(seen_lost)
            after: list[sipp.CallResult] = []

            async def new_call(i: int) -> None:
                after.append(await lab.call(f"after-{i}", f"+7701777300{i}"))

            async with trio.open_nursery() as callers:  # round robin: one of them is sent to the dead node
                for i in range(3):
                    callers.start_soon(new_call, i)
        assert all(r.answered_wall is not None for r in after), tmp_path
        answered_s = max(r.answered_wall or 0.0 for r in after) - killed_wall
        answered_on_b = await final(lab.gateways[1], after)
        assert all(".nodeb." in f".{i.id.split('-')[2]}" for i in answered_on_b)
        routed = lab.proxy.routed()
        cut = [r for r in up if routed[r.call_id] == uri(dead)]
        kept = [r for r in up if routed[r.call_id] == uri(alive)]
        assert len(cut) == len(kept) == 1
        await final(lab.gateways[1], kept + before)
        [taken] = await wait_for(on_b, escalated, "scenario_taken_over", timeout=LEASE_S + 10)
        taken_s = next(e.wall for e in (await lab.gateways[1].incident(escalated)).timeline
                       if e.kind == "scenario_taken_over") - killed_wall
        await wait_for(on_b, escalated, "awaiting_ack", count=2)  # the next attempt, sent by B
        cut_incident = await lab.gateways[1].wait_incident(cut[0].call_id, until="call_lost")
        listed = (await on_b.get("/callbacks")).json()
        events = await timeline(on_b, escalated)
    rows = stored(database)
    numbers = [f"+7701777100{i}" for i in range(2)] + [f"+7701777200{i}" for i in range(2)] + \
              [f"+7701777300{i}" for i in range(3)]
    assert all(len(rows.get(n, [])) == 1 for n in numbers), rows
    print(f"kill -> last of 3 new calls answered on B {answered_s:.2f} s; calls cut on A: {len(cut)}; "
          f"incidents stored before the kill: {len(before) + len(up) + 1}, all present once; "
          f"kill -> A's scenario run taken over on B {taken_s:.2f} s; kill -> B's /health shows A lost {lost[0]:.2f} s")
    assert answered_s <= 2.0
    assert (taken["previous_node"], taken["node"], taken["step"]) == ("node-a", "node-b", 1)
    assert LEASE_S * 2 / 3 - 0.1 <= taken_s <= LEASE_S + 2.0  # A renewed every lease_s / 3: it ends that soon
    kinds = [k for k, _ in events]
    assert (kinds.count("scenario_started"), kinds.count("step_started")) == (1, 1)  # no step started twice
    attempts = [d["attempt"] for k, d in events if k == "awaiting_ack"]  # 1 on A, then B's (3 if it came already)
    assert len(attempts) >= 2 and attempts == list(range(1, len(attempts) + 1))
    [lost_note] = [e for e in cut_incident.timeline if e.kind == "call_lost"]  # closed by B, to be called back
    assert cut_incident.state == "closed" and lost_note.data["node"] == "node-a" and lost_note.data["callback"]
    assert any(cut_incident.id in entry["incidents"] for entry in listed), listed
