"""Two gateway nodes on one PostgreSQL (issue 14): accounts, sessions, lockouts, the audit trail and the
unit board, each node its own connection. (Their behaviour on one node, on both backends, is
``test_accounts.py`` and ``test_units_board.py``.)"""

from __future__ import annotations

import io
import re
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trio

from gateway.cli.main import main
from gateway.errors import StoreError, StoreUnavailable
from gateway.incident.desk import no_caller
from gateway.people.accounts import Accounts, LoginRefused
from gateway.settings.config import StoreConfig
from gateway.stores import open_accounts, open_units_db
from gateway.units.board import UnitBoard
from gateway.units.model import IllegalTransition
from sim.lab import shipped_config
from tests.core.test_accounts import PASSWORD, Clock
from tests.core.test_units_board import incident_desk, make_board
from tests.store_backends import Backend, PgCluster


@pytest.fixture
def shared(tmp_path: Path, pg_cluster: PgCluster) -> Backend:
    return Backend("postgresql", tmp_path, pg_cluster)


def node(shared: Backend, clock: Clock) -> Accounts:
    return Accounts(shared.accounts_db(), idle_s=900, lock_after=5, lock_for_s=900, clock=clock)


def test_a_session_made_on_one_node_is_valid_on_the_other_and_ends_on_both(shared: Backend) -> None:
    clock = Clock()
    a, b = node(shared, clock), node(shared, clock)
    a.add("marat", ["dispatcher"], password=PASSWORD)
    token, made = a.login("marat", PASSWORD, position="pos1")
    found = b.session(token)
    assert found is not None and (found.person.name, found.csrf, found.position) == ("marat", made.csrf, "pos1")
    clock.now += 600
    assert a.session(token) is not None  # the dispatcher works on node A...
    clock.now += 600
    assert b.session(token) is not None  # ...so on node B the session is not idle either (A wrote its time)
    clock.now += 901
    assert a.session(token) is None and b.session(token) is None  # idle on both
    kept, _ = b.login("marat", PASSWORD)
    assert a.session(kept) is not None
    b.logout(kept)
    assert a.session(kept) is None  # logged out on B: gone on A too (A had it cached)
    again, _ = a.login("marat", PASSWORD)
    b.disable("marat")
    assert a.session(again) is None and a.person("marat") is None


def test_wrong_passwords_on_both_nodes_count_towards_one_lockout(shared: Backend) -> None:
    clock = Clock()
    a, b = node(shared, clock), node(shared, clock)
    a.add("marat", ["dispatcher"], password=PASSWORD)
    with ThreadPoolExecutor(4) as pool:  # four at once, two per node: none of the counts is lost
        refused = list(pool.map(lambda n: pytest.raises(LoginRefused, n.login, "marat", "guess guess guess"),
                                [a, b, a, b]))
    assert all("wrong name or password" in str(r.value) for r in refused)
    assert [acc.failures for acc in b.accounts()] == [4]
    with pytest.raises(LoginRefused, match="too many wrong passwords: try again in 15 minutes"):
        a.login("marat", "guess guess guess")  # the fifth, on either node
    with pytest.raises(LoginRefused, match="too many wrong passwords"):
        b.login("marat", PASSWORD)
    assert [e.action for e in b.audit_trail()].count("account_locked") == 1


def test_audit_rows_from_two_nodes_at_once_are_all_kept_in_commit_order(shared: Backend) -> None:
    clock = Clock()
    a, b, reader = node(shared, clock), node(shared, clock), node(shared, clock)
    writes, done, seen = 150, threading.Event(), []

    def follow() -> None:  # as a console tailing the trail by seq: a row committed late would be skipped
        last = 0
        while True:
            finished = done.is_set()
            for entry in reader.audit_trail(after_seq=last):
                seen.append(entry)
                last = entry.seq
            if finished:
                return

    def write(people: Accounts, who: str) -> None:
        for i in range(writes):
            people.audit(who, "session", "incident_read", f"inc-{i}", str(i))

    with ThreadPoolExecutor(3) as pool:
        tail = pool.submit(follow)
        for future in [pool.submit(write, a, "node_a"), pool.submit(write, b, "node_b")]:
            future.result(timeout=60)
        done.set()
        tail.result(timeout=60)
    trail = a.audit_trail(limit=10_000)
    assert len(trail) == 2 * writes and [e.seq for e in trail] == sorted({e.seq for e in trail})
    for who in ("node_a", "node_b"):
        assert [int(e.detail) for e in trail if e.who == who] == list(range(writes))
    assert seen == trail  # the follower missed none


