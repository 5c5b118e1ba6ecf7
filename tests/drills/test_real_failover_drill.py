"""Real tier, issue 14: the short failover drill (``sim.failover``; the long one is ``sim/drills/failover.toml``).

Two nodes on one PostgreSQL behind Kamailio, 8 callers a second, police incidents escalating on both and an
Exercise to 2,700 of 3,000 recipients going out through node A when A's gateway and Asterisk are SIGKILLed
5 s in. Nothing recorded is lost: every answered call has its incident exactly once and none is left live (the
calls cut on A are closed by B), every reported incident is there, A's runs go on on B within the lease with
no step or notice twice, new callers reach B within 2 s, and B finishes the fan-out with nobody missed and
only the jobs A held in flight, at most, sent twice."""

from __future__ import annotations

from pathlib import Path

from sim.failover import FailoverSpec, run_failover
from tests.drills.test_real_cluster import require_cluster_lab

# The fan-out paced at 100 messages/s per channel and node (1,350 e-mails: ~7 s with both nodes), so the kill,
# at most 3 s after ``approve --send`` answered (less as that answers slower), catches it half-way.
SPEC = FailoverSpec(name="short", calls_per_s=8, seconds=12, kill_after_s=5, talk_ms=1500, reports_per_s=1.0,
                    lease_s=2.0, recipients=3000, fanout_lead_s=3.0, fanout_per_s=100, fanout_timeout_s=60)
MARGIN_S = 2.0  # CI runs on two loaded cores: the lease's end is noticed on the next poll, give or take


async def test_short_failover_drill_loses_nothing(tmp_path: Path) -> None:
    require_cluster_lab()
    report = await run_failover(SPEC, tmp_path)
    lines = "\n".join(report.lines())
    print(lines)
    assert len(report.calls) == SPEC.calls_per_s * SPEC.seconds
    assert report.answered() == len(report.calls) - report.in_setup_on_a, f"callers unanswered: {lines} ({tmp_path})"
    assert report.answered("node-a") and report.answered("node-b"), lines
    assert report.lossless(), lines
    assert report.closed_as_lost >= report.cut_on_a, lines
    assert report.first_answer_on_b_s is not None and report.first_answer_on_b_s <= 2.0, \
        f"kill -> first call answered on B over 2 s: {lines}"
    assert report.runs_on_a >= 1 and report.taken_over == report.runs_on_a, f"A's runs not all taken over: {lines}"
    assert report.last_taken_over_s is not None and report.last_taken_over_s <= SPEC.lease_s + MARGIN_S, \
        f"A's runs taken over later than the lease + {MARGIN_S:g} s: {lines}"
    assert report.a_lost_on_b_s is not None, lines
    fanout = report.fanout
    assert fanout is not None
    assert fanout.in_progress, f"the kill did not catch the fan-out half-way: {lines}"
    assert fanout.finished_s is not None, f"B did not finish the fan-out within {SPEC.fanout_timeout_s:g} s: {lines}"
    assert fanout.missed == 0, f"recipients missed: {lines}"
    assert fanout.duplicates <= fanout.in_flight and not fanout.duplicates_outside, \
        f"more sent twice than A had in flight: {lines}"
    if fanout.in_flight:  # B adopts A's unsettled jobs once A's lease ends, and sends them first
        assert fanout.adopted_s is not None and fanout.adopted_s <= SPEC.lease_s + MARGIN_S, \
            f"B adopted A's fan-out work later than the lease + {MARGIN_S:g} s: {lines}"
        assert fanout.first_of_a_on_b_s is not None and fanout.first_of_a_on_b_s <= SPEC.lease_s + 2 * MARGIN_S, \
            f"B sent A's unsettled work late (behind the rest of the queue?): {lines}"
