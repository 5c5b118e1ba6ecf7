"""Scenario runs leased to one node at a time (issue 14): claims, renewal and the fence on both backends;
two engines on one PostgreSQL, one killed mid-scenario (the other resumes its run once, where its last
committed write left it) and one paused past its lease (its step is not recorded). Real clock: the stores
run on worker threads, and leases are short (0.5 s)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from channels.base import ChannelHealth, Message, Receipt
from gateway.errors import StoreError
from gateway.incident import store_pg
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.recorder import Recorder
from gateway.incident.store import AsyncStore
from gateway.scenario import machine as M
from gateway.scenario.engine import Engine
from gateway.scenario.leases import LOCAL, LeaseLost, Leases, node_name
from gateway.scenario.notifier import Notifier
from gateway.scenario.runs import RunStore
from gateway.scenario.triggers import Triggers, TriggerSettings
from gateway.settings.cluster import ClusterConfig, cluster_problems
from tests.core.test_escalation_engine import DIRECTORY, TEXTS, Env, catalogue, scenario
from tests.store_backends import Backend, PgCluster

LEASE_S = 0.5
SMS_NOTIFY = {"do": "notify", "roles": ["duty_officer"], "channels": ["sms"], "template": "incident_new",
              "ack": "any", "timeout_s": 1.0, "repeat": 2}


class Sms:
    """A stand-in SMS channel that counts what it sent; ``hold`` (set) keeps every delivery waiting."""

    name = "sms"
    max_per_second = 1000.0
    max_batch = 10

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.hold: trio.Event | None = None
        self.entered = trio.Event()

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        self.sent += [m.address for m in messages]
        return [Receipt(idempotency_key=m.idempotency_key, state="sent") for m in messages]

    async def health(self) -> ChannelHealth:
        return ChannelHealth(up=True)


async def run_node(backend: Backend, node_id: str, sms: Sms, *, answer_sla_s: float = 600.0,
                   task_status: trio.TaskStatus[tuple[Env, trio.CancelScope]] = trio.TASK_STATUS_IGNORED) -> None:
    """One gateway node's scenario side on ``backend``; cancelling the scope it reports kills it (leases kept)."""
    store = AsyncStore(backend.open())
    recorder = Recorder(store, Bus())
    engine = Engine(recorder=recorder, catalogue=catalogue(scenario("s", SMS_NOTIFY, {"do": "close"}),
                                                           scenario("t", {"do": "close"})),
                    directory=DIRECTORY, notifier=Notifier({"sms": sms}, TEXTS, deliver_timeout_s=30),
                    node_id=node_id, lease_s=LEASE_S)
    triggers = Triggers(engine, engine.notifier, TriggerSettings(answer_sla_s=answer_sla_s, sla_scenario="s"))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            await nursery.start(triggers.run)
            task_status.started((Env(engine, Desk(store, recorder), triggers), nursery.cancel_scope))
    finally:
        store.sync.close()


async def stalled(keys: object) -> set[str]:
    """A renewal that never comes back (its node is paused)."""
    await trio.sleep_forever()


@pytest.fixture
def pg_backend(pg_cluster: PgCluster, tmp_path: Path) -> Backend:
    return Backend("postgresql", tmp_path, pg_cluster)


def test_a_node_is_local_on_its_own_store_and_unique_on_a_shared_one() -> None:
    assert node_name("", shared=False) == LOCAL
    assert node_name("node-b", shared=True) == "node-b"
    assert node_name("", shared=True) == store_pg.NODE_ID  # as its connections are tagged