async def test_two_boards_changing_the_same_unit_lose_no_update(tmp_path: Path, shared: Backend) -> None:
    with trio.fail_after(60):
        async with incident_desk(tmp_path) as desk:
            a, b = make_board(tmp_path, desk, on=shared), make_board(tmp_path, desk, on=shared)
            inc = await desk.open(service="102", source="api", caller=no_caller(), kind="reported", actor="aigerim")
            await a.assign(inc.id, "ps101", actor="aigerim")
            with pytest.raises(IllegalTransition, match=f"unit ps101 is assigned for incident {inc.id}"):
                await b.assign(inc.id, "ps101", actor="marat")  # B's copy still says free: decided on the stored one
            await a.update("ps102", status="unavailable", actor="aigerim", reason="refuelling")
            moved = await b.update("ps102", lat=43.25, lon=76.93, actor="patrol_ps102_a")  # B's copy: free
            assert (moved.status, moved.lat) == ("unavailable", 43.25)  # A's status kept, B's position added

            async def toggle(board: UnitBoard, rounds: int, actor: str) -> None:
                for i in range(rounds):
                    for status in ("free", "unavailable"):
                        await board.update("ss1", status=status, lat=43.2 + i / 1000, lon=76.9, actor=actor)

            async with trio.open_nursery() as nursery:  # both at once, each with its own threads and connection
                nursery.start_soon(toggle, a, 20, "node_a")
                nursery.start_soon(toggle, b, 20, "node_b")
            log = list(reversed(await a.history("ss1", limit=1000)))
            assert len(log) >= 20 and {c.actor for c in log} == {"node_a", "node_b"}
            for before, after in zip(log, log[1:], strict=False):
                assert after.previous == before.status, "a change decided on a stale unit (a lost update)"
            a.close()
            b.close()
            again = make_board(tmp_path, desk, on=shared)  # a restart reads what both wrote
            assert again.get("ss1").status == log[-1].status and again.get("ps101").incident == inc.id
            again.close()


def test_postgresql_away_is_a_typed_error_naming_what_to_fix(shared: Backend, pg_cluster: PgCluster) -> None:
    away = StoreConfig(backend="postgresql", dsn=shared.dsn.replace(f"port={pg_cluster.server.port}", "port=1"))
    for opening in (open_accounts, open_units_db):
        with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL .* check the host and port"):
            opening(away)  # type: ignore[operator]
    unmigrated = StoreConfig(backend="postgresql", dsn=pg_cluster.dsn(pg_cluster.database()))
    with pytest.raises(StoreError, match="no gateway schema: run `gateway db migrate`"):
        open_accounts(unmigrated)
    people = node(shared, Clock())
    people.add("marat", ["dispatcher"], password=PASSWORD)
    name = shared.dsn.split("@/")[1].split("?")[0]
    pg_cluster.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    with pytest.raises(StoreUnavailable, match="accounts write failed"):  # never retried: it may have committed
        people.audit("marat", "session", "incident_read", "x")
    assert people.person("marat") is not None  # the next call connects again
    pg_cluster.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    assert people.person("marat") is not None  # a read is asked again on a new connection at once


def test_gateway_users_on_postgresql_changes_what_every_node_sees(shared: Backend, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = shipped_config(tmp_path)
    path.write_text(re.sub(r'(?m)^backend = "sqlite".*$', f'backend = "postgresql"\ndsn = "{shared.dsn}"',
                           path.read_text()))
    running = open_accounts(StoreConfig(backend="postgresql", dsn=shared.dsn), clock=Clock())  # `gateway run`
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["--config", str(path), "users", "add", "marat", "--role", "dispatcher", "--password-stdin"]) == 0
    assert running.login("marat", PASSWORD)[1].person.name == "marat"
    assert main(["--config", str(path), "users", "list"]) == 0
    assert "marat" in capsys.readouterr().out
    assert main(["--config", str(path), "users", "disable", "marat"]) == 0
    assert running.person("marat") is None
    running.close()
    units = open_units_db(StoreConfig(backend="postgresql", dsn=shared.dsn))
    assert units.shared and units.rows("SELECT count(*) FROM units") == [(0,)]
    units.close()


def test_with_postgresql_not_answering_a_console_request_fails_fast_and_recovers(shared: Backend,
                                                                                pg_cluster: PgCluster) -> None:
    """The console asks for sessions from the event loop: a reconnect that hangs must not hold it."""
    people = open_accounts(StoreConfig(backend="postgresql", dsn=shared.dsn), clock=Clock())
    people.add("marat", ["dispatcher"], password=PASSWORD)
    pg = people._db._pg  # type: ignore[attr-defined]
    name = shared.dsn.split("@/")[1].split("?")[0]
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        pg.dsn = f"postgresql://{pg_cluster.server.user}:x@127.0.0.1:{silent.getsockname()[1]}/{name}"
        pg_cluster.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        for most_s in (1.0, 0.1):  # the first waits ACCOUNTS_CONNECT_WAIT_S, the next not at all
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="connecting to PostgreSQL at 127.0.0.1 port"):
                people.person("marat")
            assert time.monotonic() - started < most_s
        pg.dsn = shared.dsn
    deadline = time.monotonic() + 10  # the silent server's connect fails once it is gone; the next one works
    while True:
        try:
            assert people.person("marat") is not None
            break
        except StoreError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    people.close()


async def test_a_note_both_nodes_hold_reaches_its_incident_once(tmp_path: Path, shared: Backend) -> None:
    with trio.fail_after(30):
        async with incident_desk(tmp_path) as desk:
            a = make_board(tmp_path, desk, on=shared)
            inc = await desk.open(service="102", source="api", caller=no_caller(), kind="reported", actor="aigerim")
            blocker = sqlite3.connect(tmp_path / "incidents.db", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # the incident store is busy: A's note waits...
            await a.assign(inc.id, "ps101", actor="aigerim")
            b = make_board(tmp_path, desk, on=shared)  # ...and node B, starting now, finds it waiting too
            assert a.pending() == b.pending() == 1
            blocker.execute("ROLLBACK")
            blocker.close()
            for board in (a, b):  # both deliver it
                async with trio.open_nursery() as nursery:
                    await nursery.start(board.run)
                    nursery.cancel_scope.cancel()
                assert board.pending() == 0
            stored = await desk.store.get(inc.id)
            assert [e.kind for e in stored.timeline].count("unit_assigned") == 1 and stored.units == ["ps101"]
            a.close()
            b.close()
