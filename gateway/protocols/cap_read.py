"""Reading CAP 1.2 documents into the model of ``gateway.protocols.cap`` (``from_xml``). Pure: no I/O.

Theory of operation: the schema's sequences are kept as data tables below; each element's
children are checked against its table (order, counts, namespace) before any value is read,
so a malformed document is refused with the element path and the fault, never half-read.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, get_args
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway.errors import ProtocolError
from gateway.protocols.cap import (
    _DSIG,
    _OLD_NAMESPACES,
    MAX_BYTES,
    NS,
    ZONE_VALUE_NAME,
    Alert,
    Area,
    Category,
    Certainty,
    Circle,
    Info,
    MsgType,
    Reference,
    ResponseType,
    Scope,
    Severity,
    Status,
    Urgency,
    ValuePair,
    values,
)

# --- reading --------------------------------------------------------------------------------

# The schema's sequences as data: (element, minOccurs, maxOccurs). None means unbounded.
_Seq = tuple[tuple[str, int, int | None], ...]
_ALERT: _Seq = (("identifier", 1, 1), ("sender", 1, 1), ("sent", 1, 1), ("status", 1, 1), ("msgType", 1, 1),
                ("source", 0, 1), ("scope", 1, 1), ("restriction", 0, 1), ("addresses", 0, 1),
                ("code", 0, None), ("note", 0, 1), ("references", 0, 1), ("incidents", 0, 1), ("info", 0, None))
_INFO: _Seq = (("language", 0, 1), ("category", 1, None), ("event", 1, 1), ("responseType", 0, None),
               ("urgency", 1, 1), ("severity", 1, 1), ("certainty", 1, 1), ("audience", 0, 1),
               ("eventCode", 0, None), ("effective", 0, 1), ("onset", 0, 1), ("expires", 0, 1),
               ("senderName", 0, 1), ("headline", 0, 1), ("description", 0, 1), ("instruction", 0, 1),
               ("web", 0, 1), ("contact", 0, 1), ("parameter", 0, None), ("resource", 0, None), ("area", 0, None))
_AREA: _Seq = (("areaDesc", 1, 1), ("polygon", 0, None), ("circle", 0, None), ("geocode", 0, None),
               ("altitude", 0, 1), ("ceiling", 0, 1))
_PAIR: _Seq = (("valueName", 1, 1), ("value", 1, 1))
_RESOURCE: _Seq = (("resourceDesc", 1, 1), ("mimeType", 1, 1), ("size", 0, 1), ("uri", 0, 1),
                   ("derefUri", 0, 1), ("digest", 0, 1))
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d")
_DECIMAL = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)")
_INTEGER = re.compile(r"[-+]?\d+")  # xs:integer


def from_xml(data: bytes) -> Alert:
    """Read a CAP 1.2 document. Raises ProtocolError naming the element and the problem.

    Refuses any DTD (entity expansion bombs, external entities), documents over MAX_BYTES,
    other CAP versions, elements out of the schema's order, and values outside CAP's
    enumerations and formats, a <ceiling> without <altitude>, and a malformed <resource> (which
    is then dropped). Every eventCode, parameter and geocode is kept in document order, repeated
    valueNames included; ECGW-ZONE geocodes become ``Area.zones``. Does not apply the semantic
    rules: call ``problems`` for those.
    """
    if len(data) > MAX_BYTES:
        raise ProtocolError(f"CAP document of {len(data)} bytes exceeds the {MAX_BYTES} byte limit")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ProtocolError(f"CAP document refused as hostile XML ({type(exc).__name__}): a CAP "
                            "document has no DTD or entity declarations") from exc
    except SafeET.ParseError as exc:
        raise ProtocolError(f"CAP document is not well-formed XML: {exc}") from exc
    except (LookupError, UnicodeError) as exc:  # unknown declared encoding, undecodable bytes
        raise ProtocolError(f"CAP document has an unusable encoding: {exc}") from exc
    ns, name = _split(root.tag)
    if ns != NS or name != "alert":
        raise ProtocolError(_root_problem(ns, name))
    return _read_alert(root)


def _root_problem(ns: str, name: str) -> str:
    if name == "alert" and ns in _OLD_NAMESPACES:
        return f"{_OLD_NAMESPACES[ns]} alert (namespace {ns}) is not supported: this gateway reads CAP 1.2 ({NS})"
    if name == "alert" and not ns:
        return f"<alert> has no namespace: a CAP 1.2 alert is in namespace {NS}"
    where = f" in namespace {ns}" if ns else ""
    return f"root element is <{name}>{where}, expected a CAP 1.2 <alert> in namespace {NS}"


def _read_alert(root: Element) -> Alert:
    kids = _children(root, _ALERT, "alert")
    sent = _time(kids["sent"][0], "alert/sent")
    return Alert(
        identifier=_text(kids["identifier"][0], "alert/identifier"),
        sender=_text(kids["sender"][0], "alert/sender"),
        sent=sent,
        status=_enum(kids["status"][0], "alert/status", Status),
        msg_type=_enum(kids["msgType"][0], "alert/msgType", MsgType),
        scope=_enum(kids["scope"][0], "alert/scope", Scope),
        source=_opt(kids, "source", "alert"),
        restriction=_opt(kids, "restriction", "alert"),
        addresses=_opt(kids, "addresses", "alert"),
        codes=[_text(el, f"alert/code[{i}]") for i, el in enumerate(kids["code"], 1)],
        note=_opt(kids, "note", "alert"),
        references=_references(_opt(kids, "references", "alert")),
        incidents=_opt(kids, "incidents", "alert"),
        infos=[_read_info(el, f"alert/info[{i}]") for i, el in enumerate(kids["info"], 1)],
    )


def _read_info(el: Element, path: str) -> Info:
    kids = _children(el, _INFO, path)
    _check_resources(kids["resource"], path)
    times = {n: _time(kids[n][0], f"{path}/{n}") if kids[n] else None for n in ("effective", "onset", "expires")}
    return Info(
        language=_opt(kids, "language", path).strip() if kids["language"] else "en-US",  # the schema's default
        categories=[_enum(c, f"{path}/category[{i}]", Category) for i, c in enumerate(kids["category"], 1)],
        event=_text(kids["event"][0], f"{path}/event"),
        response_types=[_enum(r, f"{path}/responseType[{i}]", ResponseType)
                        for i, r in enumerate(kids["responseType"], 1)],
        urgency=_enum(kids["urgency"][0], f"{path}/urgency", Urgency),
        severity=_enum(kids["severity"][0], f"{path}/severity", Severity),
        certainty=_enum(kids["certainty"][0], f"{path}/certainty", Certainty),
        event_codes=_read_pairs(kids["eventCode"], f"{path}/eventCode"),
        effective=times["effective"],
        onset=times["onset"],
        expires=times["expires"],
        sender_name=_opt(kids, "senderName", path),
        headline=_opt(kids, "headline", path),
        description=_opt(kids, "description", path),
        instruction=_opt(kids, "instruction", path),
        web=_opt(kids, "web", path).strip(),
        contact=_opt(kids, "contact", path),
        parameters=_read_pairs(kids["parameter"], f"{path}/parameter"),
        areas=[_read_area(a, f"{path}/area[{i}]") for i, a in enumerate(kids["area"], 1)],
    )


def _check_resources(resources: list[Element], path: str) -> None:
    # Resources are dropped, but a malformed one still makes the document invalid.
    for i, el in enumerate(resources, 1):
        where = f"{path}/resource[{i}]"
        text = {name: [_text(child, f"{where}/{name}") for child in found]
                for name, found in _children(el, _RESOURCE, where).items()}
        for size in text["size"]:
            if not _INTEGER.fullmatch(size.strip()):
                raise ProtocolError(f"CAP <{where}/size>: {size[:40]!r} is not a whole number of bytes")
        for uri in text["uri"]:
            # CAP 3.2.3: a full absolute URI, or a relative one naming the <derefUri> content.
            if uri.strip() and not (urlsplit(uri.strip()).scheme or text["derefUri"]):
                raise ProtocolError(f"CAP <{where}/uri>: {uri[:60]!r} is relative, which CAP allows only "
                                    "beside a <derefUri>")


def _read_area(el: Element, path: str) -> Area:
    kids = _children(el, _AREA, path)
    pairs = _read_pairs(kids["geocode"], f"{path}/geocode")
    if kids["ceiling"] and not kids["altitude"]:  # CAP 3.2.4: ceiling MUST NOT be used without altitude
        raise ProtocolError(f"CAP <{path}/ceiling>: must not be used without <altitude>")
    for name in ("altitude", "ceiling"):
        if kids[name]:
            _number(_text(kids[name][0], f"{path}/{name}"), f"{path}/{name}")
    return Area(
        area_desc=_text(kids["areaDesc"][0], f"{path}/areaDesc"),
        polygons=[_polygon(_text(p, f"{path}/polygon[{i}]"), f"{path}/polygon[{i}]")
                  for i, p in enumerate(kids["polygon"], 1)],
        circles=[_circle(_text(c, f"{path}/circle[{i}]"), f"{path}/circle[{i}]")
                 for i, c in enumerate(kids["circle"], 1)],
        geocodes=[pair for pair in pairs if pair.value_name != ZONE_VALUE_NAME],
        zones=values(pairs, ZONE_VALUE_NAME),
    )


def _children(el: Element, seq: _Seq, path: str) -> dict[str, list[Element]]:
    """The children of ``el`` by name, after checking them against the schema sequence ``seq``."""
    _no_attributes(el, path)
    for stray in (el.text, *(child.tail for child in el)):
        if stray and stray.strip():
            raise ProtocolError(f"CAP <{path}>: unexpected text {stray.strip()[:40]!r} between elements")
    index = {name: i for i, (name, _, _) in enumerate(seq)}
    found: dict[str, list[Element]] = {name: [] for name, _, _ in seq}
    present = {_split(child.tag)[1] for child in el}
    pos, signed = 0, False
    for child in el:
        ns, name = _split(child.tag)
        if ns == _DSIG and seq is _ALERT:
            signed = True  # an enveloped XML signature ends the alert; we do not check signatures
            continue
        if signed:
            raise ProtocolError(f"CAP <{path}>: <{name}> after the XML signature")
        if ns != NS or name not in index:
            where = f" (namespace {ns or 'none'})" if ns != NS else ""
            raise ProtocolError(f"CAP <{path}>: unexpected element <{name}>{where}")
        if index[name] < pos:
            raise ProtocolError(f"CAP <{path}>: <{name}> is out of order, it must come before <{seq[pos][0]}>")
        for skipped, minimum, _ in seq[pos:index[name]]:
            if len(found[skipped]) < minimum and skipped in present:
                raise ProtocolError(f"CAP <{path}>: <{skipped}> is out of order, it must come before <{name}>")
            if len(found[skipped]) < minimum:
                raise ProtocolError(f"CAP <{path}>: <{skipped}> is missing (it comes before <{name}>)")
        pos = index[name]
        if seq[pos][2] is not None and len(found[name]) == seq[pos][2]:
            raise ProtocolError(f"CAP <{path}>: <{name}> may appear only once")
        found[name].append(child)
    for name, minimum, _ in seq[pos:]:
        if len(found[name]) < minimum:
            raise ProtocolError(f"CAP <{path}>: required <{name}> is missing")
    return found


def _no_attributes(el: Element, path: str) -> None:
    if el.attrib:
        raise ProtocolError(f"CAP <{path}>: unexpected attribute {next(iter(el.attrib))!r}")


def _text(el: Element, path: str) -> str:
    _no_attributes(el, path)
    if len(el):
        raise ProtocolError(f"CAP <{path}>: must hold text, not the element <{_split(el[0].tag)[1]}>")
    return el.text or ""


def _opt(kids: dict[str, list[Element]], name: str, path: str) -> str:
    return _text(kids[name][0], f"{path}/{name}") if kids[name] else ""


def _enum(el: Element, path: str, kind: Any) -> Any:
    value = _text(el, path).strip()
    allowed = get_args(kind)
    if value not in allowed:
        raise ProtocolError(f"CAP <{path}>: {value!r} is not one of {', '.join(allowed)}")
    return value


def _parse_time(text: str, path: str) -> datetime:
    if not _TIME.fullmatch(text):
        raise ProtocolError(f"CAP <{path}>: {text[:40]!r} is not a CAP dateTime like 2026-11-21T09:30:12+06:00 "
                            "(no 'Z', no fractional seconds)")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProtocolError(f"CAP <{path}>: {text!r} is not a valid date and time ({exc})") from exc


def _time(el: Element, path: str) -> datetime:
    return _parse_time(_text(el, path).strip(), path)


def _references(text: str) -> list[Reference]:
    refs = []
    for i, item in enumerate(text.split(), 1):
        parts = item.split(",")
        if len(parts) != 3:
            raise ProtocolError(f"CAP <alert/references>: entry {i} {item[:60]!r} is not 'sender,identifier,sent'")
        refs.append(Reference(sender=parts[0], identifier=parts[1],
                              sent=_parse_time(parts[2], f"alert/references entry {i}")))
    return refs


def _read_pairs(elements: list[Element], path: str) -> list[ValuePair]:
    pairs = []
    for i, el in enumerate(elements, 1):
        kids = _children(el, _PAIR, f"{path}[{i}]")
        pairs.append(ValuePair(value_name=_text(kids["valueName"][0], f"{path}[{i}]/valueName"),
                               value=_text(kids["value"][0], f"{path}[{i}]/value")))
    return pairs


def _number(text: str, path: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ProtocolError(f"CAP <{path}>: {text[:40]!r} is not a decimal number")
    return float(text)


def _point(text: str, path: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise ProtocolError(f"CAP <{path}>: point {text[:40]!r} is not 'lat,lon'")
    return _number(parts[0], path), _number(parts[1], path)


def _polygon(text: str, path: str) -> list[tuple[float, float]]:
    return [_point(pair, path) for pair in text.split()]


def _circle(text: str, path: str) -> Circle:
    parts = text.split()
    if len(parts) != 2:
        raise ProtocolError(f"CAP <{path}>: {text[:60]!r} is not 'lat,lon radius'")
    lat, lon = _point(parts[0], path)
    return Circle(lat=lat, lon=lon, radius_km=_number(parts[1], path))


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag
