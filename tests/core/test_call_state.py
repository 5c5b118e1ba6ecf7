"""The call-state table (pure): every path a call takes, what the driver is told to do, and the races
with Asterisk that must change nothing."""

from __future__ import annotations

import pytest

from gateway.intake.call_state import (
    FAST_FAILURE_S,
    IGNORED,
    TABLE,
    Adopted,
    Answered,
    CallLife,
    CallStateError,
    Dequeue,
    FailedOver,
    FreePosition,
    HandedOff,
    HandOffFailed,
    Hold,
    HungUp,
    Matched,
    MenuStarted,
    Overflowed,
    Queued,
    Requeue,
    Returned,
    Ringing,
    State,
    StopHold,
    StopServing,
    Unanswered,
)


def life(*events: object) -> CallLife:
    call = CallLife()
    for event in events:
        call.handle(event)  # type: ignore[arg-type]
    return call


def test_a_call_answered_at_the_first_position() -> None:
    call = CallLife()
    assert call.handle(MenuStarted()) == [] and call.state is State.MENU
    assert call.handle(Queued(at=10.0)) == [] and call.state is State.QUEUED
    assert call.handle(Matched("pos1", at=11.0)) == [StopHold()] and call.handed
    assert call.handle(HandedOff()) == [] and call.state is State.DIALLING
    assert call.handle(Ringing()) == [] and call.state is State.RINGING
    assert call.handle(Answered(at=14.0)) == [] and call.state is State.TALKING and call.answered
    assert call.position == "pos1"  # held while talking
    assert call.handle(HungUp()) == [Dequeue(), FreePosition("pos1"), StopServing()]
    assert call.gone and call.position is None


def test_unanswered_frees_the_position_and_the_caller_returns_to_its_place() -> None:
    call = life(Queued(at=10.0), Matched("pos1", at=11.0), HandedOff(), Ringing())
    assert call.handle(Unanswered("NOANSWER", at=11.0 + 20)) == [FreePosition("pos1")]  # rang long: no rest
    assert call.handle(Returned()) == [] and call.state is State.RETURNED and not call.handed
    assert call.handle(Queued(at=40.0)) == [] and (call.first_queued_at, call.queued_at) == (10.0, 10.0)


def test_a_dial_that_fails_fast_rests_the_position() -> None:
    call = life(Queued(at=10.0), Matched("pos2", at=11.0), HandedOff())
    assert call.handle(Unanswered("CHANUNAVAIL", at=11.0 + FAST_FAILURE_S / 2)) == [FreePosition("pos2", rest=True)]


def test_a_failed_hand_off_requeues_at_the_original_place_and_holds_again() -> None:
    call = life(Queued(at=10.0), Matched("pos1", at=11.0))
    assert call.handle(HandOffFailed()) == [FreePosition("pos1", rest=True), Requeue(10.0), Hold()]
    assert call.state is State.QUEUED and call.position is None


def test_dial_events_may_arrive_before_the_hand_off_request_returns() -> None:
    call = life(Queued(at=1.0), Matched("pos1", at=2.0))
    call.handle(Answered(at=3.0))
    assert call.state is State.TALKING
    assert call.handle(HandedOff()) == [] and call.state is State.TALKING  # the late reply changes nothing


def test_a_missed_dial_result_is_repaired_when_the_caller_comes_back() -> None:
    call = life(Queued(at=1.0), Matched("pos1", at=2.0), HandedOff())
    assert call.handle(Returned()) == [FreePosition("pos1")] and call.state is State.RETURNED


def test_overflow_and_fallback_leave_the_queue() -> None:
    assert life(Queued(at=1.0)).handle(Overflowed()) == [StopHold(), Dequeue()]
    call = life(Queued(at=1.0), Matched("pos1", at=2.0), HandedOff())
    assert call.handle(FailedOver()) == [Dequeue(), FreePosition("pos1")] and call.state is State.FALLBACK
    with pytest.raises(CallStateError, match="Overflowed is not expected in state dialling"):
        life(Queued(at=1.0), Matched("pos1", at=2.0), HandedOff()).handle(Overflowed())


def test_a_match_that_raced_a_hang_up_gives_the_position_back() -> None:
    call = life(Queued(at=1.0), HungUp())
    assert call.handle(Matched("pos1", at=2.0)) == [FreePosition("pos1")] and call.gone


def test_late_events_after_the_end_change_nothing() -> None:
    for final in (State.GONE, State.OVERFLOWED, State.FALLBACK):
        call = CallLife()
        call.state = final
        for event in (Ringing(), Answered(at=1.0), Unanswered("BUSY", at=1.0), Returned(), HandedOff()):
            assert call.handle(event) == [] and call.state is final
    assert life(HungUp()).handle(HungUp()) == []


def test_adoption_after_a_restart() -> None:
    ringing = life(Adopted("pos1", answered=False, at=5.0))
    assert (ringing.state, ringing.position, ringing.answered) == (State.DIALLING, "pos1", False)
    talking = life(Adopted("pos2", answered=True, at=5.0))
    assert (talking.state, talking.answered) == (State.TALKING, True)
    assert talking.handle(HungUp()) == [Dequeue(), FreePosition("pos2"), StopServing()]


def test_every_state_says_what_it_does_with_every_event() -> None:
    """No (state, event) pair is left to chance: each is a transition, ignored, or a named driver bug."""
    events = [MenuStarted(), Queued(at=0.0), Matched("p", at=0.0), HandedOff(), HandOffFailed(), Ringing(),
              Answered(at=0.0), Unanswered("x", at=0.0), Returned(), Overflowed(), FailedOver(), HungUp(),
              Adopted("p", answered=False, at=0.0)]
    assert not set(TABLE) & IGNORED
    for state in State:
        for event in events:
            call = CallLife()
            call.state = state
            if (state, type(event)) in TABLE or (state, type(event)) in IGNORED:
                call.handle(event)
            else:
                with pytest.raises(CallStateError, match=type(event).__name__):
                    call.handle(event)


def test_a_hand_off_error_after_the_dial_answered_changes_nothing() -> None:
    """The REST reply timed out, yet Asterisk did continue the call and its Dial was answered."""
    call = life(Queued(at=1.0), Matched("pos1", at=2.0), Ringing(), Answered(at=3.0))
    assert call.handle(HandOffFailed()) == [] and call.state is State.TALKING and call.position == "pos1"
