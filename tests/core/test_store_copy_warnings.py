"""``gateway db copy --warnings-from``: a centre's SQLite warnings store moved into PostgreSQL's schema
``warnings`` with its incident store, compared table by table, and used there by a node at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway import store_copy
from gateway.stores import VERSION
from gateway.warning.outbox import Outbox
from gateway.warning.outbox_pg import PgOutbox
from gateway.warning.records import SENT, AuditEvent
from tests.core.test_store_copy import centre, copy_cli
from tests.core.test_warning_outbox import email_route, record
from tests.core.warning_harness import people
from tests.store_backends import PgCluster

WARNING_TABLES = ["warnings.recipients", "warnings.recipient_zones", "warnings.alerts", "warnings.audit",
                  "warnings.fanout", "warnings.jobs", "warnings.seen"]


def warnings_store(path: Path) -> list[tuple[int, int, int]]:
    """A SQLite warnings store as a gateway leaves it: an alert fanned out to 120 recipients, some messages
    sent (one with a receipt), some in flight; the jobs left "sending"."""
    box = Outbox(path, synchronous="OFF")
    box.put_recipients(people(120) + people(30, zone="almaly", start=120))
    box.insert_alert(record("A1"), AuditEvent(at=1, actor="aigerim", kind="drafted"))
    no, rec = box.get_alert("A1")
    box.update_alert(rec, AuditEvent(at=2, actor="daniyar", kind="approved"))
    box.start_fanout(no, [("siren", -1, 0)], 1.7e9)
    box.fanout_chunk(no, ["medeu"], None, 0, 100, email_route, 1.7e9)  # not done: 20 recipients to go
    sent = box.claim("email", 50, time.time())
    box.finish("email", [(a, t, SENT, f"SM{t}", "", 0.0) for a, t, _ in sent])
    box.update_by_keys("email", [("A1", sent[0][1], 3, "", "twilio-status:SM1:delivered")])
    stuck = box.claim("email", 7, time.time())
    box.close()
    return stuck


def test_the_warnings_store_is_copied_compared_and_usable_by_a_node(pg_cluster: PgCluster, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    incidents, warnings = tmp_path / "gateway.sqlite3", tmp_path / "warnings.sqlite3"
    centre(incidents, incidents=20)
    stuck = warnings_store(warnings)
    dsn = pg_cluster.dsn(pg_cluster.database())  # empty: migrated by the copy
    assert copy_cli(f"sqlite:{incidents}", dsn, "--warnings-from", f"sqlite:{warnings}") == 0, capsys.readouterr()
    said = capsys.readouterr().out
    assert "every table equal" in said and all(name in said for name in WARNING_TABLES)
    source, (target, _) = store_copy.open_source(warnings, "warnings"), store_copy.open_target(dsn, resume=True)
    tallies = {t.table: t for t in store_copy.compare(source, target, schema="warnings")}
    source.close()
    target.close()
    assert list(tallies) == WARNING_TABLES and all(t.equal for t in tallies.values())
    assert (tallies["warnings.recipients"].target_rows, tallies["warnings.jobs"].target_rows) == (150, 101)
    assert copy_cli(f"sqlite:{incidents}", dsn, "--warnings-from", f"sqlite:{warnings}", "--resume") == 0  # adds none

    node = PgOutbox(dsn, schema_version=VERSION, node_id="node-a")
    no, _ = node.get_alert("A1")
    assert node.pending_fanouts() == [(no, 100)]  # carried on where the SQLite node stopped
    node.put_recipients(people(1, start=500))  # numbers drawn after the copied ones
    assert node.get_recipient("r500") and max(node.recipient_rows(list(range(1, 200)))) == 151
    node.insert_alert(record("A2"), AuditEvent(at=3, actor="aigerim", kind="drafted"))
    assert node.get_alert("A2")[0] == no + 1
    node.heartbeat(time.time(), 5.0)
    assert sorted(node.adopt("email", time.time())) == sorted(stuck)  # the old node ("local") is not live
    node.close()


def test_a_warnings_source_that_is_not_one_is_refused(pg_cluster: PgCluster, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    incidents = tmp_path / "gateway.sqlite3"
    centre(incidents, incidents=2)
    dsn = pg_cluster.dsn(pg_cluster.database())
    assert copy_cli(f"sqlite:{incidents}", dsn, "--warnings-from", f"sqlite:{incidents}") == 2
    assert "holds no warnings store (no jobs table): check --warnings-from sqlite:PATH" in capsys.readouterr().err
    assert copy_cli(f"sqlite:{incidents}", dsn, "--warnings-from", str(incidents)) == 2
    assert "--warnings-from" in capsys.readouterr().err
