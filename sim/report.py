"""Drill report: what happened to every call and the latency figures (pure: no I/O, no clock).

Inputs are what the drill observed from outside the gateway: each caller's sipp log (INVITE and
ANSWERED wall times, Call-ID), the phones' RINGING lines and the incidents in the store.

Definitions (all per placed call):
  * answered by IVR: the caller got a 200 OK (sipp logged ANSWERED). Under the fallback
    dialplan the 200 OK comes from a dispatcher instead; it still counts here.
  * answered by a dispatcher: the matched incident has an ``answered`` event. For a call with
    no incident in the store, a phone RINGING line carrying the caller's Call-ID with the
    caller's 200 OK at or after that first ring (the phones always answer after ringing).
  * lost: placed but answered neither by the IVR nor by a dispatcher.
  * INVITE -> incident stored: the incident's ``incident_stored`` event wall time minus the
    caller's INVITE wall time; INVITE -> dispatcher ringing: the first RINGING wall time for
    the caller's Call-ID minus the INVITE wall time. Both clocks are the same host's.
Percentiles are nearest-rank: the smallest value with at least p% of the values at or below it.
"""

from __future__ import annotations

import math

import msgspec

from gateway.records import Incident

NO_CALL_ID = ("", "-")  # the gateway sends "-" when it has no caller Call-ID


class PlacedCall(msgspec.Struct, frozen=True, kw_only=True):
    """One sipp caller run as the drill saw it."""

    index: int
    label: str
    service: str
    call_id: str
    invite_wall: float | None
    answered_wall: float | None
    sipp_rc: int


