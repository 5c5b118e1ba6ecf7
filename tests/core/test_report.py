"""The drill report computation (sim.report) on hand-made inputs: no sipp, no Asterisk."""

from __future__ import annotations

import msgspec
import pytest

from gateway.incident.records import Caller, Incident, Location, TimelineEvent
from sim.report import PlacedCall, Ringing, compute, percentile, percentiles, summary_text

T0 = 1_700_000_000.0


def call(index: int, call_id: str, invite: float | None = T0, answered: float | None = T0 + 0.2,
         rc: int = 0) -> PlacedCall:
    return PlacedCall(index=index, label=f"c{index}", service="112", call_id=call_id, invite_wall=invite,
                      answered_wall=answered, sipp_rc=rc)


def incident(call_id: str, *events: tuple[str, float], located: bool = False, created: float = T0,
             ident: str = "") -> Incident:
    locations = [Location(source="pidf-lo", shape="point", lat=43.2, lon=76.9)] if located else []
    return Incident(
        id=ident or f"inc-{call_id}", service="112", created_wall=created, call_id=call_id,
        caller=Caller(raw_number="+77011234567", number="+77011234567", display_name="", withheld=False),
        locations=locations, timeline=[TimelineEvent(kind=k, wall=w, mono=0.0) for k, w in events],
    )


def ring(call_id: str, wall: float) -> Ringing:
    return Ringing(wall=wall, caller_call_id=call_id)


# --- percentiles --------------------------------------------------------------------------------

def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100


def test_percentile_of_few_values() -> None:
    assert percentile([0.3], 50) == 0.3
    assert percentile([0.3], 99) == 0.3
    assert percentile([0.1, 0.2, 0.9], 50) == 0.2
    assert percentile([0.1, 0.2, 0.9], 90) == 0.9
    assert percentile([0.4, 0.1, 0.3, 0.2], 50) == 0.2
    assert percentile([], 50) is None


def test_percentiles_struct() -> None:
    p = percentiles([0.5, 0.1, 0.2, 0.3, 0.4])
    assert (p.count, p.p50, p.p90, p.p99, p.max) == (5, 0.3, 0.5, 0.5, 0.5)
    empty = percentiles([])
    assert (empty.count, empty.p50, empty.max) == (0, None, None)


# --- matching and latencies ---------------------------------------------------------------------

def test_incident_matched_by_call_id_gives_latencies() -> None:
    calls = [call(0, "a@h", invite=T0), call(1, "b@h", invite=T0 + 10)]
    incidents = [
        incident("b@h", ("call_arrived", T0 + 10.01), ("incident_stored", T0 + 10.05), ("answered", T0 + 13)),
        incident("a@h", ("call_arrived", T0 + 0.01), ("incident_stored", T0 + 0.02), ("answered", T0 + 3)),
    ]
    report = compute(calls, incidents, [ring("a@h", T0 + 2.5), ring("b@h", T0 + 12.0)])
    a, b = report.calls
    assert (a.incident_id, b.incident_id) == ("inc-a@h", "inc-b@h")
    assert a.invite_to_stored_s == pytest.approx(0.02)
    assert b.invite_to_stored_s == pytest.approx(0.05)
    assert a.invite_to_ringing_s == pytest.approx(2.5)
    assert b.invite_to_ringing_s == pytest.approx(2.0)
    assert report.invite_to_stored_s.count == 2
    assert report.invite_to_stored_s.max == pytest.approx(0.05)
    assert report.invite_to_ringing_s.p50 == pytest.approx(2.0)


def test_first_ring_counts_and_foreign_rings_are_ignored() -> None:
    rings = [ring("a@h", T0 + 5), ring("a@h", T0 + 3), ring("other@h", T0 + 1), ring("-", T0 + 1), ring("", T0)]
    report = compute([call(0, "a@h")], [incident("a@h", ("answered", T0 + 6))], rings)
    assert report.calls[0].invite_to_ringing_s == pytest.approx(3.0)
    assert report.invite_to_ringing_s.count == 1


