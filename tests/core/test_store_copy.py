"""``gateway db copy``: a SQLite incident store moved into a real PostgreSQL (``sim.pg``) without loss, a
re-run that adds nothing, a changed row found and named, and bad inputs refused with exit status 2."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import psycopg
import pytest

from gateway import store_copy
from gateway.cli.main import main
from gateway.incident import callback_table, recording_index
from gateway.incident.recording_index import Hold, Recording
from gateway.incident.records import Location
from gateway.incident.sqldb import SqliteDb
from gateway.incident.store import SqliteStore, event
from gateway.incident.store_pg import PgDb, PgStore
from gateway.intake import fallback
from gateway.people import accounts
from gateway.people.accounts import Accounts
from gateway.scenario import leases, machine, runs
from gateway.stores import VERSION
from gateway.units import board
from tests.core.test_accounts import PASSWORD, Clock
from tests.core.test_store import incident
from tests.store_backends import TEMPLATE, PgCluster

TABLES = ("incidents", "timeline", "directory", "seen", "callbacks", "recordings", "legal_holds", "escalation_runs",
          "cel_cursor", "scenario_leases", "scenario_lease_fence", "people", "sessions", "accounts_version", "audit",
          "units", "unit_log", "unit_notes")
CURSOR = ('INSERT INTO cel_cursor (log, device, inode, "offset", wall) VALUES (?,?,?,?,?) ON CONFLICT (log) DO'
          ' UPDATE SET device=excluded.device, inode=excluded.inode, "offset"=excluded."offset", wall=excluded.wall')


def centre(path: Path, incidents: int = 300) -> list[str]:
    """A SQLite store as a gateway leaves it, written through the features' own statements; the incident ids."""
    store = SqliteStore(path, synchronous="OFF")
    for schema in (callback_table.SCHEMA, recording_index.SCHEMA, runs.SCHEMA, fallback.CURSOR_SCHEMA, leases.SCHEMA):
        store.apply_schema(schema)
    ids, batch = [], []
    for i in range(incidents):
        inc = incident(f"20261205-{i:06d}-n{i}", number=f"+7701{i % 97:07d}", created=1.7e9 + i * 0.1,
                       where=(43.25 + i * 1e-5, 76.95) if i % 3 else None)
        if i % 7 == 0:
            inc.caller = msgspec.structs.replace(inc.caller, display_name="Әлия «Ж» 😀")
        inc.timeline.extend(event(kind, n=i, ratio=i / 7) for kind in ("queued", "ringing", "answered")[: i % 4])
        batch += store.create_statements(inc)
        if i % 5 == 0:
            batch.append(callback_table.abandoned(inc, 1.7e9 + i))
        batch += store.seen_statements(f"SM{i:032x}", 1.7e9 + i)
        ids.append(inc.id)
    batch += callback_table.attempted(ids[:10:5], "no_answer", 1.7e9 + 1000, cleared=False)
    batch += [recording_index.insert(Recording(id=i, incident_id=i, file=f"{i}.WAV", codec="gsm", start_wall=1.7e9,
                                               duration_s=61.5, size=2**40 + n, sha256="ab" * 32, indexed_wall=1.7e9,
                                               purged_wall=None if n % 2 else 1.8e9))
              for n, i in enumerate(ids[:40])]
    batch.append(recording_index.set_hold(Hold(incident_id=ids[1], wall=1.7e9, actor="aigerim", reason="court №7")))
    batch += [runs.RunStore.row(machine.Run(key=f"{i}/category", incident_id=i, kind="category", scenario="fire",
                                            category="fire")) for i in ids[:25]]
    batch.append((CURSOR, ("/var/log/asterisk/cel-custom/Master.csv", 2049, 131077, 9_876_543, 1.7e9)))
    store.write(batch)
    store.directory_put([(f"+7727{n:07d}", Location(source="directory", shape="civic", lat=43.2, lon=76.9))
                         for n in range(50)])
    store.close()
    return ids


def copy_cli(source: str, target: str, *extra: str) -> int:
    return main(["db", "copy", "--from", source, "--to", target, *extra])


