"""CEL events grouped into calls, and what happened on each call the fallback dialplan served. Pure.

Theory of operation: every channel of one call shares its ``linkedid``, the caller's uniqueid (the legs
the dialplan rings inherit it). The dialplan marks a call it rings the dispatchers for itself with the
user event ``ecgw_fallback`` on the caller's channel, carrying the service, the incident id the dialplan
named the call by, the caller's presentation and SIP Call-ID. A call is over when the caller's channel
hangs up or its ``LINKEDID_END`` comes; then, if it was marked, ``take_ended`` hands it out as a
``FallbackCall``: arrival (the caller's CHAN_START), the first leg that answered and when, the end and
its cause. A call whose log stops without an end (Asterisk killed) is handed out once nothing was
logged about it for ``stale_s``, with no end; an unmarked call is forgotten when it ends.

``resume_offset`` is where a reader started afresh (after a restart) must begin so that no call still
open loses its first rows: the first row of every open marked call, and of every unmarked call young
enough to be marked yet (the dialplan marks a call milliseconds after it arrives, or much later when
a call the gateway served falls back, and such a call has its incident already).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from gateway.protocols.cel import CelEvent

MARK_EVENT = "ecgw_fallback"
STALE_S = 4 * 3600.0
MARK_WITHIN_S = 60.0


class FallbackCall(msgspec.Struct, frozen=True, kw_only=True):
    """A call the fallback dialplan served, as the CEL log tells it (times in seconds since the epoch)."""

    linked_id: str
    unique_id: str  # the caller's channel (its ARI channel id)
    incident_id: str  # as the dialplan named it ("" if the mark did not say)
    service: str
    presentation: str
    call_id: str
    caller_channel: str
    number: str
    name: str
    arrived_wall: float
    fallback_wall: float
    legs: int  # dispatcher (and backup) phones rung
    answered_wall: float | None = None
    answered_by: str = ""  # the channel of the leg that answered
    ended_wall: float | None = None  # None: the log stopped before the call ended
    hangup_cause: int | None = None
    hung_up_by: str = ""  # the channel that hung up first, as Asterisk says
    first_offset: int = 0


@dataclass
class _Call:
    linked_id: str
    first_offset: int
    first_wall: float
    last_wall: float
    starts: dict[str, float] = field(default_factory=dict)  # CHAN_START per uniqueid
    mark: CelEvent | None = None
    answer: CelEvent | None = None
    hangup: CelEvent | None = None
    legs: set[str] = field(default_factory=set)
    over: bool = False


class Calls:
    """Groups CEL events by call (``add``) and hands out the marked calls that ended (``take_ended``)."""

    def __init__(self, stale_s: float = STALE_S, mark_within_s: float = MARK_WITHIN_S) -> None:
        self.stale_s = stale_s
        self.mark_within_s = mark_within_s
        self.open: dict[str, _Call] = {}
        self._ended: list[FallbackCall] = []
        self.newest_wall = 0.0

    def add(self, event: CelEvent) -> None:
        call = self.open.get(event.linked_id)
        if call is None:
            if event.kind == "LINKEDID_END":
                return  # the end of a call whose rows were all before where we started
            call = self.open[event.linked_id] = _Call(event.linked_id, event.offset, event.wall, event.wall)
        call.last_wall = max(call.last_wall, event.wall)
        self.newest_wall = max(self.newest_wall, event.wall)
        _note(call, event)
        if call.over:
            del self.open[event.linked_id]
            if call.mark is not None:
                self._ended.append(_fallback_call(call))

    def take_ended(self, now_wall: float) -> list[FallbackCall]:
        """Marked calls that ended (or went quiet for ``stale_s`` before ``now_wall``) since the last take."""
        for linked_id, call in list(self.open.items()):
            if call.last_wall < now_wall - self.stale_s:
                del self.open[linked_id]
                if call.mark is not None:
                    self._ended.append(_fallback_call(call))
        ended, self._ended = self._ended, []
        return ended

    def in_progress(self) -> list[FallbackCall]:
        """Marked calls going on (no end logged yet), as far as the log tells them now."""
        return [_fallback_call(call) for call in self.open.values() if call.mark is not None]

    def resume_offset(self, consumed: int) -> int:
        """The offset to read again from after a restart (``consumed``: just past the last row added)."""
        young = self.newest_wall - self.mark_within_s
        pinned = [c.first_offset for c in self.open.values() if c.mark is not None or c.first_wall >= young]
        return min([consumed, *pinned])

    def rebase(self) -> None:
        """The log was replaced (rotated or truncated): open calls go on in the new file, from its start."""
        for call in self.open.values():
            call.first_offset = 0


def _note(call: _Call, event: CelEvent) -> None:
    caller = call.mark.unique_id if call.mark is not None else call.linked_id
    if event.kind == "CHAN_START":
        call.starts.setdefault(event.unique_id, event.wall)
    elif event.kind == "USER_DEFINED" and event.user_type == MARK_EVENT and call.mark is None:
        call.mark = event
        caller = event.unique_id
    elif event.kind == "ANSWER" and event.unique_id != caller and call.answer is None:
        call.answer = event
    elif event.kind == "HANGUP" and event.unique_id == caller:
        call.hangup, call.over = event, True
    elif event.kind == "LINKEDID_END":
        call.over = True
    if event.unique_id != caller and event.kind == "CHAN_START":
        call.legs.add(event.unique_id)


def _fallback_call(call: _Call) -> FallbackCall:
    mark = call.mark
    assert mark is not None
    service, incident_id, presentation, call_id = (_mark_words(mark) + ["", "", "", ""])[:4]
    legs = call.legs - {mark.unique_id}
    cause, by = None, ""
    if call.hangup is not None:
        extra = call.hangup.extra_fields()
        found = extra.get("hangupcause")
        cause = found if isinstance(found, int) and not isinstance(found, bool) else None
        by = str(extra.get("hangupsource", ""))[:200]
    answer = call.answer
    return FallbackCall(
        linked_id=call.linked_id, unique_id=mark.unique_id, incident_id=incident_id, service=service,
        presentation=presentation, call_id=call_id[:128], caller_channel=mark.channel, number=mark.number,
        name=mark.name, arrived_wall=call.starts.get(mark.unique_id, mark.wall), fallback_wall=mark.wall,
        legs=len(legs), answered_wall=answer.wall if answer is not None else None,
        answered_by=answer.channel if answer is not None else "",
        ended_wall=call.hangup.wall if call.hangup is not None else (call.last_wall if call.over else None),
        hangup_cause=cause, hung_up_by=by, first_offset=call.first_offset)


def _mark_words(mark: CelEvent) -> list[str]:
    """The mark's ``service incident presentation call-id`` (the Call-ID may hold spaces: it is last)."""
    extra = mark.extra_fields().get("extra", "")
    return str(extra).split(" ", 3) if isinstance(extra, str) and extra else []
