"""The failover drill (issue 14): two nodes lose one, and the report says what the callers and the record saw.

Two nodes on loopback (each a real Asterisk with its own ``gateway run``) share one PostgreSQL, with Kamailio
in front probing them every second. Callers arrive through Kamailio at ``calls_per_s`` (one sipp process) and
a dispatcher reports police incidents through the API of each node in turn, so scenario runs are under way
on both (``SCENARIO``: console notices, 5 s to acknowledge, 2 attempts). ``kill_after_s`` in,
node A's gateway *and* its Asterisk are SIGKILLed. Then the drill waits for the record to settle and reads
it straight from PostgreSQL, and reports:

- callers: placed, answered on each node, cut on A (answered and talking when it died: that is the machine
  gone, not a record lost), in setup on A when it died, and unanswered otherwise; kill → first call answered
  on B; the slowest INVITE → answer after the kill (a call Kamailio sent to A before probing marked it dead
  waits for its INVITE timeout);
- the record: every answered call's incident exactly once (by the caller's Call-ID), none left live (B closes
  the calls cut on A, ``call_lost``), every incident reported before the kill present;
- escalations: A's runs taken over by B (kill → first and last ``scenario_taken_over``), steps started twice
  and notifications sent twice (both must be 0), runs finished;
- kill → node A shown lost on B's ``/health``;
- with ``recipients``, an Exercise fan-out (``sim.failover_fanout``) sent through A ``fanout_lead_s`` before the
  kill (the kill waits until its first messages are out): messages out at the kill, jobs A held in flight
  (the bound on duplicates), delivered once, missed (must be 0), duplicates, kill → B's first message of A's
  work, kill → the alert sent on B.

``gateway-sim failover sim/drills/failover.toml`` runs the long drill; ``tests/drills/test_real_failover_drill.py``
a short one in ``make test``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import trio

from gateway.asterisk import sandbox
from gateway.incident.records import Incident
from gateway.incident.store_pg import PgStore, migrate
from gateway.intake.lost_calls import LIVE
from gateway.stores import MIGRATIONS, VERSION
from sim import pg, sipp
from sim import sipp_xml as scenario
from sim.cluster import ClusterLab, node_uri, notify_scenario, running_cluster, started_nodes
from sim.cluster_fanout import drill_channels, open_stand_ins
from sim.failover_fanout import Fanout
from sim.failover_report import NAMES, Call, FailoverReport, FailoverSpec
from sim.lab import AsteriskInstance

TOKEN = "failover-drill-token"

RUN_STEPS = frozenset({"step_started", "notified", "awaiting_ack", "ack_timeout", "scenario_finished"})
SETTLE_S = 60.0  # after the last caller: every record final and every run finished, or the drill says so
# The runs the drill's reports start: 2 attempts 5 s apart, then closed unanswered (~10 s): those reported
# in the 10 s before the kill are under way on A when it dies.
SCENARIO = notify_scenario(repeat=2, escalate=False)


async def run_failover(spec: FailoverSpec, workdir: Path) -> FailoverReport:
    """The whole drill in ``workdir`` (its own PostgreSQL, stand-ins, nodes and Kamailio, all stopped at the
    end)."""
    async with pg.open_pg_server() as server, open_stand_ins() as stand_ins:
        await trio.to_thread.run_sync(migrate, server.dsn(), MIGRATIONS)
        with started_nodes(server.dsn(), NAMES, workdir, TOKEN, lease_s=spec.lease_s, scenario=SCENARIO,
                           extra=drill_channels(stand_ins, per_s=spec.fanout_per_s)) as nodes:
            async with running_cluster(nodes, NAMES, workdir, invite_timeout_ms=spec.invite_timeout_ms) as lab:
                report = FailoverReport(spec)
                fanout = None
                if spec.recipients:
                    fanout = Fanout(stand_ins, server.dsn(), spec.recipients, timeout_s=spec.fanout_timeout_s)
                    await fanout.prepare(lab.gateways[0])
                reported = await _drive(spec, lab, nodes, workdir, report, fanout)
                await _settle(server, reported, report)
                _read_calls(lab, nodes, workdir, report)
                _read_record(server, reported, report)
                report.fanout = fanout.report if fanout else None
                return report


async def _drive(spec: FailoverSpec, lab: ClusterLab, nodes: list[AsteriskInstance], workdir: Path,
                 report: FailoverReport, fanout: Fanout | None) -> dict[str, str]:
    """Callers, reports, the fan-out and the kill (held until the fan-out is under way); the reported
    incidents' ids → the node that took them."""
    reported: dict[str, str] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_callers, spec, lab, workdir)
        nursery.start_soon(_reports, spec, lab, reported)
        if fanout:
            nursery.start_soon(fanout.run, lab.gateways[0], lab.gateways[1],
                               max(spec.kill_after_s - spec.fanout_lead_s, 0.0))
        await trio.sleep(spec.kill_after_s)
        if fanout:
            await fanout.wait_under_way()
        _kill_node_a(lab, nodes)
        report.killed_wall = time.time()
        if fanout:
            fanout.note_kill()
        nursery.start_soon(_watch_lost, lab, report)
    return reported


