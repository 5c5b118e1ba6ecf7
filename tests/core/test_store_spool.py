"""PostgreSQL away: writes kept in the node's spool (incident.spool), every incident in PostgreSQL exactly once,
in order, once it is back; what PostgreSQL refuses for what it says is raised, never spooled."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.errors import StoreError
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.spool import Spooled, replay_forever, replayable
from gateway.incident.store import AsyncStore, event
from gateway.incident.store_pg import PgStore, migrate
from gateway.stores import MIGRATIONS, VERSION
from sim import pg
from tests.store_backends import TEMPLATE, PgCluster


def incident(n: int) -> Incident:
    inc = Incident(id=f"20261205-000000-{n}.1", service="112", created_wall=1000.0 + n, channel_id=f"ch-{n}",
                   caller=Caller(raw_number="+77011234567", number="+77011234567", display_name="", withheld=False))
    inc.timeline.append(event("call_arrived"))
    return inc


async def calls(recorder: Recorder, first: int, count: int) -> None:
    """``count`` calls as the intake records them: created, queued, answered, hung up."""
    for n in range(first, first + count):
        held = Held(incident(n))
        await recorder.create(held)
        for kind in ("queued", "answered", "hung_up"):
            await recorder.record(held, kind, state="closed" if kind == "hung_up" else kind)


def test_a_replayed_first_insert_does_nothing_when_it_is_there_already() -> None:
    batch = [("INSERT INTO incidents (id) VALUES (?)", ("a",)), ("UPDATE incidents SET state=? WHERE id=?", ("x", "a")),
             ("INSERT INTO seen (key, wall) VALUES (?,?) ON CONFLICT (key) DO NOTHING", ("k", 1.0))]
    out = replayable(batch)
    assert out[0][0] == "INSERT INTO incidents (id) VALUES (?) ON CONFLICT (id) DO NOTHING"
    assert out[1:] == batch[1:]


async def test_postgresql_away_then_back_every_incident_once_in_order(tmp_path: Path) -> None:
    with pg.pg_server() as server:
        migrate(server.dsn(), MIGRATIONS)
        spooled = Spooled(PgStore(server.dsn(), schema_version=VERSION, connect_timeout_s=2), tmp_path / "spool.db")
        store = AsyncStore(spooled)
        recorder = Recorder(store, Bus())
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(replay_forever, store, spooled)
                await calls(recorder, 0, 5)  # PostgreSQL up
                assert spooled.spooled == 0
                await trio.to_thread.run_sync(server.halt)
                await calls(recorder, 5, 20)  # away: every write still returns, kept on this node's disk
                assert spooled.spooled == 20 * 4 and spooled.problems()[0].startswith("store: PostgreSQL unreachable")
                again = Spooled(PgStore.__new__(PgStore), tmp_path / "spool.db")  # a restart finds them all
                assert again.spooled == 80
                await trio.to_thread.run_sync(server.resume)
                while spooled.spooled:
                    await trio.sleep(0.1)
                await calls(recorder, 25, 3)  # back to PostgreSQL directly
                nursery.cancel_scope.cancel()
        assert spooled.spooled == 0 and spooled.problems() == [] and spooled.away_since is None
        check = PgStore(server.dsn(), schema_version=VERSION)
        assert check.count() == 28
        for n in range(28):
            got = check.get(incident(n).id)
            assert [e.kind for e in got.timeline] == ["call_arrived", "queued", "answered", "hung_up"]
            assert got.state == "closed"
        check.close()
        spooled.close()


async def test_a_write_postgresql_refuses_is_raised_not_spooled(pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = pg_cluster.database(TEMPLATE)
    spooled = Spooled(PgStore(pg_cluster.dsn(database), schema_version=VERSION), tmp_path / "spool.db")
    with pytest.raises(StoreError, match="no_such_table"):
        spooled.write([("INSERT INTO no_such_table VALUES (?)", (1,))])
    assert spooled.spooled == 0
    spooled.close()


async def test_a_spooled_write_refused_on_replay_is_set_aside_and_reported(pg_cluster: PgCluster,
                                                                           tmp_path: Path) -> None:
    database = pg_cluster.database(TEMPLATE)
    spooled = Spooled(PgStore(pg_cluster.dsn(database), schema_version=VERSION), tmp_path / "spool.db")
    spooled._spool([("INSERT INTO no_such_table VALUES (?)", (1,))])  # as if spooled while away
    spooled._spool(spooled.primary.create_statements(incident(1)))
    assert spooled.replay() == 1
    assert spooled.spooled == 0 and spooled.rejected == 1
    assert "refused by PostgreSQL" in spooled.problems()[0]
    assert spooled.primary.count() == 1
    spooled.close()


async def test_each_write_of_a_group_commit_is_spooled_on_its_own(pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = pg_cluster.database(TEMPLATE)
    spooled = Spooled(PgStore(pg_cluster.dsn(database), schema_version=VERSION), tmp_path / "spool.db")
    spooled._spool([("SELECT 1", ())])  # PostgreSQL away: what follows joins the spool
    good = spooled.primary.create_statements(incident(2))
    spooled.write_many([[("INSERT INTO no_such_table VALUES (?)", (1,))], good])  # one group commit, two writes
    assert spooled.spooled == 3
    assert spooled.replay() == 2  # the refused one alone is set aside: its neighbour in the commit is not
    assert spooled.rejected == 1 and spooled.primary.count() == 1
    spooled.close()
