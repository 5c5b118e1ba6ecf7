"""A new caller's incident, made from their channel and the facts the dialplan handed over (no I/O).

The facts (``protocols.call_facts``) are the caller's presentation, SIP Call-ID and the location their network
sent with the INVITE; a location the network sent by reference is only named here, and fetched once the
incident is stored (``location_ref``). Bad input never stops the incident: a location that cannot be read
is noted on its timeline, and counted (``Arrival.bad_input``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gateway.incident.recording_index import INCIDENT_ID
from gateway.incident.records import Incident, Location, TimelineEvent, new_incident_id
from gateway.incident.store import event
from gateway.intake import location_ref
from gateway.protocols import ani, location
from gateway.protocols import ari_events as ev
from gateway.protocols.call_facts import Facts
from gateway.protocols.pidf import LocationError
from gateway.settings import LINE_1402, GatewayConfig

log = logging.getLogger(__name__)
LOCATION_VARS = frozenset({"ECGW_LOCATION", "ECGW_LOCATION_FORMAT", "ECGW_GEOLOC_HDR", "ECGW_LOCATION_CONFIDENCE",
                           "ECGW_LOCATION_METHOD"})


@dataclass
class Arrival:
    incident: Incident
    location_ref: str = ""  # a location sent by reference: fetched once the incident is stored
    bad_input: list[str] = field(default_factory=list)  # the metric's labels, one per fault


@dataclass
class Unread:
    """A new call whose facts came cut or not at all: what its incident is made again from, once read."""

    chan: ev.Channel
    facts: Facts
    service: str
    events: int  # how many timeline events the first making put on the incident


def arrival(cfg: GatewayConfig, chan: ev.Channel, facts: Facts, service: str, now: float,
            arrived_wall: float | None = None, incident_id: str = "", provisional: bool = False) -> Arrival:
    """The incident of a caller whose channel is ``chan``. ``incident_id``: the id it already has (made again
    once facts that came cut were read in full); else the dialplan's, else a new one. ``provisional``: the
    ``missing`` facts are still to be read (``Unread``), so it says nothing of a location it has only part of;
    else a location still missing is said to be so."""
    caller = ani.normalise(chan.caller.number, chan.caller.name, facts.var("ECGW_PRES"), cfg.ani)
    dialplan_id = chan.var("ECGW_INCIDENT")
    service = service or facts.var("ECGW_SERVICE") or "112"
    ivr = cfg.ivr
    incident = Incident(
        id=incident_id or (dialplan_id if INCIDENT_ID.match(dialplan_id) else new_incident_id(now)),
        service=service, created_wall=arrived_wall or now, caller=caller, call_id=facts.var("ECGW_CALL_ID")[:128],
        channel_id=chan.id, language=chan.language if chan.language in ("kk", "ru", "en") else "",
        priority=ivr.menu_1402.default_priority if service == LINE_1402 else ivr.default_priority,
    )
    incident.timeline.append(event("call_arrived", "caller", service=incident.service, channel=chan.name,
                                   number=caller.number, raw_number=caller.raw_number,
                                   flags=",".join(caller.flags)))
    found = Arrival(incident, bad_input=list(caller.flags))
    if not LOCATION_VARS & set(facts.missing):
        found.location_ref = _pidf_location(found, facts)
    elif not provisional:  # read by REST, and still not whole: said, never guessed from a part
        _location_error(found, "the location sent with the call came too long or garbled from the dialplan "
                               "and could not be read in full")
    return found


def _pidf_location(found: Arrival, facts: Facts) -> str:
    """The location sent by value, on the incident; returns the URI of one sent by reference ("" if none)."""
    info, fmt, header = facts.var("ECGW_LOCATION"), facts.var("ECGW_LOCATION_FORMAT"), facts.var("ECGW_GEOLOC_HDR")
    ref = location_ref.reference(info, fmt, header)
    if ref:
        return ref
    if not info:
        if header:
            _location_error(found, "Asterisk could not parse the PIDF-LO sent with the call")
        return ""
    try:
        loc = location.parse_location_info(info, fmt, confidence=facts.var("ECGW_LOCATION_CONFIDENCE"),
                                           method=facts.var("ECGW_LOCATION_METHOD"))
    except LocationError as exc:
        _location_error(found, str(exc))
        return ""
    add_location(found.incident, loc)
    return ""


def _location_error(found: Arrival, reason: str) -> None:
    log.warning("incident %s: location rejected: %s", found.incident.id, reason)
    found.bad_input.append("location")
    found.incident.timeline.append(event("location_rejected", "network", reason=reason[:300]))


def add_location(incident: Incident, loc: Location) -> TimelineEvent:
    """Keep a candidate, re-pick the best, and put a ``location_found`` event on the timeline."""
    incident.locations.append(loc)
    incident.best_location = location.best(incident.locations)
    item = event("location_found", loc.source, source=loc.source, shape=loc.shape,
                 lat=loc.lat, lon=loc.lon, radius_m=loc.radius_m, address=loc.address,
                 **({"confidence": loc.confidence} if loc.confidence is not None else {}))
    incident.timeline.append(item)
    return item
