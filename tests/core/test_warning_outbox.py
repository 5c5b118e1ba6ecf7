"""The outbox on SQLite and on PostgreSQL (``backend``): fan-out cursor, claims, outcomes, crash leftovers,
audiences. (Several nodes on one PostgreSQL: ``test_warning_outbox_nodes.py``.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest

from gateway.errors import Conflict, NotFound
from gateway.protocols.cap import Alert
from gateway.warning.outbox import Queries, RecipientRow
from gateway.warning.records import FAILED, QUEUED, SENT, AlertRecord, AuditEvent
from tests.core.warning_harness import people
from tests.store_backends import Backend


def record(alert_id: str, root: str = "") -> AlertRecord:
    cap = Alert(identifier=alert_id, sender="cd@ecgw.kz", sent=datetime(2026, 11, 21, tzinfo=UTC), status="Actual",
                msg_type="Alert")
    return AlertRecord(id=alert_id, state="sending", event="flood", cap=cap, zones=["medeu"], channels=["email"],
                       created_by="aigerim", created_at=time.time(), root=root)


def email_route(row: RecipientRow) -> str | None:
    return "email" if row[2] else None


@pytest.fixture
def box(backend: Backend) -> Iterator[Queries]:
    outbox = backend.outbox()
    outbox.put_recipients(people(25) + people(5, zone="almaly", start=25))
    yield outbox
    outbox.close()


def test_fanout_in_chunks_advances_a_durable_cursor(box: Queries, backend: Backend) -> None:
    box.insert_alert(record("A1"), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = box.get_alert("A1")
    box.start_fanout(no, [("siren", -1, 0)], 0.0)
    cursor, made, done = box.fanout_chunk(no, ["medeu"], None, 0, 10, email_route, 0.0)
    assert (made, done) == (10, False)
    box.close()
    again = backend.outbox()  # a restart resumes at the stored cursor
    assert again.pending_fanouts() == [(no, cursor)]
    total = made
    while not done:
        cursor, made, done = again.fanout_chunk(no, ["medeu"], None, cursor, 10, email_route, 0.0)
        total += made
    assert total == 25 and again.pending_fanouts() == [] and again.fanout_done(no)
    progress = again.progress(no)
    assert progress["email"].queued == 25 and progress["siren"].queued == 1
    again.close()


def test_claim_marks_sending_and_priority_jobs_go_first(box: Queries) -> None:
    box.insert_alert(record("A1"), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = box.get_alert("A1")
    box.start_fanout(no, [], 0.0)
    box.fanout_chunk(no, ["medeu"], None, 0, 100, email_route, 0.0)
    box.start_fanout(no, [("email", 0, 0)], 0.0)  # a channel post outranks the bulk
    claimed = box.claim("email", 5, time.time())
    assert claimed[0] == (no, 0, 1) and len(claimed) == 5
    assert sorted(t for _, t, _ in box.sending("email")) == sorted(t for _, t, _ in claimed)
    assert box.claim("email", 100, time.time()).__len__() == 21  # nobody is claimed twice


def test_outcomes_retries_and_late_receipts(box: Queries) -> None:
    box.insert_alert(record("A1"), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = box.get_alert("A1")
    box.start_fanout(no, [], 0.0)
    box.fanout_chunk(no, ["medeu"], None, 0, 100, email_route, 0.0)
    (a, t1, _), (_, t2, _), (_, t3, _) = box.claim("email", 3, time.time())
    later = time.time() + 3600
    box.finish("email", [(a, t1, SENT, "msg-1", "", 0.0), (a, t2, QUEUED, "", "451 try later", later),
                         (a, t3, FAILED, "", "550 no such user", 0.0)], moves=[(a, "telegram", t3)])
    assert box.update_by_keys("email", [("A1", t1, 3, "", ""), ("A1", 999999, 3, "", ""), ("B9", t1, 3, "", "")]) == (
        1, [])
    p = box.progress(no)
    assert (p["email"].delivered, p["email"].failed, p["email"].queued) == (1, 1, 23)
    assert p["telegram"].queued == 1
    assert all(t != t2 for _, t, _ in box.claim("email", 100, time.time()))  # not due yet


def test_a_cancel_reaches_exactly_those_the_chain_reached(box: Queries) -> None:
    box.insert_alert(record("A1"), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = box.get_alert("A1")
    box.start_fanout(no, [], 0.0)
    box.fanout_chunk(no, ["medeu"], None, 0, 100, email_route, 0.0)
    jobs = box.claim("email", 100, time.time())
    box.finish("email", [(a, t, SENT if t % 2 else FAILED, "", "", 0.0) for a, t, _ in jobs])
    cancel = msgspec.structs.replace(record("C1", root="A1"), cap=msgspec.structs.replace(
        record("C1").cap, msg_type="Cancel"))
    box.insert_alert(cancel, AuditEvent(at=0, actor="t", kind="drafted"))
    cno, _ = box.get_alert("C1")
    stopped, withdrawn = box.stop_chain("A1", keep="C1")
    assert stopped == [no] and withdrawn == 0 and box.fanout_done(no)
    box.start_fanout(cno, [], 0.0)
    _, made, _ = box.fanout_chunk(cno, ["almaly"], "A1", 0, 100, email_route, 0.0)
    assert made == len([t for _, t, _ in jobs if t % 2])


def test_alert_records_and_audit_are_append_only(box: Queries) -> None:
    box.insert_alert(record("A1"), AuditEvent(at=1, actor="aigerim", kind="drafted"))
    with pytest.raises(Conflict, match="already exists"):
        box.insert_alert(record("A1"), AuditEvent(at=1, actor="aigerim", kind="drafted"))
    _, r = box.get_alert("A1")
    box.update_alert(r, AuditEvent(at=2, actor="daniyar", kind="approved"), expect_state="sending")
    with pytest.raises(Conflict, match="not draft"):
        box.update_alert(r, AuditEvent(at=3, actor="x", kind="approved"), expect_state="draft")
    assert [e.kind for e in box.audit_trail("A1")] == ["drafted", "approved"]
    with pytest.raises(NotFound):
        box.get_alert("nope")


def test_recipients_upsert_and_delete(box: Queries) -> None:
    assert box.count_recipients() == 30
    box.put_recipients(people(1, zone="almaly"))  # r0 moves zone
    assert box.get_recipient("r0").zones == ["almaly"]
    box.delete_recipient("r0")
    with pytest.raises(NotFound):
        box.get_recipient("r0")
    assert box.count_recipients() == 29


def test_a_late_receipt_sent_again_changes_nothing_even_after_a_reopen(box: Queries, backend: Backend) -> None:
    box.insert_alert(record("A1"), AuditEvent(at=0, actor="t", kind="drafted"))
    no, _ = box.get_alert("A1")
    box.start_fanout(no, [], 0.0)
    box.fanout_chunk(no, ["medeu"], None, 0, 100, email_route, 0.0)
    [(a, t, _)] = box.claim("email", 1, time.time())
    box.finish("email", [(a, t, SENT, "SM1", "", 0.0)], moves=[])
    sent, delivered = ("A1", t, SENT, "", "twilio-status:SM1:sent"), ("A1", t, 3, "", "twilio-status:SM1:delivered")
    assert box.update_by_keys("email", [sent, delivered]) == (2, [])
    assert box.update_by_keys("email", [sent, sent]) == (0, ["twilio-status:SM1:sent"] * 2)  # an old one again
    assert box.progress(no)["email"].delivered == 1
    box.close()
    again = backend.outbox()
    assert again.update_by_keys("email", [delivered, sent]) == (0, [delivered[4], sent[4]])
    assert again.update_by_keys("email", [("A1", t, SENT, "", "")]) == (1, [])  # no key: always applied
    again.close()
