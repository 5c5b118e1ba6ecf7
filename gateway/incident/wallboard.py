"""The supervisors' wall board: how the last hour went, from the incidents' summaries (pure).

``answered_within_sla_pct`` follows NENA's call-answering standard: the share of calls answered within
``sla_s`` (15 s) among the calls that were answered or abandoned in the window; calls still waiting are
counted in ``waiting`` and ``longest_wait_s`` instead, so the figure does not move while they wait.
"""

from __future__ import annotations

import msgspec

from gateway.incident.records import IncidentSummary

WAITING = ("new", "queued", "ringing")
CALLS = ("call", "fallback")  # a call the fallback dialplan served is a call, registered afterwards


class Board(msgspec.Struct, kw_only=True):
    window_s: float
    sla_s: float
    calls: int  # calls that arrived in the window
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


def figures(incidents: list[IncidentSummary], now: float, sla_s: float, window_s: float = 3600.0) -> Board:
    recent = [i for i in incidents if i.created_wall >= now - window_s]
    calls = [i for i in recent if i.source in CALLS]
    answered = [i for i in calls if i.answer_s is not None]
    within = [i for i in answered if i.answer_s is not None and i.answer_s <= sla_s]
    abandoned = [i for i in calls if i.answer_s is None and i.state == "closed"]
    waiting = [i for i in calls if i.state in WAITING]
    decided = len(answered) + len(abandoned)
    longest = max((now - i.created_wall for i in waiting), default=0.0)
    return Board(window_s=window_s, sla_s=sla_s, calls=len(calls), answered=len(answered),
                 answered_within_sla=len(within),
                 answered_within_sla_pct=round(100.0 * len(within) / decided, 1) if decided else None,
                 abandoned=len(abandoned), overflowed=sum(1 for i in calls if i.state in ("overflowed", "fallback")),
                 waiting=len(waiting), longest_wait_s=round(longest, 1),
                 reports=len(recent) - len(calls))
