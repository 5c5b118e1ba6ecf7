"""Records the gateway stores and serves: incidents and their timeline events (with the caller and
locations of ``protocols.caller``).

These msgspec Structs are the one schema for the store, the HTTP API and the CLI's JSON.
"""

from __future__ import annotations

import secrets
import time
from typing import Literal

import msgspec

from gateway.protocols.caller import Caller, Location, LocationSource, Shape

__all__ = ["Caller", "Location", "LocationSource", "Shape", "Incident", "IncidentSummary", "TimelineEvent",
           "new_incident_id"]

class TimelineEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened to an incident, with wall-clock and monotonic times."""

    kind: str
    wall: float
    mono: float
    actor: str = "gateway"
    data: dict[str, str | int | float | bool | None] = {}


IncidentState = Literal["new", "queued", "ringing", "answered", "overflowed", "fallback", "closed"]
# How the incident reached the centre, and where the response stands (independent of the call's state).
IncidentSource = Literal["call", "alarm", "telegram", "sms", "api"]
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
    category: str = ""
    priority: int = 1
    locations: list[Location] = []
    best_location: int | None = None
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


def new_incident_id(now: float) -> str:
    """Sortable by creation time, unique enough for a centre: 20261121-140312-a1b2c3."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)