def _kill_node_a(lab: ClusterLab, nodes: list[AsteriskInstance]) -> None:
    """SIGKILL to A's gateway and A's Asterisk: the machine gone, as in a crash."""
    lab.gateways[0].kill()
    pid = sandbox.pid(sandbox.locate(nodes[0].cfg))
    if pid is not None:
        os.kill(pid, signal.SIGKILL)


async def _callers(spec: FailoverSpec, lab: ClusterLab, workdir: Path) -> None:
    """One sipp process placing ``calls_per_s × seconds`` callers through Kamailio; a caller whose node died
    gives up 8 s after its last unanswered message (``-recv_timeout``)."""
    work = workdir / "callers"
    work.mkdir(parents=True, exist_ok=True)
    xml = work / "caller.xml"
    xml.write_text(scenario.caller("112", "+77011234567", "Failover", talk_ms=spec.talk_ms, routed=True))
    calls = int(spec.calls_per_s * spec.seconds)
    cmd = [sipp.sipp_binary(), lab.proxy.target, "-sf", str(xml), "-i", "127.0.0.1", "-p", "0",
           "-r", str(spec.calls_per_s), "-m", str(calls), "-l", str(max(spec.calls_per_s * 8, 50)), "-nostdin",
           "-max_socket", "8192", "-recv_timeout", "8000", "-timeout", f"{int(spec.seconds) + 60}s",
           "-trace_logs", "-log_file", str(work / "caller.log")]
    with trio.move_on_after(spec.seconds + 90):
        await trio.run_process(cmd, cwd=work, check=False, capture_stdout=True, capture_stderr=True,
                               stdin=subprocess.DEVNULL)


async def _reports(spec: FailoverSpec, lab: ClusterLab, reported: dict[str, str]) -> None:
    """Police incidents reported by the dispatcher until the kill, on each node in turn."""
    if spec.reports_per_s <= 0:
        return
    deadline = trio.current_time() + spec.kill_after_s - 0.5
    n = 0
    while trio.current_time() < deadline:
        gateway = lab.gateways[n % 2]
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            reply = await client.post("/incidents", json={"service": "102", "category": "crime_in_progress",
                                                          "lat": 43.2389, "lon": 76.8897, "note": f"drill {n}"})
        if reply.status_code == 201:
            reported[str(reply.json()["id"])] = NAMES[n % 2]
        n += 1
        await trio.sleep(1 / spec.reports_per_s)


async def _watch_lost(lab: ClusterLab, report: FailoverReport) -> None:
    with trio.move_on_after(30):
        while True:
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    nodes = (await client.get(lab.gateways[1].url + "/health")).json()["nodes"]
                if any(n["node"] == NAMES[0] and not n["alive"] for n in nodes):
                    report.a_lost_on_b_s = time.time() - report.killed_wall
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await trio.sleep(0.1)


async def _settle(server: pg.PgServer, reported: dict[str, str], report: FailoverReport) -> None:
    """Until no incident is live and every reported incident's run finished (or ``SETTLE_S`` passed)."""
    with trio.move_on_after(SETTLE_S):
        while True:
            if await trio.to_thread.run_sync(_settled, server, list(reported)):
                return
            await trio.sleep(0.5)


def _settled(server: pg.PgServer, reported: list[str]) -> bool:
    store = PgStore(server.dsn(), schema_version=VERSION)
    try:
        marks = ",".join("?" * len(LIVE))
        if store._read(f"SELECT count(*) FROM incidents WHERE channel_id<>'' AND state IN ({marks})", LIVE)[0][0]:
            return False  # a call's incident still live (a report's stays "new" until a dispatcher takes it)
        return all(any(e.kind == "scenario_finished" for e in store.get(i).timeline) for i in reported)
    finally:
        store.close()


