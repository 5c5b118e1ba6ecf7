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
  * answer time: INVITE -> the incident's ``answered`` event; without an INVITE time, the
    incident's own ``answer_s`` (arrival -> answer as the gateway measured it); for a call with no
    incident that a dispatcher answered (see above), INVITE -> the caller's 200 OK.
Percentiles are nearest-rank: the smallest value with at least p% of the values at or below it.
"""

from __future__ import annotations

import math

import msgspec

from gateway.incident.records import Incident, TimelineEvent
from sim.delivery import DeliveryReport, delivery_text

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
    answer_s: float | None = None  # INVITE -> a dispatcher answered (see the module doc)


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
    escalation: EscalationReport | None = None
    answer_s: Percentiles = Percentiles(count=0, p50=None, p90=None, p99=None, max=None)
    delivery: DeliveryReport | None = None  # the drill's [warning] phase


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


def answer_time(call: PlacedCall, incident: Incident | None, first_ring: float | None) -> float | None:
    """INVITE -> a dispatcher answered, in seconds (None when no dispatcher did)."""
    if incident is None:
        human = dispatcher_answered(call, None, first_ring)
        return _since(call.answered_wall, call.invite_wall) if human else None
    answered = _event_wall(incident, "answered")
    if answered is None:
        return None
    return _since(answered, call.invite_wall) if call.invite_wall is not None else incident.answer_s


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
        answer_s=answer_time(call, incident, first_ring),
    )


def compute(calls: list[PlacedCall], incidents: list[Incident], ringing: list[Ringing], *, drill: str = "",
            started_wall: float = 0.0, workdir: str = "", notes: list[str] | None = None,
            escalation: EscalationReport | None = None, delivery: DeliveryReport | None = None) -> Report:
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
        calls=outcomes, notes=notes, escalation=escalation, delivery=delivery,
        answer_s=percentiles([o.answer_s for o in outcomes if o.answer_s is not None]),
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
        _latency_line("INVITE -> dispatcher answered", r.answer_s),
    ]
    lost = [o for o in r.calls if o.lost]
    unserved = [o for o in r.calls if not o.lost and not o.dispatcher_answered]
    if lost:
        lines += ["  lost:", *(_call_line(o) for o in lost)]
    if unserved:
        lines += ["  not answered by a dispatcher:", *(_call_line(o) for o in unserved)]
    if r.escalation is not None:
        lines += escalation_text(r.escalation)
    if r.delivery is not None:
        lines += delivery_text(r.delivery)
    lines += [f"  note: {note}" for note in r.notes]
    if r.workdir:
        lines.append(f"  sipp scenarios and logs: {r.workdir}")
    return "\n".join(lines)


# --- escalation -------------------------------------------------------------------------------
# From each incident's timeline as the escalation engine wrote it: ``scenario_started`` /
# ``scenario_switched`` (data: scenario, category, run "category"|"sla", reason), ``step_started``
# (do: notify|escalate|forward ...), ``notified`` (person, channel, attempt), ``channel_failed`` and
# ``notify_failed`` (person), ``acknowledged`` (person, via; attempt when it came from outside the
# delivery), ``ack_timeout``, ``scenario_finished``. An SLA breach is a run of kind "sla".

RUN_STARTS = ("scenario_started", "scenario_switched")
RUN_ENDS = ("scenario_finished", "scenario_stopped")


class Spread(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    median: float | None
    max: float | None


class CategoryEscalation(msgspec.Struct, frozen=True, kw_only=True):
    """Escalation figures of the incidents whose category run ended up in one category."""

    category: str
    incidents: int
    to_first_notification_s: Spread  # incident created -> first responder notified
    to_first_ack_s: Spread  # incident created -> first acknowledgement
    never_notified: int
    never_acknowledged: int
    escalations: int  # escalate steps run
    sla_breaches: int
    sla_incidents: list[str]
    incident_ids: list[str]


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened to a responder on one incident."""

    incident_id: str
    kind: str  # notified, channel_failed, notify_failed, acknowledged
    after_s: float  # since the incident was created
    channel: str = ""
    attempt: int | None = None


