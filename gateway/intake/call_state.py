"""The life of one emergency call, as a table (pure: no I/O, no clock of its own).

Theory of operation: a call is in exactly one ``State``. Everything that happens to it, whether
Asterisk reports it (a Dial's progress, the caller back from an unanswered Dial, a hang-up) or the
gateway decides it (queued, matched to a position, handed to the dialplan, overflowed), is an event
given to ``CallLife.handle``. The table below says the next state and what the driver must do about
the change (``Action``); the driver (``intake.calls``, ``intake.dispatch``) does the I/O and never
sets call state itself, so one place says what a call may do next::

    NEW          menu_started -> MENU; queued -> QUEUED; adopted -> DIALLING | TALKING
    MENU         queued -> QUEUED
    RETURNED     queued -> QUEUED                                  (back from an unanswered Dial)
    QUEUED       matched -> HANDING_OFF            stop hold
    HANDING_OFF  handed_off -> DIALLING
                 hand_off_failed -> QUEUED         free + rest position, requeue, hold again
    HANDING_OFF, DIALLING, RINGING
                 ringing -> RINGING; answered -> TALKING
                 unanswered -> UNANSWERED          free position (rest it if it failed fast)
                 returned -> RETURNED              free position (its Dial result was missed)
    TALKING, UNANSWERED
                 returned -> RETURNED              (a caller back in Stasis is always served again)
    NEW, MENU, QUEUED, RETURNED
                 overflowed -> OVERFLOWED          stop hold, dequeue
    any but GONE failed_over -> FALLBACK           dequeue, free position
                 hung_up -> GONE                   dequeue, free position, stop serving

Events that race with a hang-up or arrive late from Asterisk (a Dial result outside a Dial, the
hand-off request's reply after Asterisk already reported the Dial, a second hang-up) change nothing
(``IGNORED``); a match that lost the race with a hang-up frees the position it took. Any other event
in a state that does not expect it is a bug in the driver: ``CallStateError``, which the driver logs
and answers by handing the caller to the fallback dialplan, which rings the dispatchers directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.errors import GatewayError

FAST_FAILURE_S = 2.0  # a Dial that fails this fast means a dead phone: rest the position


class State(enum.Enum):
    NEW = "new"
    MENU = "menu"
    QUEUED = "queued"
    HANDING_OFF = "handing_off"
    DIALLING = "dialling"
    RINGING = "ringing"
    TALKING = "talking"
    UNANSWERED = "unanswered"
    RETURNED = "returned"
    OVERFLOWED = "overflowed"
    FALLBACK = "fallback"
    GONE = "gone"


@dataclass(frozen=True)
class StopHold:
    """Cancel ringback and announcements: a hand-off or an overflow is under way."""


@dataclass(frozen=True)
class FreePosition:
    """The position this call held is free again; ``rest``: skip it for a moment (it failed to ring)."""

    position: str
    rest: bool = False


@dataclass(frozen=True)
class Requeue:
    """Back into the queue at the call's original place."""

    at: float


@dataclass(frozen=True)
class Hold:
    """Ringback again while it waits."""


@dataclass(frozen=True)
class Dequeue:
    """Out of the queue."""


@dataclass(frozen=True)
class StopServing:
    """Cancel the call's own tasks: the caller is gone."""


Action = StopHold | FreePosition | Requeue | Hold | Dequeue | StopServing


class CallStateError(GatewayError):
    """The driver gave the call an event its state does not allow (a bug, never the caller's doing)."""


@dataclass(frozen=True)
class MenuStarted:
    pass


@dataclass(frozen=True)
class Queued:
    at: float


@dataclass(frozen=True)
class Matched:
    position: str
    at: float


@dataclass(frozen=True)
class HandedOff:
    pass


@dataclass(frozen=True)
class HandOffFailed:
    pass


@dataclass(frozen=True)
class Ringing:
    pass


@dataclass(frozen=True)
class Answered:
    at: float


@dataclass(frozen=True)
class Unanswered:
    status: str
    at: float


@dataclass(frozen=True)
class Returned:
    pass


@dataclass(frozen=True)
class Overflowed:
    pass


@dataclass(frozen=True)
class FailedOver:
    pass


@dataclass(frozen=True)
class HungUp:
    pass


@dataclass(frozen=True)
class Adopted:
    """After a restart: the caller is already in a Dial to ``position`` (ringing, or talking)."""

    position: str
    answered: bool
    at: float


Event = (MenuStarted | Queued | Matched | HandedOff | HandOffFailed | Ringing | Answered | Unanswered | Returned
         | Overflowed | FailedOver | HungUp | Adopted)