def test_rings_without_caller_call_id_are_noted() -> None:
    report = compute([call(0, "a@h")], [], [ring("", T0 + 1), ring("-", T0 + 2)])
    assert report.calls[0].invite_to_ringing_s is None
    assert report.calls[0].dispatcher_answered is False
    assert report.notes == ["2 phone INVITE(s) carried no caller Call-ID (fallback dialplan?) "
                            "and could not be matched to a call"]


def test_unmatched_incidents_and_missing_call_ids_are_not_counted() -> None:
    calls = [call(0, "a@h"), call(1, "", invite=None, answered=None, rc=255)]
    incidents = [incident("a@h", ("incident_stored", T0 + 0.1)), incident("zzz@h", located=True),
                 incident("", ident="no-call-id")]
    report = compute(calls, incidents, [])
    assert report.incidents_created == 1
    assert report.incidents_with_location == 0
    assert report.calls_without_incident == 1
    assert report.calls[1].incident_id == ""


def test_repeated_call_id_matches_the_earliest_incident() -> None:
    incidents = [incident("a@h", created=T0 + 5, ident="later"), incident("a@h", created=T0 + 1, ident="first")]
    assert compute([call(0, "a@h")], incidents, []).calls[0].incident_id == "first"


def test_calls_are_reported_in_placing_order() -> None:
    report = compute([call(2, "c@h"), call(0, "a@h"), call(1, "b@h")], [], [])
    assert [c.index for c in report.calls] == [0, 1, 2]


# --- who answered, what was lost -----------------------------------------------------------------

def test_dispatcher_answer_comes_from_the_incident_when_stored() -> None:
    calls = [call(0, "a@h"), call(1, "b@h")]
    incidents = [incident("a@h", ("answered", T0 + 3)), incident("b@h", ("queued", T0 + 2), ("hung_up", T0 + 4))]
    # b rang a phone, but its incident says nobody answered: the store wins.
    report = compute(calls, incidents, [ring("a@h", T0 + 2), ring("b@h", T0 + 2.5)])
    assert [c.dispatcher_answered for c in report.calls] == [True, False]
    assert report.answered_by_dispatcher == 1
    assert report.answered_by_ivr == 2
    assert report.calls_lost == 0


def test_without_an_incident_a_ring_followed_by_the_answer_counts() -> None:
    # Fallback dialplan: the caller's 200 OK comes when the ringing dispatcher picks up.
    served = call(0, "a@h", answered=T0 + 4)
    answered_before_ring = call(1, "b@h", answered=T0 + 0.2)
    rang_never_answered = call(2, "c@h", answered=None)
    rings = [ring("a@h", T0 + 3), ring("b@h", T0 + 3), ring("c@h", T0 + 3)]
    report = compute([served, answered_before_ring, rang_never_answered], [], rings)
    assert [c.dispatcher_answered for c in report.calls] == [True, False, False]
    assert [c.ivr_answered for c in report.calls] == [True, True, False]
    assert [c.lost for c in report.calls] == [False, False, True]


def test_lost_calls() -> None:
    calls = [
        call(0, "a@h", answered=None),  # rejected: no 200 OK, no incident
        call(1, "b@h", answered=None),  # incident exists but the caller never got an answer
        call(2, "", invite=None, answered=None, rc=-1),  # sipp never sent the INVITE
        call(3, "d@h"),  # answered by the IVR, then hung up: not lost
    ]
    incidents = [incident("b@h", ("call_arrived", T0), ("hung_up", T0 + 1)), incident("d@h", ("hung_up", T0 + 2))]
    report = compute(calls, incidents, [])
    assert [c.lost for c in report.calls] == [True, True, True, False]
    assert report.calls_lost == 3
    assert report.calls_placed == 4
    assert report.incidents_created == 2


def test_location_counted_per_matched_incident() -> None:
    calls = [call(0, "a@h"), call(1, "b@h"), call(2, "c@h")]
    incidents = [incident("a@h", located=True), incident("b@h"), incident("c@h", located=True)]
    report = compute(calls, incidents, [])
    assert report.incidents_with_location == 2
    assert [c.located for c in report.calls] == [True, False, True]


