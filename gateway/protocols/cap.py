"""OASIS CAP 1.2 (Common Alerting Protocol): alert model, XML writing and reading, semantic checks.

Pure: no I/O. Python names are snake_case; values are spelt exactly as CAP spells them, so a
Struct is written to CAP XML without a lookup table.

Theory of operation: ``to_xml`` writes whatever it is given, in the exact element order of the
OASIS schema; ``problems`` lists everything that would make the message invalid, both what the
XSD checks (enumerations, required elements) and the section 3 rules it cannot express (no
spaces in identifiers, closed polygons, addresses for a Private alert ...), and nothing the
standard does not state. An alert with no problems writes XML that validates against the
official CAP 1.2 XSD. ``cap_read.from_xml`` reads a document from the network: hostile XML (any
DTD, hence entity bombs and external entities) is refused, and the element structure is checked
against the schema's sequences as a small data table, so every error names the element and what
was wrong with it.

``eventCode``, ``parameter`` and ``geocode`` are lists of ``ValuePair`` in document order: CAP
lets a valueName repeat (three SAME codes for three counties, BLOCKCHANNEL once per channel, a
GROUP event code per group), and a reader that kept one value per name would lose all but one.

CAP elements the model does not carry (``audience``, ``resource``, ``altitude``, ``ceiling`` and
an XML signature) are accepted in their place when reading and dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import msgspec
from lxml import etree

from gateway.errors import ProtocolError

NS = "urn:oasis:names:tc:emergency:cap:1.2"
MIME_TYPE = "application/cap+xml"
ZONE_VALUE_NAME = "ECGW-ZONE"  # our named zones travel as geocodes with this valueName
MAX_BYTES = 4 * 1024 * 1024  # a CAP document with many detailed polygons stays well below this
_OLD_NAMESPACES = {"urn:oasis:names:tc:emergency:cap:1.1": "CAP 1.1",
                   "http://www.incident.com/cap/1.0": "CAP 1.0"}
_DSIG = "http://www.w3.org/2000/09/xmldsig#"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

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


class ValuePair(msgspec.Struct, frozen=True, kw_only=True):
    """One CAP <eventCode>, <parameter> or <geocode>: ``value_name`` names the code system
    (SAME, UGC, BLOCKCHANNEL ...), ``value`` is the code. A name may appear in several pairs."""

    value_name: str
    value: str


def values(pairs: Iterable[ValuePair], value_name: str) -> list[str]:
    """Every value given under ``value_name`` in ``pairs``, in document order."""
    return [pair.value for pair in pairs if pair.value_name == value_name]


class Area(msgspec.Struct, frozen=True, kw_only=True):
    """CAP <area>. Polygon points are (lat, lon). ``zones`` are our named zones, written as
    geocode valueName ``ECGW-ZONE`` so they survive a round trip through CAP."""

    area_desc: str
    polygons: list[list[tuple[float, float]]] = []
    circles: list[Circle] = []
    # Stored (AlertRecord JSON) under CAP's element name, as are the Info pair lists: records
    # written while these were dicts hold an always-empty "geocodes": {}, which decoding skips.
    geocodes: list[ValuePair] = msgspec.field(default_factory=list, name="geocode")
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
    event_codes: list[ValuePair] = msgspec.field(default_factory=list, name="event_code")
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    web: str = ""
    contact: str = ""
    parameters: list[ValuePair] = msgspec.field(default_factory=list, name="parameter")
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


def reference_of(alert: Alert) -> Reference:
    """The reference an Update, Cancel, Ack or Error uses to point at ``alert``."""
    return Reference(sender=alert.sender, identifier=alert.identifier, sent=alert.sent)


# --- writing --------------------------------------------------------------------------------

def cap_time(dt: datetime) -> str:
    """``dt`` as CAP writes a dateTime: ``2026-11-21T09:30:12+06:00``.

    CAP forbids "Z" and fractional seconds and writes UTC as ``-00:00`` (section 3.3.2).
    Microseconds are dropped (build alerts with ``microsecond=0`` if they must survive a round
    trip unchanged). Raises ProtocolError for a naive datetime or an offset with seconds.
    """
    offset = dt.utcoffset()
    if offset is None:
        raise ProtocolError(f"CAP dateTime {dt.isoformat()} has no timezone")
    seconds = int(offset.total_seconds())
    if seconds % 60 or offset.microseconds:
        raise ProtocolError(f"CAP dateTime {dt.isoformat()} has a UTC offset CAP cannot write")
    hours, minutes = divmod(abs(seconds) // 60, 60)
    sign = "-" if seconds <= 0 else "+"
    return f"{dt.replace(microsecond=0, tzinfo=None).isoformat()}{sign}{hours:02d}:{minutes:02d}"


def _num(value: float) -> str:
    # Shortest text that reads back as the same float, never in exponent form ("1e-05").
    return format(Decimal(repr(float(value))), "f")


def to_element(alert: Alert) -> etree._Element:
    """``alert`` as an lxml element (used to embed it, e.g. in an Atom entry). See ``to_xml``."""
    root = etree.Element(_q("alert"), nsmap={None: NS})
    try:
        _put(root, "identifier", alert.identifier)
        _put(root, "sender", alert.sender)
        _put(root, "sent", cap_time(alert.sent))
        _put(root, "status", alert.status)
        _put(root, "msgType", alert.msg_type)
        _put(root, "source", alert.source, optional=True)
        _put(root, "scope", alert.scope)
        _put(root, "restriction", alert.restriction, optional=True)
        _put(root, "addresses", alert.addresses, optional=True)
        for code in alert.codes:
            _put(root, "code", code)
        _put(root, "note", alert.note, optional=True)
        refs = " ".join(f"{r.sender},{r.identifier},{cap_time(r.sent)}" for r in alert.references)
        _put(root, "references", refs, optional=True)
        _put(root, "incidents", alert.incidents, optional=True)
        for info in alert.infos:
            _write_info(etree.SubElement(root, _q("info")), info)
    except ValueError as exc:  # lxml refuses text XML 1.0 cannot carry (control characters)
        raise ProtocolError(f"CAP alert {alert.identifier!r} cannot be written: {exc}") from exc
    return root


def to_xml(alert: Alert) -> bytes:
    """``alert`` as a CAP 1.2 XML document (UTF-8), elements in the schema's order.

    Writes what it is given: call ``validate`` first. An alert without ``problems`` gives a
    document that validates against the OASIS CAP 1.2 XSD. Empty optional strings are left
    out. Raises ProtocolError if the alert cannot be written at all (naive datetime, control
    characters).
    """
    return _DECLARATION + etree.tostring(to_element(alert), encoding="UTF-8", xml_declaration=False, pretty_print=True)


def _write_info(el: etree._Element, info: Info) -> None:
    _put(el, "language", info.language)
    for category in info.categories:
        _put(el, "category", category)
    _put(el, "event", info.event)
    for response in info.response_types:
        _put(el, "responseType", response)
    _put(el, "urgency", info.urgency)
    _put(el, "severity", info.severity)
    _put(el, "certainty", info.certainty)
    _pairs(el, "eventCode", info.event_codes)
    for name in ("effective", "onset", "expires"):
        when = getattr(info, name)
        if when is not None:
            _put(el, name, cap_time(when))
    _put(el, "senderName", info.sender_name, optional=True)
    _put(el, "headline", info.headline, optional=True)
    _put(el, "description", info.description, optional=True)
    _put(el, "instruction", info.instruction, optional=True)
    _put(el, "web", info.web, optional=True)
    _put(el, "contact", info.contact, optional=True)
    _pairs(el, "parameter", info.parameters)
    for area in info.areas:
        area_el = etree.SubElement(el, _q("area"))
        _put(area_el, "areaDesc", area.area_desc)
        for polygon in area.polygons:
            _put(area_el, "polygon", " ".join(f"{_num(lat)},{_num(lon)}" for lat, lon in polygon))
        for c in area.circles:
            _put(area_el, "circle", f"{_num(c.lat)},{_num(c.lon)} {_num(c.radius_km)}")
        zones = [ValuePair(value_name=ZONE_VALUE_NAME, value=zone) for zone in area.zones]
        _pairs(area_el, "geocode", [*area.geocodes, *zones])


def _put(parent: etree._Element, name: str, text: str, *, optional: bool = False) -> None:
    if text or not optional:
        etree.SubElement(parent, _q(name)).text = text


def _pairs(parent: etree._Element, name: str, pairs: list[ValuePair]) -> None:
    for pair in pairs:
        el = etree.SubElement(parent, _q(name))
        _put(el, "valueName", pair.value_name)
        _put(el, "value", pair.value)


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")  # RFC 3066, as xs:language
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def problems(alert: Alert) -> list[str]:
    """Every reason ``alert`` is not a valid CAP 1.2 message; empty if it is.

    Checks what the standard states and nothing more: the schema (enumerations, required values,
    formats) and the rules of CAP 1.2 section 3 that the schema cannot express. Profiles add
    rules CAP 1.2 does not have, and they are not checked here: any order of sent, effective,
    onset and expires (a Cancel may expire as it is sent), references on an Update or Cancel, an
    info block on an Alert, restriction text on a Restricted alert, unique or non-empty
    valueNames. Two rules are the model's own: ECGW-ZONE geocodes live in ``Area.zones``, and
    text must be something XML 1.0 can carry. Messages name the CAP element, 1-based.
    """
    found: list[str] = []
    add = found.append
    _identifier(add, "alert/identifier", alert.identifier)
    _identifier(add, "alert/sender", alert.sender)
    _aware(add, "alert/sent", alert.sent)
    _member(add, "alert/status", alert.status, Status)
    _member(add, "alert/msgType", alert.msg_type, MsgType)
    _member(add, "alert/scope", alert.scope, Scope)
    if alert.scope == "Private" and not alert.addresses.strip():
        add("alert/addresses: required when scope is Private")
    for i, ref in enumerate(alert.references, 1):
        where = f"alert/references entry {i}"
        _identifier(add, f"{where} sender", ref.sender)
        _identifier(add, f"{where} identifier", ref.identifier)
        _aware(add, f"{where} sent", ref.sent)
    for i, info in enumerate(alert.infos, 1):
        _info_problems(add, f"alert/info[{i}]", info)
    for where, text in _strings(msgspec.to_builtins(alert), "alert"):
        bad = _NOT_XML.search(text)
        if bad:
            add(f"{where}: contains U+{ord(bad.group()):04X}, which XML 1.0 cannot carry")
    return found


def validate(alert: Alert) -> None:
    """Raise ProtocolError listing every problem if ``alert`` is not a valid CAP 1.2 message."""
    found = problems(alert)
    if found:
        raise ProtocolError(f"CAP alert {alert.identifier!r} is not valid: " + "; ".join(found))


def _info_problems(add: Any, path: str, info: Info) -> None:
    if not _LANGUAGE.fullmatch(info.language):
        add(f"{path}/language: {info.language!r} is not an RFC 3066 language code like kk-KZ, ru-RU or en-US")
    if not info.categories:
        add(f"{path}/category: at least one category is required")
    for i, category in enumerate(info.categories, 1):
        _member(add, f"{path}/category[{i}]", category, Category)
    if not info.event.strip():
        add(f"{path}/event: required")
    for i, response in enumerate(info.response_types, 1):
        _member(add, f"{path}/responseType[{i}]", response, ResponseType)
    _member(add, f"{path}/urgency", info.urgency, Urgency)
    _member(add, f"{path}/severity", info.severity, Severity)
    _member(add, f"{path}/certainty", info.certainty, Certainty)
    for name in ("effective", "onset", "expires"):
        when = getattr(info, name)
        if when is not None:
            _aware(add, f"{path}/{name}", when)
    if info.web:
        parts = urlsplit(info.web)
        if not parts.scheme or not (parts.netloc or parts.path) or any(c.isspace() for c in info.web):
            add(f"{path}/web: {info.web[:60]!r} is not an absolute URI")
    for i, area in enumerate(info.areas, 1):
        _area_problems(add, f"{path}/area[{i}]", area)


def _area_problems(add: Any, path: str, area: Area) -> None:
    if not area.area_desc.strip():
        add(f"{path}/areaDesc: required")
    for i, polygon in enumerate(area.polygons, 1):
        where = f"{path}/polygon[{i}]"
        if len(polygon) < 4:
            add(f"{where}: needs at least 4 points (3 corners and the first again), got {len(polygon)}")
        elif polygon[0] != polygon[-1]:
            add(f"{where}: the last point must repeat the first to close the polygon")
        for j, (lat, lon) in enumerate(polygon, 1):
            _coordinates(add, f"{where} point {j}", lat, lon)
    for i, circle in enumerate(area.circles, 1):
        where = f"{path}/circle[{i}]"
        _coordinates(add, where, circle.lat, circle.lon)
        if not (math.isfinite(circle.radius_km) and circle.radius_km >= 0):
            add(f"{where}: radius {circle.radius_km} km must be a number of at least 0")
    if values(area.geocodes, ZONE_VALUE_NAME):
        add(f"{path}/geocode: valueName {ZONE_VALUE_NAME} is reserved for zones; put the zone in Area.zones")
    for i, zone in enumerate(area.zones, 1):
        if not zone.strip():
            add(f"{path}/zone {i}: a zone name cannot be empty")


def _identifier(add: Any, where: str, value: str) -> None:
    # CAP 3.2.1: no spaces, commas or restricted characters (< and &); references are built from these.
    if not value:
        add(f"{where}: required")
    bad = sorted({c for c in value if c.isspace() or c in ",<&"})
    if bad:
        add(f"{where}: {value[:60]!r} must not contain spaces, commas, '<' or '&' (found {''.join(bad)!r})")


def _aware(add: Any, where: str, when: datetime) -> None:
    if when.utcoffset() is None:
        add(f"{where}: has no timezone; CAP times carry a UTC offset")


def _member(add: Any, where: str, value: str, kind: Any) -> None:
    if value not in get_args(kind):
        add(f"{where}: {value!r} is not one of {', '.join(get_args(kind))}")


def _coordinates(add: Any, where: str, lat: float, lon: float) -> None:
    # CAP coordinate pairs are WGS 84 degrees, latitude then longitude.
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        add(f"{where}: latitude {lat} is outside -90..90")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        add(f"{where}: longitude {lon} is outside -180..180")


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, f"{where}/{key}")
            yield from _strings(item, f"{where}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value, 1):
            yield from _strings(item, f"{where}[{i}]")


__all__ = ["Alert", "Area", "Circle", "Info", "Reference", "ValuePair", "problems", "reference_of", "to_xml",
           "validate", "values"]