async def test_a_lease_is_one_nodes_until_it_expires_and_fences_the_other_nodes_writes(backend: Backend) -> None:
    stores = [AsyncStore(backend.open()), AsyncStore(backend.open())]
    run = M.Run(key="i1/category", incident_id="i1", kind="category", scenario="s", category="s")
    try:
        a, b = Leases(stores[0], "a", LEASE_S), Leases(stores[1], "b", LEASE_S)
        runs = RunStore(stores[0])
        assert await a.claim([run.key, "i2/category"]) == {run.key, "i2/category"}
        assert await b.claim([run.key, "i3/category"]) == {"i3/category"}  # a's is alive
        await stores[0].write([*a.fence(run.key), RunStore.row(run)])
        run.pc = 5
        with pytest.raises(StoreError):  # b does not hold it: nothing of that transaction is written
            await stores[1].write([*b.fence(run.key), RunStore.row(run)])
        assert (await runs.get(run.key)).pc == 0  # type: ignore[union-attr]
        assert await a.renew([run.key, "i2/category"]) == {run.key, "i2/category"} and a.fresh()
        await trio.sleep(LEASE_S * 1.2)  # a is paused past its lease
        assert not a.fresh()
        assert await b.claim([run.key]) == {run.key}
        with pytest.raises(StoreError):
            await stores[0].write([*a.fence(run.key), RunStore.row(run)])
        assert await a.renew([run.key, "i2/category"]) == {"i2/category"}  # expired, taken by nobody: a's
        assert await a.owner(run.key) == "b" and await b.claim(["i2/category"]) == set()
        await stores[1].write([*b.fence(run.key), RunStore.row(run), b.end_statement(run.key)])
        assert await a.owner(run.key) is None and (await runs.get(run.key)).pc == 5  # type: ignore[union-attr]
    finally:
        for store in stores:
            store.sync.close()


async def test_a_killed_nodes_run_resumes_on_the_other_once_its_lease_expires(pg_backend: Backend) -> None:
    sms_a, sms_b = Sms(), Sms()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            env_a, kill_a = await nursery.start(run_node, pg_backend, "a", sms_a)
            env_b, _ = await nursery.start(run_node, pg_backend, "b", sms_b)
            incident = await env_a.open("s")
            key = f"{incident.id}/category"
            await env_a.wait_for(incident.id, "awaiting_ack", attempt=1)
            assert key in env_a.engine.runs and key not in env_b.engine.runs  # a holds it: b leaves it alone
            with pytest.raises(LeaseLost):  # nor may b switch it (a category changed on b's console)
                await env_b.engine.start(incident, "category", "t", "t", reason="category_changed")
            kill_a.cancel()  # a crash: nothing given up
            killed = time.monotonic()
            while key not in env_b.engine.runs:
                await trio.sleep(0.01)
            taken_s = time.monotonic() - killed
            await env_b.wait_for(incident.id, "ack_timeout")
            step_s = time.monotonic() - killed
            await env_b.wait_for(incident.id, "scenario_finished")
            timeline = await env_b.timeline(incident.id)
            nursery.cancel_scope.cancel()
    print(f"kill -> run taken over on b: {taken_s:.3f} s; kill -> its first step there: {step_s:.3f} s")
    assert taken_s < LEASE_S + 0.5 and env_b.engine.taken_over == 1
    assert sorted(sms_a.sent) == sorted(sms_b.sent) == ["+77010000001", "+77010000002"]  # attempt 1 on a, 2 on b
    notified = sorted((d["person"], d["attempt"]) for k, d in timeline if k == "notified")
    assert notified == [("duty_a", 1), ("duty_a", 2), ("duty_b", 1), ("duty_b", 2)]
    kinds = [k for k, _ in timeline]
    assert (kinds.count("step_started"), kinds.count("awaiting_ack"), kinds.count("scenario_finished")) == (1, 2, 1)
    assert "scenario_switched" not in kinds
    assert [d.get("gave_up", False) for k, d in timeline if k == "ack_timeout"] == [False, True]
    [noted] = [d for k, d in timeline if k == "scenario_taken_over"]  # the record says where it went on
    assert (noted["previous_node"], noted["node"], noted["step"], noted["run"]) == ("a", "b", 1, "category")
    assert kinds.index("awaiting_ack") < kinds.index("scenario_taken_over") < kinds.index("ack_timeout")


