"""The supervisors' wall board: how the last hour went, from the incidents' summaries (pure).

``answered_within_sla_pct`` follows NENA's call-answering standard: the share of calls answered within
``sla_s`` (15 s) among the calls that were answered or abandoned in the window; calls still waiting are
counted in ``waiting`` and ``longest_wait_s`` instead, so the figure does not move while they wait.
The board's figures are the 102/112 emergency calls'; the 1402 line's calls are counted apart
(``line_1402``), so a busy non-emergency line never hides a slow answer to an emergency.
"""

from __future__ import annotations

import msgspec

from gateway.incident.nodes import NodeState
from gateway.incident.records import IncidentSummary

WAITING = ("new", "queued", "ringing")
CALLS = ("call", "fallback")  # a call the fallback dialplan served is a call, registered afterwards
LINE_1402 = "1402"


class LineFigures(msgspec.Struct, kw_only=True):
    """One line's calls in the window (the 1402 line's, on the board)."""

    calls: int
    answered: int
    answered_within_sla: int
    answered_within_sla_pct: float | None  # None: nothing answered or abandoned yet
    abandoned: int
    waiting: int
    longest_wait_s: float


class Board(msgspec.Struct, kw_only=True):
    window_s: float
    sla_s: float
    calls: int  # 102/112 calls that arrived in the window
    answered: int
    answered_within_sla: int
    answered_within_sla_pct: float | None  # None: nothing answered or abandoned yet
    abandoned: int  # the caller hung up before a dispatcher answered
    overflowed: int  # sent to the backup centre or the fallback dialplan
    waiting: int
    longest_wait_s: float
    reports: int  # incidents from alarms, Telegram, SMS and the API in the window
    positions: dict[str, str] = {}
    scenario_runs: int = 0
    sla_breaches: int = 0
    line_1402: LineFigures | None = None  # the 1402 line's calls, counted apart from the above
    nodes: list[NodeState] = []  # every gateway node and what it holds (``incident.nodes``)


def _line(calls: list[IncidentSummary], now: float, sla_s: float) -> LineFigures:
    answered = [i for i in calls if i.answer_s is not None]
    within = [i for i in answered if i.answer_s is not None and i.answer_s <= sla_s]
    abandoned = [i for i in calls if i.answer_s is None and i.state == "closed"]
    waiting = [i for i in calls if i.state in WAITING]
    decided = len(answered) + len(abandoned)
    return LineFigures(calls=len(calls), answered=len(answered), answered_within_sla=len(within),
                       answered_within_sla_pct=round(100.0 * len(within) / decided, 1) if decided else None,
                       abandoned=len(abandoned), waiting=len(waiting),
                       longest_wait_s=round(max((now - i.created_wall for i in waiting), default=0.0), 1))


def figures(incidents: list[IncidentSummary], now: float, sla_s: float, window_s: float = 3600.0) -> Board:
    recent = [i for i in incidents if i.created_wall >= now - window_s]
    calls = [i for i in recent if i.source in CALLS]
    emergency = _line([i for i in calls if i.service != LINE_1402], now, sla_s)
    return Board(window_s=window_s, sla_s=sla_s, calls=emergency.calls, answered=emergency.answered,
                 answered_within_sla=emergency.answered_within_sla,
                 answered_within_sla_pct=emergency.answered_within_sla_pct, abandoned=emergency.abandoned,
                 overflowed=sum(1 for i in calls if i.state in ("overflowed", "fallback")),
                 waiting=emergency.waiting, longest_wait_s=emergency.longest_wait_s,
                 reports=len(recent) - len(calls),
                 line_1402=_line([i for i in calls if i.service == LINE_1402], now, sla_s))
