"""Real tier, issue 14: the short failover drill (``sim.failover``; the long one is ``sim/drills/failover.toml``).

Two nodes on one PostgreSQL behind Kamailio, 8 callers a second and police incidents escalating on both, node
A's gateway and Asterisk SIGKILLed 5 s in. Nothing recorded is lost: every answered call has its incident
exactly once and none is left live (the calls cut on A are closed by B), every reported incident is there,
A's runs go on on B within the lease with no step or notice twice, and new callers reach B within 2 s."""

from __future__ import annotations

from pathlib import Path

from sim.failover import FailoverSpec, run_failover
from tests.drills.test_real_cluster import require_cluster_lab

SPEC = FailoverSpec(name="short", calls_per_s=8, seconds=12, kill_after_s=5, talk_ms=1500, reports_per_s=1.0,
                    lease_s=2.0)


async def test_short_failover_drill_loses_nothing(tmp_path: Path) -> None:
    require_cluster_lab()
    report = await run_failover(SPEC, tmp_path)
    print("\n".join(report.lines()))
    assert len(report.calls) == SPEC.calls_per_s * SPEC.seconds
    assert report.answered() == len(report.calls) - report.in_setup_on_a, tmp_path  # every other caller answered
    assert report.answered("node-a") and report.answered("node-b")
    assert report.lossless(), report.lines()
    assert report.closed_as_lost >= report.cut_on_a
    assert report.first_answer_on_b_s is not None and report.first_answer_on_b_s <= 2.0
    assert report.runs_on_a >= 1 and report.taken_over == report.runs_on_a
    assert report.last_taken_over_s is not None and report.last_taken_over_s <= SPEC.lease_s + 2.0
    assert report.a_lost_on_b_s is not None
