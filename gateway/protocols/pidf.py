"""PIDF-LO (RFC 4119, RFC 5491 shapes, RFC 5139/6848 civic, RFC 7459 confidence) building and parsing.

Pure: no I/O. ``parse_document`` reads a whole document (bytes or str) into every location it carries
(shape, civic fields, confidence, method, timestamp) plus notes on what was ignored or assumed, for the
incident's timeline; ``parse`` is the same returning the locations only. A document is refused (a
LocationError saying what is wrong) only when not one usable location is left: elements of location-info
that are no shape (RFC 5962 dynamics, unknown extensions) are noted and skipped, and a bad shape next to
a good one is noted and the good one kept.

Parsing goes through defusedxml: a PIDF-LO comes from the network and may be hostile (entity expansion,
external entities). Anything we cannot understand is a LocationError, never an exception that could cost
the caller their call.
"""

from __future__ import annotations

import math
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import msgspec
from defusedxml import DefusedXmlException

from gateway.protocols import pidf_shapes
from gateway.protocols.caller import Location, LocationSource
from gateway.protocols.pidf_civic import CIVIC_FIELDS, civic_text, is_civic, read_civic
from gateway.protocols.shapes import LocationError, check_coordinates, polygon_points

__all__ = ["CIVIC_FIELDS", "MAX_BYTES", "NS", "LocationError", "PidfDocument", "build", "check_coordinates",
           "parse", "parse_document", "polygon_points"]

NS = {
    "pidf": "urn:ietf:params:xml:ns:pidf",
    "dm": "urn:ietf:params:xml:ns:pidf:data-model",
    "gp": "urn:ietf:params:xml:ns:pidf:geopriv10",
    "gml": "http://www.opengis.net/gml",
    "gs": "http://www.opengis.net/pidflo/1.0",
    "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr",
}
CONFIDENCE = "urn:ietf:params:xml:ns:geopriv:conf"  # RFC 7459
DYNAMIC = "urn:ietf:params:xml:ns:pidf:geopriv10:dynamic"  # RFC 5962
PDFS = ("unknown", "normal", "rectangular")
MAX_BYTES = 64 * 1024
MAX_NOTES = 20


