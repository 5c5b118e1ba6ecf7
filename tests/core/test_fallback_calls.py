"""Calls the fallback dialplan served, registered from the CEL log on a real SQLite store: the incident and
its times, idempotence (a second run, a restart, a call the gateway saw), rows arriving across runs,
malformed rows counted, a replaced log, a failed write retried, /health reasons, and the periodic run
on Trio's clock."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from gateway.errors import StoreError
from gateway.incident.bus import Bus
from gateway.incident.callback_table import CallbackTable
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, event
from gateway.intake import fallback as service
from gateway.intake.fallback import FallbackCalls, answered_by, dialplan_id, incident_for
from gateway.metrics import Metrics
from gateway.protocols.cel_calls import FallbackCall
from gateway.settings import parse
from tests.core.test_cel import fallback_call, row
from tests.store_backends import Backend

CFG = parse({"services": [{"name": "112", "dialled": ["112"]}, {"name": "102", "dialled": ["102"]}],
             "dispatch": {"positions": [{"name": "pos1", "contact": "sip:pos1@127.0.0.1:5070"},
                                        {"name": "pos2", "contact": "sip:pos2@127.0.0.1:5070"}]}})
T = float(int(time.time()) - 600)  # ten minutes ago: calls older than cel_calls.STALE_S are handed out unended
UID = f"{T:.0f}.0"
ID = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(T))}-{UID}"


class Lab:
    def __init__(self, tmp: Path, store: AsyncStore) -> None:
        self.tmp, self.store = tmp, store
        self.log = tmp / "log" / "cel-custom" / "ecgw-cel.csv"
        self.log.parent.mkdir(parents=True)
        self.recorder = Recorder(store, Bus())
        self.metrics = Metrics()

    def service(self) -> FallbackCalls:
        return FallbackCalls(CFG, self.log, self.store, self.recorder, self.metrics, instance_dir=self.tmp)

    def append(self, data: bytes) -> None:
        with open(self.log, "ab") as f:
            f.write(data)

    def incidents(self) -> list[Incident]:
        return [self.store.sync.get(s.id) for s in self.store.sync.recent(1000)]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def lab(tmp_path: Path, backend: Backend) -> AsyncIterator[Lab]:
    store = AsyncStore(backend.open())
    yield Lab(tmp_path, store)


async def test_a_fallback_call_becomes_an_incident_with_its_number_position_and_times(lab: Lab) -> None:
    lab.append(fallback_call(T, UID))
    report = await lab.service().reconcile()
    assert (report.rows, report.malformed, report.ended, report.registered, report.known) == (9, 0, 1, 1, 0)
    [inc] = lab.incidents()
    assert (inc.id, inc.source, inc.state, inc.service, inc.position) == (ID, "fallback", "fallback", "112", "pos1")
    assert (inc.caller.number, inc.caller.display_name, inc.call_id, inc.channel_id) == (
        "+77011234567", "Айгерім", "1-2@127.0.0.1", UID)
    assert (inc.created_wall, inc.answer_s) == (T, 3.0)
    assert [(e.kind, round(e.wall - T, 3)) for e in inc.timeline[:4]] == [
        ("call_arrived", 0.0), ("fallback_ringing", 0.005), ("answered", 3.0), ("hung_up", 10.0)]
    assert inc.timeline[2].data["position"] == "pos1" and inc.timeline[3].actor == "caller"
    assert inc.timeline[-1].kind == "fallback_registered" and inc.timeline[-1].wall > time.time() - 60
    assert lab.metric("ecgw_fallback_calls_registered_total") == 1
    assert lab.metric("ecgw_cel_rows_total", outcome="event") == 9


async def test_a_fallback_call_nobody_answered_goes_onto_the_call_back_list_once(lab: Lab) -> None:
    uid2 = f"{T + 50:.0f}.0"
    lab.append(fallback_call(T, UID, answer_leg="") + fallback_call(T + 50, uid2)  # the second was answered
               + fallback_call(T + 80, f"{T + 80:.0f}.0", answer_leg="", number=""))  # withheld: nobody to call
    await lab.service().reconcile()
    rows = await CallbackTable(lab.store).open_rows(0)
    assert [(r.incident_id, r.number, r.wall) for r in rows] == [(ID, "+77011234567", T + 10.0)]
    await lab.store.write([("DELETE FROM cel_cursor", ())])
    await lab.service().reconcile()  # read again: known, not listed twice
    assert len(await CallbackTable(lab.store).open_rows(0)) == 1


async def test_reading_again_and_restarting_add_nothing(lab: Lab) -> None:
    lab.append(fallback_call(T, UID))
    first = lab.service()
    await first.reconcile()
    again = await first.reconcile()
    assert (again.rows, again.registered) == (0, 0)
    restarted = await lab.service().reconcile()  # resumes at the stored cursor: nothing new to read
    assert (restarted.rows, restarted.registered) == (0, 0)
    await lab.store.write([("DELETE FROM cel_cursor", ())])
    from_scratch = await lab.service().reconcile()  # the whole log again: every call is known
    assert (from_scratch.rows, from_scratch.ended, from_scratch.registered, from_scratch.known) == (9, 1, 0, 1)
    assert len(lab.incidents()) == 1


async def test_nodes_sharing_a_store_each_resume_their_own_log(lab: Lab) -> None:
    """Two nodes' logs at one path (each on its machine), even with one inode (cloned images): node b resumes
    from its cursor, not from where node a's file stopped (which would skip b's first call)."""
    def node(node_id: str) -> FallbackCalls:
        cfg = msgspec.structs.replace(CFG, cluster=msgspec.structs.replace(CFG.cluster, node_id=node_id))
        return FallbackCalls(cfg, lab.log, lab.store, lab.recorder, lab.metrics, instance_dir=lab.tmp)

    lab.append(fallback_call(T, UID))
    assert (await node("node-a").reconcile()).registered == 1
    with open(lab.log, "r+b") as f:  # node b's file, longer: its own two calls, the same inode
        f.truncate(0)
        for n in (1, 2):
            f.write(fallback_call(T + 60 * n, f"{T + 60 * n:.0f}.0", number=f"+7701765432{n}"))
    b = await node("node-b").reconcile()
    assert (b.registered, b.known) == (2, 0)
    assert sorted(i.caller.number for i in lab.incidents()) == ["+77011234567", "+77017654321", "+77017654322"]
    cursors = await lab.store.read("SELECT log FROM cel_cursor ORDER BY log")
    assert cursors == [(f"node-a:{lab.log}",), (f"node-b:{lab.log}",)]


async def test_a_call_the_gateway_saw_is_not_registered_again(lab: Lab) -> None:
    seen = Incident(id=ID, service="112", created_wall=T, channel_id=UID,
                    caller=Caller(raw_number="+77011234567", number="+77011234567", display_name="", withheld=False))
    seen.timeline.append(event("call_arrived", "caller"))
    await lab.recorder.create(lab.recorder.track(Held(seen)))
    other = Incident(id="20260101-000000-gabc.00000001", service="112", created_wall=T + 100,
                     channel_id=f"{T + 100:.0f}.0",
                     caller=seen.caller)  # adopted under another id: known by its channel
    other.timeline.append(event("call_arrived", "caller"))
    await lab.recorder.create(lab.recorder.track(Held(other)))
    lab.append(fallback_call(T, UID) + fallback_call(T + 100, f"{T + 100:.0f}.0"))
    report = await lab.service().reconcile()
    assert (report.ended, report.registered, report.known) == (2, 0, 2)
    assert sorted(i.source for i in lab.incidents()) == ["call", "call"]


async def test_a_call_going_on_is_registered_now_and_completed_when_it_ends(lab: Lab) -> None:
    data = fallback_call(T, UID)
    answered = data.index(b'"ANSWER"') - len('"ecgw-cel-1",')
    hangup = data.index(b'"HANGUP"') - len('"ecgw-cel-1",')
    calls = lab.service()
    lab.append(data[:answered])  # the positions ring
    first = await calls.reconcile()
    assert (first.ended, first.registered, first.ongoing) == (0, 1, 1)
    [ringing] = lab.incidents()
    assert ringing.id == ID and ringing.position == "" and "hung_up" not in [e.kind for e in ringing.timeline]
    lab.append(data[answered:hangup + 20])  # answered; the hang-up's row half written
    again = await calls.reconcile()
    assert (again.registered, again.known, again.completed) == (0, 0, 0)  # known already: not looked up again
    restarted = lab.service()  # a restart in between: the open call's rows are read again
    lab.append(data[hangup + 20:])
    second = await restarted.reconcile()
    assert (second.ended, second.registered, second.completed) == (1, 0, 1)
    [done] = lab.incidents()
    assert [e.kind for e in done.timeline] == [
        "call_arrived", "fallback_ringing", "fallback_registered", "answered", "hung_up"]
    assert (done.position, done.answer_s, done.timeline[-1].wall) == ("pos1", 3.0, T + 10.0)
    assert (await lab.service().reconcile()).completed == 0
    await lab.store.write([("DELETE FROM cel_cursor", ())])
    assert (await lab.service().reconcile()).known == 1  # complete: nothing more to add


async def test_a_call_the_gateway_saw_that_fell_back_is_never_touched(lab: Lab) -> None:
    seen = Incident(id=ID, service="112", created_wall=T, channel_id=UID,
                    caller=Caller(raw_number="+77011234567", number="+77011234567", display_name="", withheld=False))
    seen.timeline.append(event("call_arrived", "caller"))
    await lab.recorder.create(lab.recorder.track(Held(seen)))
    data = fallback_call(T, UID)
    lab.append(data[:data.index(b'"HANGUP"') - len('"ecgw-cel-1",')])
    calls = lab.service()
    assert (await calls.reconcile()).known == 1
    lab.append(data[data.index(b'"HANGUP"') - len('"ecgw-cel-1",'):])
    report = await calls.reconcile()
    assert (report.known, report.completed, report.registered) == (1, 0, 0)
    [inc] = lab.incidents()
    assert [e.kind for e in inc.timeline] == ["call_arrived"]


async def test_malformed_rows_are_skipped_and_counted_and_the_call_still_registered(lab: Lab) -> None:
    lab.append(b"garbage line\n" + row("CHAN_START", 1.0, "bad id!", "x", "PJSIP/x-1") + fallback_call(T, UID)
               + b'"ecgw-cel-1","HANGUP","","17')
    report = await lab.service().reconcile()
    assert (report.malformed, report.registered) == (2, 1)
    assert lab.metric("ecgw_cel_rows_total", outcome="malformed") == 2


async def test_a_replaced_log_is_read_from_its_start(lab: Lab) -> None:
    calls = lab.service()
    lab.append(fallback_call(T, UID))
    await calls.reconcile()
    os.rename(lab.log, lab.log.with_name("ecgw-cel.csv.1"))  # rotated away; Asterisk starts a new file
    lab.append(fallback_call(T + 100, f"{T + 100:.0f}.0"))
    report = await calls.reconcile()
    assert (report.rows, report.registered) == (9, 1)
    assert len(lab.incidents()) == 2


async def test_rows_written_just_before_a_rotation_are_read_from_the_old_file(lab: Lab) -> None:
    calls = lab.service()
    lab.append(fallback_call(T, UID))
    await calls.reconcile()
    lab.append(fallback_call(T + 100, f"{T + 100:.0f}.0"))  # after the last read, before the rotation
    os.rename(lab.log, lab.log.with_name("ecgw-cel.csv.1"))
    lab.append(fallback_call(T + 200, f"{T + 200:.0f}.0"))
    report = await calls.reconcile()
    assert (report.rows, report.registered) == (18, 2)
    assert len(lab.incidents()) == 3


async def test_a_log_truncated_while_the_gateway_runs_is_read_from_its_start(lab: Lab) -> None:
    calls = lab.service()
    lab.append(fallback_call(T, UID))
    await calls.reconcile()
    lab.log.write_bytes(b"")  # copytruncate
    lab.append(fallback_call(T + 100, f"{T + 100:.0f}.0")[:300])
    await calls.reconcile()
    lab.append(fallback_call(T + 100, f"{T + 100:.0f}.0")[300:])
    report = await calls.reconcile()
    assert (report.malformed, report.registered) == (0, 1) and len(lab.incidents()) == 2


async def test_a_failed_write_is_retried_at_the_next_run(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = lab.service()
    real = lab.recorder.create

    async def broken(held: Held, extra: object = ()) -> None:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(lab.recorder, "create", broken)
    lab.append(fallback_call(T, UID))
    failed = await calls.reconcile()
    assert (failed.failed, failed.registered) == (1, 0) and calls.problems
    monkeypatch.setattr(lab.recorder, "create", real)
    retried = await calls.reconcile()
    assert (retried.registered, retried.failed) == (1, 0) and calls.problems == []


async def test_health_says_when_the_log_cannot_be_read(lab: Lab) -> None:
    calls = lab.service()
    await calls.reconcile()
    assert calls.problems == []  # no call logged yet: nothing to read, nothing wrong
    lab.log.mkdir()
    await calls.reconcile()
    assert calls.problems and "cannot read Asterisk's CEL log" in calls.problems[0]
    assert lab.metric("ecgw_fallback_reconcile_runs_total", result="unreadable") == 1
    lab.log.rmdir()
    lab.log.parent.rmdir()
    (lab.tmp / "etc").mkdir()  # a provisioned instance without the CEL directory (set up before CEL)
    await calls.reconcile()
    assert calls.problems and "gateway asterisk up" in calls.problems[0]


async def test_it_runs_on_start_and_every_ten_seconds_of_trios_clock(
        lab: Lab, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, runs = lab.service(), list[float]()

    async def reconcile() -> None:
        runs.append(trio.current_time())
        if len(runs) == 2:
            raise StoreError("database is locked")  # logged, counted, and the next run comes all the same

    monkeypatch.setattr(calls, "reconcile", reconcile)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(calls.run)
        await trio.sleep(service.EVERY_S * 3 + 1)
        nursery.cancel_scope.cancel()
    assert runs == [start + n * service.EVERY_S for n in range(4)]
    assert calls.problems and lab.metric("ecgw_fallback_reconcile_runs_total", result="store_failed") == 1


def test_who_answered_and_the_incident_without_answer_or_a_usable_mark() -> None:
    assert answered_by("PJSIP/ecgw-pos-desk-7-0000001a") == ("desk-7", "dispatcher")
    assert answered_by("PJSIP/ecgw-backup-0000001b") == ("", "backup")
    assert answered_by("Local/x@y-00000001;1") == ("", "")
    call = FallbackCall(linked_id="1796417176.0", unique_id="1796417176.0", incident_id="'; drop", service="9" * 40,
                        presentation="prohib_not_screened", call_id="c", caller_channel="PJSIP/t-1",
                        number="87011234567", name="", arrived_wall=1796417176.5, fallback_wall=1796417176.6, legs=2,
                        ended_wall=1796417190.0, hung_up_by="PJSIP/t-1")
    inc = incident_for(call, CFG, 1796417200.0)
    assert inc.id == "20261204-204616-1796417176.0" == dialplan_id("1796417176.0", 0.0)
    assert (inc.service, inc.position, inc.answer_s, inc.caller.number) == ("112", "", None, "+77011234567")
    assert inc.caller.withheld and [e.kind for e in inc.timeline] == [
        "call_arrived", "fallback_ringing", "hung_up", "fallback_registered"]
    assert inc.timeline[2].data["answered"] is False
    assert dialplan_id("no-epoch", 1796417176.0).startswith("20261204-204616-")


def test_a_cluster_node_s_uniqueid_gives_the_incident_id_its_dialplan_gives() -> None:
    """With ``systemname`` (a cluster node) UNIQUEID is "nodea-<epoch>.<n>": the id names the node."""
    assert dialplan_id("nodea-1796417176.0", 0.0) == "20261204-204616-nodea.1796417176.0"
    assert dialplan_id("nodea-x.0", 1796417176.0).startswith("20261204-204616-")
