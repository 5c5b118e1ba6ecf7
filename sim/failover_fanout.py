"""The failover drill's Exercise fan-out (issue 14): sent through node A shortly before A is killed, finished by
node B, counted at the stand-ins every node sends to (``sim.cluster_fanout``).

Theory: both nodes claim the alert's jobs from PostgreSQL's ``warnings.jobs``. When A dies, the jobs it holds
claimed and unsettled ("sending") are the only ones whose message may already have gone: B adopts them once
A's lease ends and sends them again when it cannot tell. So a recipient may be warned twice only if A held
their job at the kill, and nobody may be missed.
"""

from __future__ import annotations

import time

import trio

from sim.cluster_fanout import (
    StandIns,
    approve_and_send,
    audience,
    audit,
    draft_alert,
    import_audience,
    in_flight,
    job_owners,
    wait_sent,
)
from sim.failover_report import NAMES, FanoutReport
from sim.lab import GatewayProcess

UNDER_WAY_S = 15.0  # the kill waits at most this long past its time for the fan-out's first messages
SETTLE_S = 0.3  # after the kill: what A wrote before it died reaches the stand-ins and PostgreSQL
EVERY_S = 0.05  # how often the watchers look at the stand-ins (``StandIns.delivered()`` of 90,000 recipients
# would cost ~0.1 s a time and starve the stand-ins in this same process: they use the cheap counts)


class Fanout:
    """One Exercise through the drill: ``prepare`` before the callers; ``run`` (in the drill's nursery) sends it
    through A when told, waits for the kill, then for B to finish, and fills ``report``; ``wait_under_way``
    holds the kill until messages are going out; ``note_kill`` is called right after it."""

    def __init__(self, stand_ins: StandIns, dsn: str, recipients: int, *, timeout_s: float) -> None:
        self.stand_ins = stand_ins
        self.dsn = dsn
        self.medeu = audience(recipients)
        self.report = FanoutReport(recipients=recipients, audience=len(self.medeu))
        self.timeout_s = timeout_s
        self.alert_id = ""
        self.sent_at: float | None = None  # Trio's clock
        self.killed_at = 0.0
        self.killed_wall = 0.0
        self.killed = trio.Event()

    async def prepare(self, node_a: GatewayProcess) -> None:
        """Import the recipients and draft the alert through A's CLI (a 100,000-line import takes a while:
        done before the callers, not during them)."""
        started = trio.current_time()
        await import_audience(node_a, self.report.recipients)
        self.report.import_s = trio.current_time() - started
        self.alert_id = await draft_alert(node_a)

    async def wait_under_way(self) -> None:
        """Until the alert is sending and the stand-ins have its first message (at most ``UNDER_WAY_S``)."""
        with trio.move_on_after(UNDER_WAY_S):
            while self.sent_at is None or not self.stand_ins.reached():
                await trio.sleep(0.01)

    def note_kill(self) -> None:
        """Called right after A's SIGKILL: what had gone out by then."""
        self.killed_at, self.killed_wall = trio.current_time(), time.time()
        self.report.at_kill = self.stand_ins.messages()
        if self.sent_at is not None:
            self.report.sent_to_kill_s = self.killed_at - self.sent_at
        self.killed.set()

    async def run(self, node_a: GatewayProcess, node_b: GatewayProcess, send_after_s: float) -> None:
        """Send through A after ``send_after_s``; once A is killed, wait for B to finish and count."""
        await trio.sleep(send_after_s)
        approving = trio.current_time()
        await approve_and_send(node_a, self.alert_id)
        self.sent_at = trio.current_time()
        self.report.approve_s = self.sent_at - approving
        await self.killed.wait()
        await trio.sleep(SETTLE_S)
        orphans = await trio.to_thread.run_sync(in_flight, self.dsn, NAMES[0])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_adopted, orphans)
            nursery.start_soon(self._watch_reached)
            with trio.move_on_after(self.timeout_s):
                await wait_sent(node_b, self.alert_id)
                self.report.finished_s = trio.current_time() - self.killed_at
            nursery.cancel_scope.cancel()
        await self._count(node_b, orphans)

    async def _watch_adopted(self, orphans: dict[str, str]) -> None:
        """Until one of A's in-flight jobs reaches the stand-ins again: B's first message of A's work."""
        before = self.stand_ins.delivered_to(orphans)
        while not any(n > before[ref] for ref, n in self.stand_ins.delivered_to(orphans).items()):
            await trio.sleep(EVERY_S)
        self.report.first_of_a_on_b_s = trio.current_time() - self.killed_at

    async def _watch_reached(self) -> None:
        while self.stand_ins.reached() < len(self.medeu):
            await trio.sleep(EVERY_S)
        self.report.all_reached_s = trio.current_time() - self.killed_at

    async def _count(self, node_b: GatewayProcess, orphans: dict[str, str]) -> None:
        r, counts = self.report, self.stand_ins.delivered()
        doubled = {ref for ref, n in counts.items() if n > 1}
        r.in_flight = len(orphans)
        r.delivered_once = sum(1 for ref in self.medeu if counts[ref] == 1)
        r.missed = sum(1 for ref in self.medeu if not counts[ref])
        r.duplicates = len(doubled)
        r.duplicates_outside = len(doubled - orphans.keys())
        trail = await audit(node_b, self.alert_id)
        recovered = [e for e in trail if e["kind"] == "recovered"]
        r.resent = sum(e["detail"].get("outcome_unknown_resent", 0) for e in recovered)
        r.resent_before_kill = sum(e["detail"].get("outcome_unknown_resent", 0) for e in recovered
                                   if e["at"] < self.killed_wall)
        adopted = [e["at"] for e in recovered if e["at"] >= self.killed_wall]
        r.adopted_s = min(adopted) - self.killed_wall if adopted else None
        owners = await trio.to_thread.run_sync(job_owners, self.dsn, self.alert_id)
        r.jobs_a, r.jobs_b = owners[NAMES[0]], owners[NAMES[1]]