async def test_a_waiting_calls_answer_sla_breach_escalates_once_with_both_nodes_watching_it(
        pg_backend: Backend) -> None:
    """A call waits on node A; node B, started meanwhile, finds it waiting (its scan of open incidents) and
    watches the same deadline. Both see it pass: one SLA run starts (its lease), each person is told once."""
    sms_a, sms_b = Sms(), Sms()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            env_a, _ = await nursery.start(functools.partial(run_node, answer_sla_s=1.5), pg_backend, "a", sms_a)
            incident = await env_a.open("", source="call")
            env_b, _ = await nursery.start(functools.partial(run_node, answer_sla_s=1.5), pg_backend, "b", sms_b)
            assert {i for _, kind, i in env_b.triggers._deadlines if kind == "answer"} == {incident.id}
            assert {i for _, kind, i in env_a.triggers._deadlines if kind == "answer"} == {incident.id}
            await env_a.wait_for(incident.id, "scenario_finished")
            await trio.sleep(0.5)  # the other node's deadline has long passed too
            timeline = await env_a.timeline(incident.id)
            nursery.cancel_scope.cancel()
    started = [d for k, d in timeline if k in ("scenario_started", "scenario_switched")]
    assert [d["reason"] for d in started] == ["sla_breach"]
    notified = sorted((d["person"], d["attempt"]) for k, d in timeline if k == "notified")
    assert notified == [("duty_a", 1), ("duty_a", 2), ("duty_b", 1), ("duty_b", 2)]
    assert sorted(sms_a.sent + sms_b.sent) == sorted(["+77010000001", "+77010000002"] * 2)


async def test_a_paused_owner_whose_lease_was_taken_records_no_step(pg_backend: Backend,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sms_a, sms_b = Sms(), Sms()
    sms_a.hold = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            env_a, _ = await nursery.start(run_node, pg_backend, "a", sms_a)
            env_b, _ = await nursery.start(run_node, pg_backend, "b", sms_b)
            incident = await env_a.open("s")
            key = f"{incident.id}/category"
            await sms_a.entered.wait()  # a is sending attempt 1 ... and stops renewing: paused
            monkeypatch.setattr(env_a.engine.leases, "renew", stalled)
            await env_b.wait_for(incident.id, "awaiting_ack", attempt=1)  # b took the run over and sent it
            held = await env_a.engine.recorder.acquire(incident.id)  # a's copy of the incident stays live
            sms_a.hold.set()  # a wakes up and tries to record its step
            while key in env_a.engine.runs:
                await trio.sleep(0.01)
            assert not [e for e in held.incident.timeline if e.kind == "awaiting_ack"] and not held.pending
            env_a.engine.recorder.release(held)
            token = env_b.engine.runs[key].targets[0].token
            assert await env_b.engine.acknowledge(token, by="duty_a", via="sms") == "acknowledged"
            await env_b.wait_for(incident.id, "scenario_finished")
            timeline = await env_b.timeline(incident.id)
            lease = await env_b.engine.leases.owner(key)
            nursery.cancel_scope.cancel()
    assert len(sms_a.sent) == len(sms_b.sent) == 2  # a's texts did go out: the outside world saw them twice
    notified = sorted((d["person"], d["attempt"]) for k, d in timeline if k == "notified")
    assert notified == [("duty_a", 1), ("duty_b", 1)]  # the timeline once, as b sent them
    assert [k for k, _ in timeline].count("awaiting_ack") == 1 and lease is None  # finished: lease given up


def test_a_nodes_id_and_lease_time_are_checked_with_kamailio_off() -> None:
    assert cluster_problems(ClusterConfig(node_id="node-a.1", lease_s=5)) == []
    assert cluster_problems(ClusterConfig(node_id="a b", lease_s=0.2), "gw.toml") == [
        "gw.toml: cluster.node_id: expected up to 64 letters, digits, _ . and -, got 'a b'",
        "gw.toml: cluster.lease_s: expected 1-60 seconds, got 0.2"]
