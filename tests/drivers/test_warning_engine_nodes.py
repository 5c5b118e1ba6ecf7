"""Two gateway nodes' delivery engines on one PostgreSQL (issue 14), e-mail to a real SMTP stand-in on loopback:
every message goes out once, never once per node, also when the node that claimed it dies mid-send or dies
fanning an alert out; and
PostgreSQL going away stops the engine with a StoreError (the gateway restarts it: ``app.isolated``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import trio

from channels.base import ChannelHealth, Message, Receipt
from channels.email import open_email
from gateway.errors import StoreError
from gateway.incident.store_pg import migrate
from gateway.stores import MIGRATIONS, VERSION
from gateway.warning.outbox_pg import PgOutbox
from gateway.warning.records import AuditEvent
from gateway.warning.workflow import DraftSpec
from sim import pg
from sim.smtp import open_smtp_sim
from tests.core.test_warning_outbox import email_route, record
from tests.core.warning_harness import harness, people
from tests.drivers.test_warning_engine import email_config
from tests.store_backends import Backend, PgCluster, require_postgresql

MAIL = DraftSpec(event="flood", zones=["medeu"], channels=["email"])
LEASE_S = 0.5


class Stalled:
    """An e-mail channel whose node hangs handing messages on (and is then killed)."""

    name = "email"
    max_per_second = 0.0
    max_batch = 100

    def __init__(self) -> None:
        self.handed: list[str] = []

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        self.handed.extend(m.idempotency_key for m in messages)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def health(self) -> ChannelHealth:
        return ChannelHealth(up=True)


async def test_two_nodes_send_every_message_once(pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = Backend("postgresql", tmp_path, pg_cluster)
    with trio.fail_after(60):
        async with open_smtp_sim() as smtp, open_email(email_config(smtp.port)) as mail_a, \
                open_email(email_config(smtp.port)) as mail_b:
            async with harness(tmp_path, {"email": mail_a}, store=database.outbox("node-a"), lease_s=LEASE_S) as a, \
                    harness(tmp_path, {"email": mail_b}, store=database.outbox("node-b"), lease_s=LEASE_S) as b:
                await a.add(people(400))
                sent = await a.send(MAIL)
                await a.wait_state(sent.id, "sent")
                owners = dict(await b.outbox.call(b.outbox.sync._read,
                                                  "SELECT owner, COUNT(*) FROM jobs GROUP BY owner"))
    assert smtp.accepted == 400 and all(smtp.count(f"r{i}@example.kz") == 1 for i in range(400))
    assert sum(owners.values()) == 400 and set(owners) <= {"node-a", "node-b"}
    print(f"\njobs sent per node: {owners}")


async def test_a_dead_nodes_claimed_messages_are_sent_by_the_other_once(pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = Backend("postgresql", tmp_path, pg_cluster)
    stalled = Stalled()
    with trio.fail_after(60):
        async with open_smtp_sim() as smtp:
            async with harness(tmp_path, {"email": stalled}, store=database.outbox("node-a"), lease_s=LEASE_S) as a:
                await a.add(people(50))
                sent = await a.send(MAIL)
                while len(stalled.handed) < 50:  # node-a claimed them all and hangs handing them on ...
                    await trio.sleep(0.05)
            # ... and is killed: its lease is no longer renewed. node-b takes its jobs over once it ends.
            assert smtp.accepted == 0
            async with open_email(email_config(smtp.port)) as mail, \
                    harness(tmp_path, {"email": mail}, store=database.outbox("node-b"), lease_s=LEASE_S) as b:
                await b.wait_state(sent.id, "sent")
                trail = await b.outbox.call(b.outbox.sync.audit_trail, sent.id)
    assert smtp.accepted == 50 and all(smtp.count(f"r{i}@example.kz") == 1 for i in range(50))
    recovered = [e.detail for e in trail if e.kind == "recovered"]  # what may have gone out twice, audited
    assert sum(int(d["outcome_unknown_resent"]) for d in recovered) == 50, recovered  # type: ignore[call-overload]


async def test_postgresql_away_stops_the_engine_with_a_store_error(tmp_path: Path) -> None:
    require_postgresql()
    with pg.pg_server() as server:
        migrate(server.dsn(), MIGRATIONS)
        store = PgOutbox(server.dsn(), schema_version=VERSION, node_id="node-a", connect_timeout_s=2)
        caught: BaseExceptionGroup[BaseException] | None = None
        try:
            with trio.fail_after(30):
                async with harness(tmp_path, {"email": Stalled()}, store=store, lease_s=LEASE_S) as a:
                    await a.add(people(5))
                    await trio.to_thread.run_sync(server.halt)
                    await trio.sleep_forever()  # until a worker's claim or the lease's renewal fails
        except BaseExceptionGroup as group:
            caught = group.subgroup(StoreError)
        assert caught is not None, "the engine stopped with a StoreError"


async def test_a_fanout_a_dead_node_began_is_carried_on_by_a_running_one(pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = Backend("postgresql", tmp_path, pg_cluster)
    with trio.fail_after(60):
        async with open_smtp_sim() as smtp, open_email(email_config(smtp.port)) as mail:
            async with harness(tmp_path, {"email": mail}, store=database.outbox("node-b"), lease_s=LEASE_S) as b:
                await b.add(people(60))
                dead = database.outbox("node-a")  # approved on node-a, which died after its first chunk

                def began() -> None:
                    dead.insert_alert(record("A1"), AuditEvent(at=0, actor="aigerim", kind="drafted"))
                    no, _ = dead.get_alert("A1")
                    dead.start_fanout(no, [], time.time())
                    dead.fanout_chunk(no, ["medeu"], None, 0, 10, email_route, time.time())
                    dead.close()

                await trio.to_thread.run_sync(began)
                await b.wait_state("A1", "sent")
    assert smtp.accepted == 60 and all(smtp.count(f"r{i}@example.kz") == 1 for i in range(60))
