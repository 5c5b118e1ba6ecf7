"""The call-back list (pure: no I/O, no clock of its own).

Theory of operation: every call that ended before a dispatcher answered it, from a number we can
dial, is an ``Abandoned`` row (kept by ``incident.callback_table``). ``entries`` turns the open rows
into the list a dispatcher works from: one ``Entry`` per number (a caller who tried three times is
one call back, with a count and the three incidents), the most urgent category first (the highest
priority of that number's calls), then the longest waiting (its first abandoned call). A call-back's
Dial result is an ``Outcome``; only ``answered`` takes the number off the list, every other outcome
is counted on the entry and leaves it for the next attempt. With automatic call-back on, the gateway
itself calls an entry nobody has tried once no dispatcher is free (``auto_due``). A caller who calls
again and is answered (by a dispatcher, the backup centre, the fallback) is reached too: ``called_again``
says which listed calls that later answered call takes off the list.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

Outcome = Literal["answered", "busy", "no_answer", "failed", "cancelled", "position_unanswered"]
# Asterisk's DIALSTATUS of the caller's leg -> our outcome (anything unknown is "failed").
DIAL_OUTCOMES: dict[str, Outcome] = {
    "ANSWER": "answered", "BUSY": "busy", "NOANSWER": "no_answer", "CANCEL": "cancelled",
    "CONGESTION": "failed", "CHANUNAVAIL": "failed", "DONTCALL": "failed", "TORTURE": "failed",
    "INVALIDARGS": "failed",
}
NOT_YET = frozenset({"", "RINGING", "PROGRESS", "PROCEEDING"})
DIALLABLE = re.compile(r"^\+?[0-9]{3,15}$")  # a normalised number; anything else is never dialled


class Abandoned(msgspec.Struct, frozen=True, kw_only=True):
    """One call that ended unanswered: its incident, number, category and priority, and when."""

    incident_id: str
    number: str
    service: str
    category: str = ""
    priority: int = 1
    wall: float
    attempts: int = 0
    outcome: str = ""  # the last call-back attempt's outcome ("" before any)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One number to call back (the API's body): ``count`` abandoned calls, ``incidents`` newest first."""

    number: str
    service: str
    category: str
    priority: int
    first_wall: float
    last_wall: float
    count: int
    incidents: list[str]
    attempts: int = 0
    last_outcome: str = ""


class Answered(msgspec.Struct, frozen=True, kw_only=True):
    """A call that was answered: its incident, number and when it arrived."""

    incident_id: str
    number: str
    created_wall: float


def called_again(rows: list[Abandoned], answered: list[Answered]) -> dict[str, str]:
    """The listed calls a later call of the same number reached, each with the incident that was answered
    (the first such): a call that arrived once the listed one had been abandoned, and is not that same
    incident (its own call-back). Listed incident id -> answering incident id."""
    reached = {}
    for row in rows:
        later = sorted((a.created_wall, a.incident_id) for a in answered
                       if a.number == row.number and a.incident_id != row.incident_id and a.created_wall >= row.wall)
        if later:
            reached[row.incident_id] = later[0][1]
    return reached


def diallable(number: str) -> bool:
    """A number we may dial back (a withheld or repaired number never is)."""
    return bool(DIALLABLE.match(number))


def entries(rows: list[Abandoned]) -> list[Entry]:
    """The list in call-back order: one entry per number, highest priority, then oldest first."""
    by_number: dict[str, list[Abandoned]] = {}
    for row in rows:
        if diallable(row.number):
            by_number.setdefault(row.number, []).append(row)
    merged = [_merge(number, calls) for number, calls in by_number.items()]
    return sorted(merged, key=lambda e: (-e.priority, e.first_wall, e.number))


def _merge(number: str, calls: list[Abandoned]) -> Entry:
    calls = sorted(calls, key=lambda r: (r.wall, r.incident_id), reverse=True)  # newest first
    urgent = max(calls, key=lambda r: (r.priority, r.wall))
    tried = max(calls, key=lambda r: (r.attempts, r.wall))
    return Entry(number=number, service=urgent.service, category=urgent.category, priority=urgent.priority,
                 first_wall=calls[-1].wall, last_wall=calls[0].wall, count=len(calls),
                 incidents=[r.incident_id for r in calls], attempts=tried.attempts, last_outcome=tried.outcome)


def find(listed: list[Entry], key: str) -> Entry | None:
    """The entry for ``key``: its number (with or without the leading +) or one of its incident ids."""
    bare = key.lstrip("+")
    for entry in listed:
        if entry.number.lstrip("+") == bare or key in entry.incidents:
            return entry
    return None


def outcome_of(dialstatus: str) -> Outcome | None:
    """What a Dial result of the caller's leg means; None while it is still in progress."""
    if dialstatus in NOT_YET:
        return None
    return DIAL_OUTCOMES.get(dialstatus, "failed")


def outcome_of_cause(cause: int) -> Outcome:
    """Why a leg we dialled ended before it was answered (its Q.850 hang-up cause)."""
    if cause == 17:  # user busy
        return "busy"
    if cause in (16, 18, 19, 21):  # normal clearing, no user responding, no answer, rejected
        return "no_answer"
    return "failed"


def auto_due(entry: Entry, now: float, after_s: float, position_free: bool) -> bool:
    """Whether the gateway calls this number back itself now: automatic call-back is on (``after_s`` > 0),
    no dispatcher is free to do it, the last call was abandoned at least ``after_s`` ago, and nobody has
    tried yet (one automatic attempt per entry: a caller who does not answer is left to the dispatchers)."""
    return after_s > 0 and not position_free and entry.attempts == 0 and now - entry.last_wall >= after_s


def reached(outcome: Outcome) -> bool:
    """Whether this outcome takes the number off the list (the caller answered)."""
    return outcome == "answered"
