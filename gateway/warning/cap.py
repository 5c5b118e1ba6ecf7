"""OASIS CAP 1.2 alert model (Common Alerting Protocol, OASIS Standard 2010). Pure: no I/O.

Python names are snake_case; values are spelt exactly as CAP spells them so a Struct can be
written to CAP XML without a lookup table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

Status = Literal["Actual", "Exercise", "System", "Test", "Draft"]
MsgType = Literal["Alert", "Update", "Cancel", "Ack", "Error"]
Scope = Literal["Public", "Restricted", "Private"]
Category = Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport",
                   "Infra", "CBRNE", "Other"]
ResponseType = Literal["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess",
                       "AllClear", "None"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]


class Circle(msgspec.Struct, frozen=True, kw_only=True):
    """A circle centred on (lat, lon), WGS 84, with its radius in kilometres."""

    lat: float
    lon: float
    radius_km: float


class Area(msgspec.Struct, frozen=True, kw_only=True):
    """CAP <area>. Polygon points are (lat, lon). ``zones`` are our named zones, written as
    geocode valueName ``ECGW-ZONE`` so they survive a round trip through CAP."""

    area_desc: str
    polygons: list[list[tuple[float, float]]] = []
    circles: list[Circle] = []
    geocodes: dict[str, str] = {}
    zones: list[str] = []


class Info(msgspec.Struct, frozen=True, kw_only=True):
    """CAP <info>: one language's rendering of the warning."""

    language: str
    categories: list[Category]
    event: str
    response_types: list[ResponseType] = []
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    event_codes: dict[str, str] = {}
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    web: str = ""
    contact: str = ""
    parameters: dict[str, str] = {}
    areas: list[Area] = []


class Reference(msgspec.Struct, frozen=True, kw_only=True):
    """One earlier message this one refers to (CAP <references> entry)."""

    sender: str
    identifier: str
    sent: datetime


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """CAP <alert>. ``sent`` must be timezone-aware."""

    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    scope: Scope = "Public"
    source: str = ""
    restriction: str = ""
    addresses: str = ""
    codes: list[str] = []
    note: str = ""
    references: list[Reference] = []
    incidents: str = ""
    infos: list[Info] = []
