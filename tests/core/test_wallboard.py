"""The wall board's figures from incident summaries."""

from __future__ import annotations

import msgspec

from gateway.incident.records import IncidentSummary
from gateway.incident.wallboard import figures

NOW = 1_800_000_000.0


def call(ago: float, state: str, answer_s: float | None = None, source: str = "call") -> IncidentSummary:
    return IncidentSummary(id=f"i{ago}", service="112", state=state, created_wall=NOW - ago,  # type: ignore[arg-type]
                           number="+77011234567", category="", position="", source=source,  # type: ignore[arg-type]
                           answer_s=answer_s)


def test_answered_within_the_sla_among_answered_and_abandoned_calls_of_the_last_hour() -> None:
    board = figures([call(100, "closed", 4.0), call(200, "closed", 14.9), call(300, "answered", 16.0),
                     call(400, "closed"),  # abandoned
                     call(50, "queued"), call(20, "ringing"),  # still waiting: not in the percentage
                     call(500, "overflowed"), call(60, "new", source="alarm"),
                     call(4000, "closed", 1.0)],  # before the window
                    NOW, sla_s=15.0)
    assert (board.calls, board.answered, board.answered_within_sla, board.abandoned) == (7, 3, 2, 1)
    assert board.answered_within_sla_pct == 50.0  # 2 of 4 decided
    assert (board.waiting, board.longest_wait_s, board.overflowed, board.reports) == (2, 50.0, 1, 1)


def test_an_empty_hour_has_no_percentage_rather_than_zero_or_a_hundred() -> None:
    board = figures([call(10, "queued")], NOW, sla_s=15.0)
    assert board.answered_within_sla_pct is None and board.waiting == 1


def test_the_1402_line_is_counted_apart_from_the_emergency_calls() -> None:
    line = [msgspec.structs.replace(c, id=f"n{n}", service="1402")
            for n, c in enumerate([call(30, "closed", 40.0), call(80, "closed"), call(10, "queued")])]
    board = figures([call(100, "closed", 4.0), call(20, "ringing"), *line], NOW, sla_s=15.0)
    assert (board.calls, board.answered, board.abandoned, board.waiting, board.longest_wait_s) == (2, 1, 0, 1, 20.0)
    assert board.answered_within_sla_pct == 100.0  # a slow 1402 answer is not an emergency's
    assert board.line_1402 is not None
    assert (board.line_1402.calls, board.line_1402.answered, board.line_1402.abandoned) == (3, 1, 1)
    assert (board.line_1402.waiting, board.line_1402.longest_wait_s) == (1, 10.0)
    assert board.line_1402.answered_within_sla_pct == 0.0