def test_outcome_carries_incident_details() -> None:
    inc = incident("a@h", ("ivr_language", T0 + 1), ("ivr_category", T0 + 2), ("answered", T0 + 3))
    inc.state, inc.language, inc.category, inc.position = "answered", "ru", "police", "pos1"
    outcome = compute([call(0, "a@h")], [inc], []).calls[0]
    assert (outcome.state, outcome.language, outcome.category, outcome.position) == (
        "answered", "ru", "police", "pos1")
    assert outcome.ivr == ["ivr_language", "ivr_category"]


# --- output ----------------------------------------------------------------------------------

def test_summary_text_and_json() -> None:
    calls = [call(0, "a@h"), call(1, "b@h", answered=None)]
    incidents = [incident("a@h", ("incident_stored", T0 + 0.012), ("answered", T0 + 3), located=True)]
    report = compute(calls, incidents, [ring("a@h", T0 + 2.5)], drill="smoke", notes=["hello"])
    text = summary_text(report)
    assert "Drill smoke: 2 calls placed" in text
    assert "answered by a dispatcher       1" in text
    assert "calls lost                     1" in text
    assert "1 with location" in text
    assert "p50 12 ms" in text
    assert "p50 2.50 s" in text
    assert "#2 c1 [112]: no incident" in text
    assert "note: hello" in text
    decoded = msgspec.json.decode(msgspec.json.encode(report))
    assert decoded["calls_lost"] == 1
    assert decoded["invite_to_ringing_s"]["p50"] == pytest.approx(2.5)


def test_empty_drill() -> None:
    report = compute([], [], [])
    assert (report.calls_placed, report.calls_lost, report.invite_to_stored_s.count) == (0, 0, 0)
    assert "no samples" in summary_text(report)


# --- answer times ---------------------------------------------------------------------------------

def test_answer_time_is_invite_to_the_incidents_answered_event() -> None:
    calls = [call(0, "a@h"), call(1, "b@h", invite=T0 + 10), call(2, "c@h")]
    incidents = [incident("a@h", ("incident_stored", T0 + 0.02), ("answered", T0 + 3.5)),
                 incident("b@h", ("answered", T0 + 11.0)), incident("c@h", ("hung_up", T0 + 4))]
    report = compute(calls, incidents, [])
    assert [c.answer_s for c in report.calls] == [pytest.approx(3.5), pytest.approx(1.0), None]
    assert (report.answer_s.count, report.answer_s.p50, report.answer_s.max) == (2, pytest.approx(1.0),
                                                                                  pytest.approx(3.5))
    assert "INVITE -> dispatcher answered" in summary_text(report)


def test_answer_time_without_an_invite_time_is_the_incidents_own() -> None:
    inc = incident("a@h", ("answered", T0 + 3))
    inc.answer_s = 2.75  # arrival -> answer as the gateway measured it
    assert compute([call(0, "a@h", invite=None)], [inc], []).calls[0].answer_s == pytest.approx(2.75)


def test_answer_time_without_an_incident_is_invite_to_the_answer_after_a_ring() -> None:
    # Fallback dialplan: the caller's 200 OK is the dispatcher picking up.
    served, early = call(0, "a@h", answered=T0 + 4), call(1, "b@h", answered=T0 + 0.2)
    report = compute([served, early], [], [ring("a@h", T0 + 3), ring("b@h", T0 + 3)])
    assert [c.answer_s for c in report.calls] == [pytest.approx(4.0), None]
    assert report.answer_s.count == 1


def test_reports_without_the_new_fields_still_decode() -> None:
    # Reports written before answer times and the warning phase existed.
    old = msgspec.json.encode(compute([call(0, "a@h")], [], []))
    raw = msgspec.json.decode(old)
    del raw["answer_s"], raw["delivery"]
    from sim.report import Report
    decoded = msgspec.convert(raw, Report)
    assert decoded.answer_s.count == 0 and decoded.delivery is None