S = State
DIALLED = frozenset({S.HANDING_OFF, S.DIALLING, S.RINGING})  # Asterisk may report the Dial before our request returns
WAITING = frozenset({S.NEW, S.MENU, S.QUEUED, S.RETURNED})
HANDED = frozenset({S.HANDING_OFF, S.DIALLING, S.RINGING, S.TALKING, S.UNANSWERED})  # out of Stasis, in a Dial
FINAL = frozenset({S.OVERFLOWED, S.FALLBACK, S.GONE})

# (state, event type) -> next state. Actions that depend on the call's data are added by ``handle``.
TABLE: dict[tuple[State, type], State] = {
    (S.NEW, MenuStarted): S.MENU,
    **{(s, Queued): S.QUEUED for s in (S.NEW, S.MENU, S.RETURNED)},
    (S.QUEUED, Matched): S.HANDING_OFF,
    (S.HANDING_OFF, HandedOff): S.DIALLING,
    (S.HANDING_OFF, HandOffFailed): S.QUEUED,
    **{(s, Ringing): S.RINGING for s in DIALLED},
    **{(s, Answered): S.TALKING for s in DIALLED},
    **{(s, Unanswered): S.UNANSWERED for s in DIALLED},
    **{(s, Returned): S.RETURNED for s in (*DIALLED, S.TALKING, S.UNANSWERED)},  # back in Stasis: serve it
    **{(s, Overflowed): S.OVERFLOWED for s in WAITING},
    (S.NEW, Adopted): S.DIALLING,
    **{(s, FailedOver): S.FALLBACK for s in S if s not in FINAL},
    **{(s, HungUp): S.GONE for s in S if s is not S.GONE},
}
# Late or raced events that change nothing (Asterisk's view and ours meet a moment apart): a Dial result
# outside a Dial is an earlier attempt's, arriving after the caller came back or left.
DIAL_RESULTS = (Ringing, Answered, Unanswered)
IGNORED: frozenset[tuple[State, type]] = frozenset({
    *((s, e) for s in FINAL for e in (Matched, HandedOff, HandOffFailed, Returned, Overflowed, FailedOver, Queued)),
    *((s, e) for s in S if s not in DIALLED for e in DIAL_RESULTS),
    (S.GONE, HungUp),
    # The hand-off request's reply came after Asterisk's own report of the Dial: the Dial is the truth.
    *((s, e) for s in (S.RINGING, S.TALKING, S.UNANSWERED, S.RETURNED) for e in (HandedOff, HandOffFailed)),
})


class CallLife:
    """One call's state and the facts the table needs (the position it holds, when it was queued)."""

    def __init__(self) -> None:
        self.state = State.NEW
        self.position: str | None = None  # the position rung, kept while talking
        self.ring_started_at: float | None = None
        self.first_queued_at: float | None = None
        self.queued_at: float | None = None  # its place in the queue (kept when it comes back)
        self.answered_at: float | None = None

    @property
    def gone(self) -> bool:
        return self.state is S.GONE

    @property
    def handed(self) -> bool:
        """In the dialplan's Dial (out of Stasis until it comes back), or on its way there."""
        return self.state in HANDED

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def handle(self, event: Event) -> list[Action]:
        """Apply ``event``; the actions the driver must take. Raises CallStateError for a driver bug."""
        key = (self.state, type(event))
        if key in IGNORED:
            return self._raced(event)
        next_state = TABLE.get(key)
        if next_state is None:
            raise CallStateError(f"{type(event).__name__} is not expected in state {self.state.value}")
        if isinstance(event, Adopted) and event.answered:
            next_state = S.TALKING
        actions = self._actions(event)
        self.state = next_state
        return actions

    def _raced(self, event: Event) -> list[Action]:
        if isinstance(event, Matched) and self.gone:  # matched as it hung up: give the position back
            return [FreePosition(event.position)]
        return []

    def _actions(self, event: Event) -> list[Action]:
        match event:
            case Queued(at=at):
                self.first_queued_at = self.first_queued_at if self.first_queued_at is not None else at
                self.queued_at = self.queued_at if self.queued_at is not None else at
            case Matched(position=position, at=at):
                self.position, self.ring_started_at = position, at
                return [StopHold()]
            case HandOffFailed():
                at = self.queued_at if self.queued_at is not None else 0.0
                return [*self._free(rest=True), Requeue(at), Hold()]
            case Answered(at=at):
                self.answered_at = at
            case Unanswered(at=at):
                return self._free(rest=at - (self.ring_started_at or 0.0) < FAST_FAILURE_S)
            case Returned():
                return self._free()  # its Dial result was missed, or it came back after talking
            case Overflowed():
                return [StopHold(), Dequeue()]
            case Adopted(position=position, answered=answered, at=at):
                self.position = position
                self.answered_at = at if answered else None
            case FailedOver():
                return [Dequeue(), *self._free()]
            case HungUp():
                return [Dequeue(), *self._free(), StopServing()]
        return []

    def _free(self, rest: bool = False) -> list[Action]:
        position, self.position = self.position, None
        return [FreePosition(position, rest)] if position else []