def _read_calls(lab: ClusterLab, nodes: list[AsteriskInstance], workdir: Path, report: FailoverReport) -> None:
    """Each caller's INVITE and answer (sipp's log) and the node that answered (Kamailio's log)."""
    uris = {node_uri(n): name for n, name in zip(nodes, NAMES, strict=True)}
    routed = lab.proxy.routed()
    moved = {call_id for _node, call_id, _status in lab.proxy.failed()}
    calls: dict[str, Call] = {}
    for line in sipp.parse_log(sipp.read_log(workdir / "callers" / "caller.log")):
        call_id = line.fields.get("callid", "")
        if line.kind == "INVITE":
            calls[call_id] = Call(call_id, line.wall)
        elif line.kind == "ANSWERED" and call_id in calls:
            calls[call_id].answered_wall = line.wall
    for call in calls.values():
        first = uris.get(routed.get(call.call_id, ""), "")
        other = NAMES[1] if first == NAMES[0] else NAMES[0]
        call.node = (other if call.call_id in moved else first) if call.answered_wall is not None else ""
    report.calls = sorted(calls.values(), key=lambda c: c.invite_wall)
    kill, talk_s = report.killed_wall, report.spec.talk_ms / 1000
    on_a = [c for c in report.calls if uris.get(routed.get(c.call_id, "")) == NAMES[0]]
    report.cut_on_a = sum(1 for c in on_a if c.answered_wall is not None and c.answered_wall < kill
                          < c.answered_wall + talk_s)
    report.in_setup_on_a = sum(1 for c in on_a if c.answered_wall is None and c.invite_wall < kill
                               and c.call_id not in moved)
    after = [c for c in report.calls if c.invite_wall >= kill and c.answered_wall is not None]
    if after:
        report.first_answer_on_b_s = min(c.answered_wall or 0.0 for c in after) - kill
        report.slowest_answer_after_kill_s = max((c.answered_wall or 0.0) - c.invite_wall for c in after)


def _read_record(server: pg.PgServer, reported: dict[str, str], report: FailoverReport) -> None:
    store = PgStore(server.dsn(), schema_version=VERSION)
    try:
        incidents = [store.get(str(i)) for (i,) in store._read("SELECT id FROM incidents")]
    finally:
        store.close()
    report.incidents = len(incidents)
    by_call = Counter(i.call_id for i in incidents if i.call_id)
    answered = [c for c in report.calls if c.answered_wall is not None]
    report.calls_without_incident = sum(1 for c in answered if by_call[c.call_id] == 0)
    report.calls_with_two = sum(1 for c in report.calls if by_call[c.call_id] > 1)
    report.left_live = sum(1 for i in incidents if i.channel_id and i.state in LIVE)
    report.closed_as_lost = sum(1 for i in incidents if any(e.kind == "call_lost" for e in i.timeline))
    found = {i.id: i for i in incidents}
    report.reported = len(reported)
    report.reported_missing = sum(1 for i in reported if i not in found)
    _read_runs([found[i] for i in reported if i in found], reported, report)


def _read_runs(runs: list[Incident], reported: dict[str, str], report: FailoverReport) -> None:
    kill = report.killed_wall
    taken: list[float] = []
    resumed: list[float] = []
    for incident in runs:
        kinds = [(e.kind, e.wall) for e in incident.timeline]
        finished_before = any(k == "scenario_finished" and w < kill for k, w in kinds)
        if reported[incident.id] == NAMES[0] and not finished_before:
            report.runs_on_a += 1
        taken += [e.wall - kill for e in incident.timeline if e.kind == "scenario_taken_over"]
        resumed += _first_step_after_takeover(incident, kill)
        steps = Counter((e.data.get("run"), e.data.get("step")) for e in incident.timeline
                        if e.kind == "step_started")
        notices = Counter((e.data.get("person"), e.data.get("channel"), e.data.get("attempt"))
                          for e in incident.timeline if e.kind == "notified")
        report.steps_twice += sum(n - 1 for n in steps.values() if n > 1)
        report.notices_twice += sum(n - 1 for n in notices.values() if n > 1)
        report.runs_unfinished += 0 if "scenario_finished" in (k for k, _ in kinds) else 1
    report.taken_over = len(taken)
    if taken:
        report.first_taken_over_s, report.last_taken_over_s = min(taken), max(taken)
    report.first_resumed_step_s = min(resumed, default=None)


def _first_step_after_takeover(incident: Incident, kill: float) -> list[float]:
    """Kill -> the first step of a run B took over (its next notice, acknowledgement deadline or end: when
    the run's own schedule says, from its last committed write); [] if none was taken over."""
    taken = next((e.wall for e in incident.timeline if e.kind == "scenario_taken_over"), None)
    if taken is None:
        return []
    after = [e.wall - kill for e in incident.timeline if e.wall >= taken and e.kind in RUN_STEPS]
    return after[:1]
