"""Records the gateway stores and serves: incidents and their timeline events (with the caller and
locations of ``protocols.caller``).

These msgspec Structs are the one schema for the store, the HTTP API and the CLI's JSON.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Literal

import msgspec

from gateway.protocols.caller import Caller, Location, LocationSource, Shape

__all__ = ["Caller", "Location", "LocationSource", "Shape", "Incident", "IncidentSummary", "TimelineEvent",
           "new_incident_id", "response_location"]

class TimelineEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened to an incident, with wall-clock and monotonic times."""

    kind: str
    wall: float
    mono: float
    actor: str = "gateway"
    data: dict[str, str | int | float | bool | None] = {}


IncidentState = Literal["new", "queued", "ringing", "answered", "overflowed", "fallback", "closed"]
# How the incident reached the centre, and where the response stands (independent of the call's state).
# "fallback": a call the fallback dialplan served while the gateway was down, registered afterwards from
# Asterisk's CEL log (gateway.intake.fallback).
IncidentSource = Literal["call", "alarm", "telegram", "sms", "api", "fallback"]
ResponseStatus = Literal["new", "assigned", "en_route", "on_scene", "closed"]


class Incident(msgspec.Struct, kw_only=True):
    """An emergency incident as stored and served."""

    id: str
    service: str
    created_wall: float
    caller: Caller
    call_id: str = ""
    channel_id: str = ""
    state: IncidentState = "new"
    source: IncidentSource = "call"
    reporter: str = ""  # who reported outside a call: alarm account, Telegram chat, SMS sender
    status: ResponseStatus = "new"
    units: list[str] = []  # assigned units
    language: str = ""
    ivr_choice: str = ""  # what the caller chose in the menu: a category, "dispatcher" (0), "timeout", "unknown"
    silent: bool = False  # the caller said nothing after the answer (talk detection); see intake.silence
    category: str = ""
    priority: int = 1
    locations: list[Location] = []
    best_location: int | None = None
    # Where the incident is, as the dispatcher settled it (copied from a caller's candidate, or corrected by
    # hand): what units are sent to. The caller's own candidates above are never changed by it.
    scene: Location | None = None
    linked_to: list[str] = []
    link_reasons: list[str] = []
    position: str = ""
    queue_wait_s: float | None = None
    answer_s: float | None = None
    timeline: list[TimelineEvent] = []
    updated_wall: float = 0.0


class IncidentSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    service: str
    state: IncidentState
    created_wall: float
    number: str
    category: str
    position: str
    status: ResponseStatus = "new"
    source: IncidentSource = "call"
    priority: int = 1
    answer_s: float | None = None  # a call's seconds from arrival to a dispatcher's answer
    language: str = ""
    ivr_choice: str = ""
    silent: bool = False  # the caller said nothing after the answer: the queue shows it
    location_source: str = ""  # where the location units go to came from ("" for none yet)


class IncidentIds:
    """Incident ids unique by construction, sortable by creation: ``20261121-140312-g1a2b3.00000042``.

    The time says when; ``node`` names the process that made the id (a configured node name, or a
    token drawn at start) and the counter makes every id of that process distinct. Random suffixes
    are not enough: 1,000 reports in one second collided about 3 % of the time with 24 random bits,
    and a clash loses the report (the store refuses the second row). Calls take Asterisk's own
    ``UNIQUEID`` the same way (the dialplan names the incident before the gateway sees the call).
    """

    def __init__(self, node: str = "") -> None:
        self.node = node or "g" + secrets.token_hex(3)
        self._next = itertools.count(1)

    def __call__(self, now: float) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{self.node}.{next(self._next):08d}"


new_incident_id = IncidentIds()


def response_location(incident: Incident) -> Location | None:
    """Where a response goes: the dispatcher's scene when it has coordinates, else the caller's best candidate
    (a scene corrected by address alone must not leave units without a point to go to)."""
    if incident.scene is not None and incident.scene.lat is not None and incident.scene.lon is not None:
        return incident.scene
    index = incident.best_location
    return incident.locations[index] if index is not None and 0 <= index < len(incident.locations) else None