@pytest.fixture
def sqlite_centre(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "gateway.sqlite3"
    return path, centre(path)


def test_a_centre_is_copied_whole_and_a_second_run_adds_nothing(
        pg_cluster: PgCluster, sqlite_centre: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    path, ids = sqlite_centre
    dsn = pg_cluster.dsn(pg_cluster.database())  # empty: migrated by the copy
    assert copy_cli(f"sqlite:{path}", f"postgresql:{dsn}", "--batch-rows", "97") == 0
    out = capsys.readouterr().out
    assert f"target had no schema: migrated to version {VERSION}" in out and "every table equal" in out
    assert "timeline: 750 of 750 rows read, 750 added" in out
    source, (target, _) = store_copy.open_source(path), store_copy.open_target(dsn, resume=True)
    tallies = {t.table: t for t in store_copy.compare(source, target)}
    assert tuple(tallies) == TABLES and all(t.equal for t in tallies.values())
    counts = {name: t.target_rows for name, t in tallies.items()}
    assert counts == {"incidents": 300, "timeline": 750, "directory": 50, "seen": 300, "callbacks": 60,
                      "recordings": 40, "legal_holds": 1, "escalation_runs": 25, "cel_cursor": 1,
                      "scenario_leases": 0, "scenario_lease_fence": 0, "people": 0, "sessions": 0,
                      "accounts_version": 0, "audit": 0, "units": 0, "unit_log": 0, "unit_notes": 0}
    old, new = SqliteStore(path), PgStore(dsn, schema_version=VERSION)
    assert all(new.get(i) == old.get(i) for i in ids)
    assert new.directory_lookup("+77270000007") == old.directory_lookup("+77270000007")
    assert new.seen(f"SM{7:032x}", 1.7e9 + 8) and not new.seen("SM-never", 1.7e9)

    assert copy_cli(f"sqlite:{path}", dsn) == 2  # holds rows: refused without --resume
    assert "already holds rows (incidents 300, timeline 750," in capsys.readouterr().err
    assert copy_cli(f"sqlite:{path}", dsn, "--resume") == 0
    assert "copied 1527 rows (0 added)" in capsys.readouterr().out
    assert {t.table: t.target_rows for t in store_copy.compare(source, target)} == counts
    for each in (source, target, old, new):
        each.close()


def test_an_interrupted_copy_is_finished_by_resume(pg_cluster: PgCluster, sqlite_centre: tuple[Path, list[str]],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = sqlite_centre
    dsn = pg_cluster.dsn(pg_cluster.database(TEMPLATE))
    source, (target, _) = store_copy.open_source(path), store_copy.open_target(dsn, resume=False)

    def cut(table: str, read: int, total: int, added: int) -> None:
        if table == "timeline" and read >= 200:
            raise KeyboardInterrupt  # the operator's Ctrl-C between two batches

    with pytest.raises(KeyboardInterrupt):
        store_copy.copy(source, target, batch_rows=100, progress=cut)
    partial = {t.table: t for t in store_copy.compare(source, target)}
    assert partial["incidents"].equal and partial["timeline"].target_rows == 200 and not partial["seen"].target_rows
    assert copy_cli(f"sqlite:{path}", dsn, "--check-only") == 1  # what is missing is named
    assert "error: the target differs from the source in timeline, directory, seen," in capsys.readouterr().err
    assert copy_cli(f"sqlite:{path}", dsn, "--resume") == 0
    assert "copied 1527 rows (1027 added)" in capsys.readouterr().out
    source.close()
    target.close()


def test_a_row_changed_in_the_target_is_found_and_its_table_named(
        pg_cluster: PgCluster, sqlite_centre: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    path, ids = sqlite_centre
    dsn = pg_cluster.dsn(pg_cluster.database(TEMPLATE))
    assert copy_cli(f"sqlite:{path}", dsn) == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE recordings SET duration_s = duration_s + 1e-9 WHERE id = %s", (ids[3],))
        conn.execute("DELETE FROM timeline WHERE incident_id = %s AND seq = 2", (ids[7],))
    capsys.readouterr()
    assert copy_cli(f"sqlite:{path}", dsn, "--check-only") == 1
    captured = capsys.readouterr()
    assert "error: the target differs from the source in timeline, recordings" in captured.err
    lines = {line.split()[0]: line for line in captured.out.splitlines()}
    assert f"DIFFERS (first at incident_id='{ids[7]}', seq=2)" in lines["timeline"]
    assert lines["timeline"].split()[1:3] == ["750", "749"]
    assert f"DIFFERS (first at id='{ids[3]}')" in lines["recordings"] and lines["incidents"].endswith("equal")
    assert copy_cli(f"sqlite:{path}", dsn, "--resume") == 1  # the missing event is copied again, the change stays
    assert "error: the target differs from the source in recordings\n" in capsys.readouterr().err


def test_bad_inputs_are_refused_with_status_2_naming_what_to_fix(
        pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = pg_cluster.server
    dsn = pg_cluster.dsn(pg_cluster.database(TEMPLATE))
    good = tmp_path / "good.sqlite3"
    SqliteStore(good).close()
    (tmp_path / "garbage.sqlite3").write_bytes(b"not a database, " * 512)
    sqlite3.connect(tmp_path / "other.sqlite3").execute("CREATE TABLE t (x)").connection.close()
    newer = pg_cluster.dsn(pg_cluster.database(TEMPLATE))
    with psycopg.connect(newer, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s, 0, 'a newer gateway')", (VERSION + 1,))
    wrong_password = f"postgresql://{s.user}:nope@127.0.0.1:{s.port}/{TEMPLATE}"
    refused = {
        (f"sqlite:{tmp_path / 'missing.sqlite3'}", dsn): "no SQLite file at",
        (f"sqlite:{tmp_path / 'garbage.sqlite3'}", dsn): "is not a readable SQLite database (file is not a database)",
        (f"sqlite:{tmp_path / 'other.sqlite3'}", dsn): "holds no incident store (no incidents table)",
        (str(good), dsn): "--from",
        (f"sqlite:{good}", "db1:5432"): "--to: expected postgresql:DSN",
        (f"sqlite:{good}", wrong_password): "check the credentials (user and password in the --to DSN)",
        (f"sqlite:{good}", f"postgresql://{s.user}:{s.password}@127.0.0.1:1/x"): "check the host and port in the --to",
        (f"sqlite:{good}", newer): f"has schema version {VERSION + 1}, unknown to this gateway",
    }
    for (source, target), said in refused.items():
        assert copy_cli(source, target) == 2, said
        err = capsys.readouterr().err
        assert said in err and s.password not in err, err
    empty = pg_cluster.dsn(pg_cluster.database())
    assert copy_cli(f"sqlite:{good}", empty, "--check-only") == 2  # nothing to compare with: not migrated for that
    assert "has no gateway schema: run `gateway db migrate`" in capsys.readouterr().err



def test_the_source_is_only_read_while_its_gateway_writes(pg_cluster: PgCluster, sqlite_centre: tuple[Path, list[str]],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = sqlite_centre
    before = path.read_bytes()
    writer = SqliteStore(path)  # the running gateway, in the middle of a write
    writer._db.execute("BEGIN IMMEDIATE")
    for sql, args in writer.create_statements(incident("20261205-235959-late")):
        writer._db.execute(sql, args)
    assert copy_cli(f"sqlite:{path}", pg_cluster.dsn(pg_cluster.database(TEMPLATE))) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert lines["incidents"][1:3] == ["300", "300"] and path.read_bytes() == before
    writer._db.execute("COMMIT")  # its write was never blocked, and is not in the copy
    assert writer.count() == 301
    writer.close()


def test_text_keys_compare_in_byte_order_whatever_the_target_collation(pg_cluster: PgCluster, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.sqlite3"
    centre(path, incidents=20)
    store = SqliteStore(path)
    for mixed in ("20261205-000001-aa", "20261205-000001-Zz", "20261205-000001-b-"):  # ICU: aa < b- < Zz
        store.create(incident(mixed))
        store.write(store.seen_statements(mixed, 1.7e9))
    store.close()
    name = f"icu{pg_cluster.database()}"  # a target collating by language, as a default install may
    pg_cluster.admin.execute(f"CREATE DATABASE {name} OWNER {pg_cluster.server.user} TEMPLATE template0"
                             " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    assert copy_cli(f"sqlite:{path}", pg_cluster.dsn(name)) == 0, capsys.readouterr()


def test_accounts_audit_and_the_unit_board_are_copied_and_the_target_numbers_on(
        pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.sqlite3"
    centre(path, incidents=5)
    clock = Clock()
    people = Accounts(path, clock=clock)
    people.add("marat", ["dispatcher"], password=PASSWORD)
    token, _ = people.login("marat", PASSWORD, position="pos1")
    for i in range(30):
        people.audit("marat", "session", "incident_read", f"inc-{i}")
    people.close()
    units = SqliteDb(tmp_path / "units.db", board.SCHEMA, "units store")  # as the board leaves it
    with units.transaction() as execute:
        for n in range(3):
            execute("INSERT INTO units (id, body) VALUES (?, ?)", (f"u{n}", b'{"id":"u%d"}' % n))
            execute("INSERT INTO unit_log (unit, body) VALUES (?, ?)", (f"u{n}", b"{}"))
        execute("INSERT INTO unit_notes (body) VALUES (?)", (b"{}",))
    units.close()
    dsn = pg_cluster.dsn(pg_cluster.database(TEMPLATE))
    assert copy_cli(f"sqlite:{path}", dsn) == 0
    out = capsys.readouterr().out
    assert "every table equal" in out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.split()}
    assert rows["audit"] == ["32", "32"] and rows["units"] == ["3", "3"] and rows["people"] == ["1", "1"]
    assert rows["unit_log"] == ["3", "3"] and rows["unit_notes"] == ["1", "1"] and rows["sessions"] == ["1", "1"]
    moved = Accounts(PgDb(dsn, accounts.PG_SCHEMA, "accounts", schema_version=VERSION), clock=clock)
    assert moved.session(token) is not None  # logged in before the move, still logged in after it
    moved.audit("marat", "session", "incident_read", "after")
    trail = moved.audit_trail(limit=100)
    assert len(trail) == 33 and trail[-1].target == "after" and trail[-1].seq == trail[-2].seq + 1
    moved.close()