class PidfDocument(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a PIDF-LO said about where the caller is."""

    entity: str  # the presentity (``presence/@entity``), e.g. "sip:+43123456789@ims.mno.at"
    locations: list[Location]  # one per shape or civic address, in document order
    notes: list[str] = []  # what was ignored or assumed, and shapes refused next to usable ones


def _q(prefix: str, tag: str) -> str:
    return f"{{{NS[prefix]}}}{tag}"


# --- building (used by the simulator and tests) -------------------------------------------

def build(shape: str, *, lat: float = 0.0, lon: float = 0.0, radius: float = 0.0,
          semi_major: float = 0.0, semi_minor: float = 0.0, orientation: float = 0.0,
          points: list[tuple[float, float]] | None = None, civic: dict[str, str] | None = None,
          entity: str = "sip:caller@operator.invalid", method: str = "GPS") -> str:
    """A PIDF-LO document with one location in the given RFC 5491 shape."""
    body = _shape_xml(shape, lat, lon, radius, semi_major, semi_minor, orientation, points or [], civic or {})
    ns = " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items() if p != "pidf")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="{NS["pidf"]}" {ns} entity="{_esc(entity)}">'
        f'<dm:device id="caller"><gp:geopriv><gp:location-info>{body}</gp:location-info>'
        f"<gp:usage-rules/><gp:method>{_esc(method)}</gp:method></gp:geopriv></dm:device></presence>"
    )


def _shape_xml(shape: str, lat: float, lon: float, radius: float, semi_major: float, semi_minor: float,
               orientation: float, points: list[tuple[float, float]], civic: dict[str, str]) -> str:
    srs = 'srsName="urn:ogc:def:crs:EPSG::4326"'
    metre = 'uom="urn:ogc:def:uom:EPSG::9001"'
    pos = f"<gml:pos>{lat:.6f} {lon:.6f}</gml:pos>"
    if shape == "point":
        return f"<gml:Point {srs}>{pos}</gml:Point>"
    if shape == "circle":
        return f"<gs:Circle {srs}>{pos}<gs:radius {metre}>{radius:g}</gs:radius></gs:Circle>"
    if shape == "ellipse":
        return (f"<gs:Ellipse {srs}>{pos}<gs:semiMajorAxis {metre}>{semi_major:g}</gs:semiMajorAxis>"
                f"<gs:semiMinorAxis {metre}>{semi_minor:g}</gs:semiMinorAxis>"
                f'<gs:orientation uom="urn:ogc:def:uom:EPSG::9102">{orientation:g}</gs:orientation></gs:Ellipse>')
    if shape == "polygon":
        ring = points + points[:1] if points and points[0] != points[-1] else points
        coords = " ".join(f"{a:.6f} {b:.6f}" for a, b in ring)
        return (f"<gml:Polygon {srs}><gml:exterior><gml:LinearRing><gml:posList>{coords}</gml:posList>"
                "</gml:LinearRing></gml:exterior></gml:Polygon>")
    if shape == "civic":
        inner = "".join(f"<ca:{k}>{_esc(v)}</ca:{k}>" for k, v in civic.items() if k in CIVIC_FIELDS)
        return f"<ca:civicAddress>{inner}</ca:civicAddress>"
    raise ValueError(f"unknown shape {shape!r}")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# --- parsing --------------------------------------------------------------------------------

def parse(document: str | bytes, source: LocationSource = "pidf-lo") -> list[Location]:
    """Every location in a PIDF-LO document. Raises LocationError for malformed or hostile input."""
    return parse_document(document, source).locations


def parse_document(document: str | bytes, source: LocationSource = "pidf-lo") -> PidfDocument:
    """Every location in a PIDF-LO, with notes. Raises LocationError when it holds no usable location."""
    root = _root(document)
    parents = {child: parent for parent in root.iter() for child in parent}
    notes: list[str] = []
    errors: list[str] = []
    ignored: list[str] = []
    found: list[Location] = []
    infos = list(root.iter(_q("gp", "location-info")))
    for info in infos:
        found += _location_info(info, source, _context(info, parents, root, notes), notes, errors, ignored)
    if not found:
        raise LocationError(_nothing_usable(infos, errors, ignored))
    notes += [f"refused: {e}" for e in errors]
    entity = root.get("entity", "")[:200]
    return PidfDocument(entity=entity, locations=found, notes=list(dict.fromkeys(notes))[:MAX_NOTES])


def _root(document: str | bytes) -> Element:
    size = len(document.encode("utf-8", "surrogatepass")) if isinstance(document, str) else len(document)
    if size > MAX_BYTES:
        raise LocationError(f"PIDF-LO of {size} bytes exceeds the {MAX_BYTES} byte limit")
    try:
        root = SafeET.fromstring(document, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise LocationError(f"PIDF-LO rejected as hostile XML: {type(exc).__name__}") from exc
    except SafeET.ParseError as exc:
        raise LocationError(f"PIDF-LO is not well-formed XML: {exc}") from exc
    except (LookupError, UnicodeError) as exc:  # unknown declared encoding, unencodable text
        raise LocationError(f"PIDF-LO has an unusable encoding: {exc}") from exc
    if root.tag != _q("pidf", "presence"):
        raise LocationError(f"PIDF-LO root element is {root.tag!r}, expected pidf presence")
    return root


def _nothing_usable(infos: list[Element], errors: list[str], ignored: list[str]) -> str:
    if errors:
        return "; ".join(dict.fromkeys(errors))
    if not infos:
        return "no position in the document: PIDF-LO carries no location-info"
    if ignored:
        return f"no position in the document: location-info holds only {', '.join(dict.fromkeys(ignored))}"
    return "no position in the document: location-info is empty"


def _context(info: Element, parents: dict[Element, Element], root: Element, notes: list[str]) -> dict[str, str]:
    """The method of the location-info's geopriv and the timestamp of its tuple, device or person."""
    geopriv = parents.get(info)
    holder = info
    while parents.get(holder) is not None and parents[holder] is not root:
        holder = parents[holder]
    method = geopriv.find(_q("gp", "method")) if geopriv is not None else None
    if method is None and geopriv is not None:
        method = next((el for el in geopriv if _local(el) == "method"), None)
        if method is not None:
            notes.append(f"method given as {pidf_shapes.name(method.tag)}, not gp:method: read alike")
    stamp = next((el for el in holder if _local(el) == "timestamp"), None)
    return {"method": _text(method)[:32], "timestamp": _text(stamp)[:40]}


def _location_info(info: Element, source: LocationSource, context: dict[str, str], notes: list[str],
                   errors: list[str], ignored: list[str]) -> list[Location]:
    """The locations of one location-info: each shape and civic address, with its confidence."""
    confidence, pdf = _confidence(info, notes)
    found: list[Location] = []
    for el in info:
        if not isinstance(el.tag, str) or el.tag == f"{{{CONFIDENCE}}}confidence":
            continue
        try:
            loc = _location(el, source, notes, ignored)
        except LocationError as exc:
            errors.append(str(exc))
            continue
        if loc is not None:
            found.append(msgspec.structs.replace(loc, method=context["method"], timestamp=context["timestamp"],
                                                 confidence=confidence, confidence_pdf=pdf))
    return found


def _location(el: Element, source: LocationSource, notes: list[str], ignored: list[str]) -> Location | None:
    """One child of location-info as a Location; None for what is no location (noted)."""
    if is_civic(el):
        civic = read_civic(el, notes)
        return Location(source=source, shape="civic", civic=civic, address=civic_text(civic))
    if pidf_shapes.is_geodetic(el.tag):
        return pidf_shapes.read_shape(el, source, notes)
    if el.tag == f"{{{DYNAMIC}}}Dynamic":
        ignored.append("dyn:Dynamic (RFC 5962 movement: speed, heading; no position)")
        notes.append("dyn:Dynamic ignored: RFC 5962 movement (speed, heading), not a position")
    else:
        ignored.append(f"the unsupported element {pidf_shapes.name(el.tag)}")
        notes.append(f"unsupported element {pidf_shapes.name(el.tag)} in location-info ignored")
    return None


def _confidence(info: Element, notes: list[str]) -> tuple[float | None, str]:
    """RFC 7459 confidence (percent) and its pdf; a value that is no percentage is noted and dropped."""
    found = info.findall(f"{{{CONFIDENCE}}}confidence")
    if not found:
        return None, ""
    if len(found) > 1:
        notes.append(f"con:confidence given {len(found)} times: the first is used")
    pdf = (found[0].get("pdf") or "unknown").strip()
    if pdf not in PDFS:
        notes.append(f"con:confidence pdf {pdf[:20]!r} is none of {', '.join(PDFS)}: taken as unknown")
        pdf = "unknown"
    text = _text(found[0])
    if text == "unknown":
        return None, pdf
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 100):
        notes.append(f"con:confidence {text[:20]!r} is no percentage above 0 and at most 100: ignored")
        return None, pdf
    return value, pdf


def _local(el: Element) -> str:
    return el.tag.rpartition("}")[2] if isinstance(el.tag, str) else ""


def _text(el: Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""