class ResponderOutcome(msgspec.Struct, frozen=True, kw_only=True):
    person: str
    behaviour: str
    channel: str
    notified: int
    failed: int  # channel_failed + notify_failed
    acknowledged: int
    ack_attempts: list[int]  # the attempt each acknowledgement answered
    # From the ``notified`` event it answered; a voice call writes that event when the call ends, so
    # a key pressed during the call shows 0.
    ack_delays_s: list[float]
    escalated_incidents: list[str]  # notified, never acknowledged, and an escalate step followed
    events: list[Notice]
    summary: str


class EscalationReport(msgspec.Struct, frozen=True, kw_only=True):
    incidents: int
    categories: list[CategoryEscalation]
    escalations: int
    sla_breaches: int
    sla_incidents: list[str]
    unfinished_runs: list[str]  # "incident/kind" still running when the drill stopped
    responders: list[ResponderOutcome]


class ScriptedResponder(msgspec.Struct, frozen=True, kw_only=True):
    """What the drill told a responder to do (see ``sim.drill.Responder``)."""

    person: str
    behaviour: str
    channel: str
    ack_after_s: float | None = None


def spread(values: list[float]) -> Spread:
    return Spread(count=len(values), median=percentile(values, 50), max=max(values) if values else None)


def _events(incident: Incident, kind: str) -> list[TimelineEvent]:
    return [e for e in incident.timeline if e.kind == kind]


def run_category(incident: Incident) -> str:
    """The category the incident's category run last ran for (else its own, else "unclassified")."""
    found = [e for e in incident.timeline if e.kind in RUN_STARTS and e.data.get("run", "category") == "category"]
    if found and found[-1].data.get("category"):
        return str(found[-1].data["category"])
    return incident.category or "unclassified"


def sla_breached(incident: Incident) -> bool:
    return any(e.kind in RUN_STARTS and e.data.get("run") == "sla" for e in incident.timeline)


def escalations(incident: Incident) -> list[TimelineEvent]:
    return [e for e in _events(incident, "step_started") if e.data.get("do") == "escalate"]


def first_wall(incident: Incident, kind: str) -> float | None:
    return next((e.wall for e in incident.timeline if e.kind == kind), None)


def unfinished_runs(incident: Incident) -> list[str]:
    """Runs ("incident/kind") started and not finished or stopped."""
    state: dict[str, bool] = {}
    for e in incident.timeline:
        run = str(e.data.get("run", ""))
        if e.kind in RUN_STARTS and run:
            state[run] = True
        elif e.kind in RUN_ENDS and run:
            state[run] = False
    return [f"{incident.id}/{run}" for run, running in state.items() if running]


def category_figures(category: str, incidents: list[Incident]) -> CategoryEscalation:
    notified, acked = [], []
    for inc in incidents:
        first_notice, first_ack = first_wall(inc, "notified"), first_wall(inc, "acknowledged")
        if first_notice is not None:
            notified.append(first_notice - inc.created_wall)
        if first_ack is not None:
            acked.append(first_ack - inc.created_wall)
    breached = [i.id for i in incidents if sla_breached(i)]
    return CategoryEscalation(
        category=category, incidents=len(incidents), to_first_notification_s=spread(notified),
        to_first_ack_s=spread(acked), never_notified=len(incidents) - len(notified),
        never_acknowledged=len(incidents) - len(acked), escalations=sum(len(escalations(i)) for i in incidents),
        sla_breaches=len(breached), sla_incidents=breached, incident_ids=[i.id for i in incidents])


def responder_notices(person: str, incident: Incident) -> list[Notice]:
    """What the timeline says happened to ``person``; an acknowledgement without an attempt (a key
    pressed during the call) answers the person's latest notification before it."""
    out: list[Notice] = []
    attempt: int | None = None
    for e in incident.timeline:
        if e.data.get("person") != person or e.kind not in ("notified", "channel_failed", "notify_failed",
                                                             "acknowledged"):
            continue
        raw = e.data.get("attempt")
        if e.kind == "notified" and isinstance(raw, int):
            attempt = raw
        if e.kind == "acknowledged" and isinstance(raw, int):
            attempt = raw
        channel = e.data.get("channel") or e.data.get("via") or ""
        out.append(Notice(incident_id=incident.id, kind=e.kind, after_s=round(e.wall - incident.created_wall, 3),
                          channel=str(channel), attempt=attempt if e.kind in ("notified", "acknowledged") else
                          (raw if isinstance(raw, int) else None)))
    return out


def responder_outcome(scripted: ScriptedResponder, incidents: list[Incident]) -> ResponderOutcome:
    events: list[Notice] = []
    attempts: list[int] = []
    delays: list[float] = []
    escalated: list[str] = []
    for inc in sorted(incidents, key=lambda i: i.created_wall):
        notices = responder_notices(scripted.person, inc)
        events += notices
        last_notice: Notice | None = None
        for n in notices:
            if n.kind == "notified":
                last_notice = n
            elif n.kind == "acknowledged":
                attempts.append(n.attempt or 0)
                if last_notice is not None:
                    delays.append(round(n.after_s - last_notice.after_s, 3))
        first = next((n for n in notices if n.kind == "notified"), None)
        if first is not None and not any(n.kind == "acknowledged" for n in notices):
            offset = first.after_s + inc.created_wall
            if any(e.wall >= offset for e in escalations(inc)):
                escalated.append(inc.id)
    notified = sum(n.kind == "notified" for n in events)
    failed = sum(n.kind in ("channel_failed", "notify_failed") for n in events)
    return ResponderOutcome(
        person=scripted.person, behaviour=scripted.behaviour, channel=scripted.channel, notified=notified,
        failed=failed, acknowledged=len(attempts), ack_attempts=attempts, ack_delays_s=delays,
        escalated_incidents=escalated, events=events,
        summary=_responder_summary(notified, failed, attempts, delays, escalated))


def _responder_summary(notified: int, failed: int, attempts: list[int], delays: list[float],
                       escalated: list[str]) -> str:
    parts = [f"notified {notified}x"]
    if failed:
        parts.append(f"{failed} failed deliveries")
    if attempts:
        parts.append(f"acknowledged {len(attempts)}x (attempts {','.join(map(str, attempts))}; "
                     f"{', '.join(_seconds(d) for d in delays)} after the notification)")
    else:
        parts.append("never acknowledged")
    if escalated:
        parts.append(f"escalated past them on {len(escalated)} incident(s)")
    return "; ".join(parts)


def escalation_report(incidents: list[Incident], scripted: list[ScriptedResponder]) -> EscalationReport:
    """Escalation figures per category and per scripted responder, from the incidents' timelines."""
    by_category: dict[str, list[Incident]] = {}
    for inc in sorted(incidents, key=lambda i: i.created_wall):
        by_category.setdefault(run_category(inc), []).append(inc)
    categories = [category_figures(name, found) for name, found in sorted(by_category.items())]
    breached = [i.id for i in incidents if sla_breached(i)]
    return EscalationReport(
        incidents=len(incidents), categories=categories, escalations=sum(c.escalations for c in categories),
        sla_breaches=len(breached), sla_incidents=breached,
        unfinished_runs=[run for inc in incidents for run in unfinished_runs(inc)],
        responders=[responder_outcome(s, incidents) for s in scripted])


def escalation_text(e: EscalationReport) -> list[str]:
    lines = [f"  escalation: {e.incidents} incidents, {e.escalations} escalations, {e.sla_breaches} SLA breaches"]
    for c in e.categories:
        lines.append(
            f"    {c.category:<20} n={c.incidents}  created->notified {_spread(c.to_first_notification_s)}  "
            f"created->ack {_spread(c.to_first_ack_s)}  never acked {c.never_acknowledged}  "
            f"escalations {c.escalations}  SLA breaches {c.sla_breaches}")
    for r in e.responders:
        lines.append(f"    responder {r.person} ({r.behaviour} via {r.channel}): {r.summary}")
    if e.sla_incidents:
        lines.append(f"    SLA breached on: {', '.join(e.sla_incidents)}")
    if e.unfinished_runs:
        lines.append(f"    still running at the end: {', '.join(e.unfinished_runs)}")
    return lines


def _spread(s: Spread) -> str:
    if not s.count:
        return "-"
    return f"median {_seconds(s.median)} max {_seconds(s.max)} (n={s.count})"