class Ringing(msgspec.Struct, frozen=True, kw_only=True):
    """One INVITE that reached a simulated dispatcher phone."""

    wall: float
    caller_call_id: str


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class CallOutcome(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    label: str
    service: str
    call_id: str
    sipp_rc: int
    incident_id: str
    state: str
    language: str
    category: str
    position: str
    located: bool
    ivr_answered: bool
    dispatcher_answered: bool
    lost: bool
    ivr: list[str]
    invite_to_stored_s: float | None
    invite_to_ringing_s: float | None


class Report(msgspec.Struct, kw_only=True):
    drill: str
    started_wall: float
    workdir: str
    calls_placed: int
    answered_by_ivr: int
    answered_by_dispatcher: int
    incidents_created: int
    incidents_with_location: int
    calls_lost: int
    calls_without_incident: int
    invite_to_stored_s: Percentiles
    invite_to_ringing_s: Percentiles
    calls: list[CallOutcome]
    notes: list[str] = []


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def percentiles(values: list[float]) -> Percentiles:
    return Percentiles(count=len(values), p50=percentile(values, 50), p90=percentile(values, 90),
                       p99=percentile(values, 99), max=max(values) if values else None)


def incidents_by_call_id(incidents: list[Incident]) -> dict[str, Incident]:
    """Caller Call-ID -> incident; the earliest wins should a Call-ID ever repeat."""
    found: dict[str, Incident] = {}
    for inc in sorted(incidents, key=lambda i: i.created_wall):
        if inc.call_id not in NO_CALL_ID:
            found.setdefault(inc.call_id, inc)
    return found


def first_rings(ringing: list[Ringing]) -> dict[str, float]:
    """Caller Call-ID -> wall time a dispatcher phone first rang for it."""
    found: dict[str, float] = {}
    for ring in ringing:
        if ring.caller_call_id in NO_CALL_ID:
            continue
        found[ring.caller_call_id] = min(ring.wall, found.get(ring.caller_call_id, math.inf))
    return found


def _event_wall(incident: Incident | None, kind: str) -> float | None:
    if incident is None:
        return None
    return next((e.wall for e in incident.timeline if e.kind == kind), None)


def _since(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def dispatcher_answered(call: PlacedCall, incident: Incident | None, first_ring: float | None) -> bool:
    if incident is not None:
        return _event_wall(incident, "answered") is not None
    return first_ring is not None and call.answered_wall is not None and call.answered_wall >= first_ring


def outcome(call: PlacedCall, incident: Incident | None, first_ring: float | None) -> CallOutcome:
    ivr = call.answered_wall is not None
    human = dispatcher_answered(call, incident, first_ring)
    return CallOutcome(
        index=call.index, label=call.label, service=call.service, call_id=call.call_id, sipp_rc=call.sipp_rc,
        incident_id=incident.id if incident else "", state=incident.state if incident else "",
        language=incident.language if incident else "", category=incident.category if incident else "",
        position=incident.position if incident else "", located=bool(incident and incident.locations),
        ivr_answered=ivr, dispatcher_answered=human, lost=not (ivr or human),
        ivr=[e.kind for e in incident.timeline if e.kind.startswith("ivr_")] if incident else [],
        invite_to_stored_s=_since(_event_wall(incident, "incident_stored"), call.invite_wall),
        invite_to_ringing_s=_since(first_ring, call.invite_wall),
    )


def compute(calls: list[PlacedCall], incidents: list[Incident], ringing: list[Ringing], *, drill: str = "",
            started_wall: float = 0.0, workdir: str = "", notes: list[str] | None = None) -> Report:
    """The drill report from what was observed."""
    by_call_id = incidents_by_call_id(incidents)
    rings = first_rings(ringing)
    outcomes = [outcome(c, by_call_id.get(c.call_id) if c.call_id else None, rings.get(c.call_id))
                for c in sorted(calls, key=lambda c: c.index)]
    anonymous_rings = sum(r.caller_call_id in NO_CALL_ID for r in ringing)
    notes = list(notes or [])
    if anonymous_rings:
        notes.append(f"{anonymous_rings} phone INVITE(s) carried no caller Call-ID (fallback dialplan?) "
                     "and could not be matched to a call")
    matched = {o.incident_id for o in outcomes if o.incident_id}
    located = {o.incident_id for o in outcomes if o.incident_id and o.located}
    return Report(
        drill=drill, started_wall=started_wall, workdir=workdir, calls_placed=len(outcomes),
        answered_by_ivr=sum(o.ivr_answered for o in outcomes),
        answered_by_dispatcher=sum(o.dispatcher_answered for o in outcomes),
        incidents_created=len(matched), incidents_with_location=len(located),
        calls_lost=sum(o.lost for o in outcomes), calls_without_incident=sum(not o.incident_id for o in outcomes),
        invite_to_stored_s=percentiles([o.invite_to_stored_s for o in outcomes if o.invite_to_stored_s is not None]),
        invite_to_ringing_s=percentiles([o.invite_to_ringing_s for o in outcomes
                                         if o.invite_to_ringing_s is not None]),
        calls=outcomes, notes=notes,
    )


# --- text -------------------------------------------------------------------------------------

def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"


def _latency_line(title: str, p: Percentiles) -> str:
    if not p.count:
        return f"  {title:<30} no samples"
    return (f"  {title:<30} p50 {_seconds(p.p50)}, p90 {_seconds(p.p90)}, p99 {_seconds(p.p99)}, "
            f"max {_seconds(p.max)} (n={p.count})")


def _call_line(o: CallOutcome) -> str:
    where = f"incident {o.incident_id} ({o.state})" if o.incident_id else "no incident"
    ivr = f", ivr {'+'.join(k.removeprefix('ivr_') for k in o.ivr)}" if o.ivr else ""
    return f"    #{o.index + 1} {o.label} [{o.service}]: {where}{ivr}, sipp rc {o.sipp_rc}, call-id {o.call_id or '-'}"


def summary_text(report: Report) -> str:
    """A readable multi-line summary: figures first, then the calls that need a look."""
    r = report
    lines = [
        f"Drill {r.drill}: {r.calls_placed} calls placed",
        f"  answered by IVR                {r.answered_by_ivr}",
        f"  answered by a dispatcher       {r.answered_by_dispatcher}",
        f"  incidents created              {r.incidents_created} ({r.incidents_with_location} with location)",
        f"  calls lost                     {r.calls_lost}",
        f"  calls without incident         {r.calls_without_incident}",
        _latency_line("INVITE -> incident stored", r.invite_to_stored_s),
        _latency_line("INVITE -> dispatcher ringing", r.invite_to_ringing_s),
    ]
    lost = [o for o in r.calls if o.lost]
    unserved = [o for o in r.calls if not o.lost and not o.dispatcher_answered]
    if lost:
        lines += ["  lost:", *(_call_line(o) for o in lost)]
    if unserved:
        lines += ["  not answered by a dispatcher:", *(_call_line(o) for o in unserved)]
    lines += [f"  note: {note}" for note in r.notes]
    if r.workdir:
        lines.append(f"  sipp scenarios and logs: {r.workdir}")
    return "\n".join(lines)
