"""PIDF-LO (RFC 4119, RFC 5491 shapes, RFC 5139 civic) building and parsing. Pure: no I/O.

Parsing goes through defusedxml: a PIDF-LO comes from the network and may be hostile
(entity expansion, external entities). Anything we cannot understand is a LocationError,
never an exception that could cost the caller their call.
"""

from __future__ import annotations

import math
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway.geo import polygon_centroid, radius_around
from gateway.protocols.caller import Location, LocationSource

NS = {
    "pidf": "urn:ietf:params:xml:ns:pidf",
    "dm": "urn:ietf:params:xml:ns:pidf:data-model",
    "gp": "urn:ietf:params:xml:ns:pidf:geopriv10",
    "gml": "http://www.opengis.net/gml",
    "gs": "http://www.opengis.net/pidflo/1.0",
    "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr",
}
MAX_BYTES = 64 * 1024
CIVIC_FIELDS = ("country", "A1", "A2", "A3", "A4", "A5", "A6", "PRD", "POD", "STS", "HNO", "HNS",
                "LMK", "LOC", "FLR", "NAM", "PC", "BLD", "UNIT", "ROOM", "SEAT", "PLC", "RD")


class LocationError(ValueError):
    """A location object that is malformed, hostile or out of range (the remote side's fault)."""


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
    found: list[Location] = []
    for info in root.iter(_q("gp", "location-info")):
        method = _text(root.find(f".//{_q('gp', 'method')}")) or ""
        for child in info:
            found.append(_parse_shape(child, source, method[:32]))
    if not found:
        raise LocationError("PIDF-LO carries no location-info")
    return found


def _text(el: Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _parse_shape(el: Element, source: LocationSource, method: str) -> Location:
    tag = el.tag
    if tag == _q("ca", "civicAddress"):
        civic = {f: _text(el.find(_q("ca", f)))[:128] for f in CIVIC_FIELDS if el.find(_q("ca", f)) is not None}
        return Location(source=source, shape="civic", civic=civic, method=method)
    if tag == _q("gml", "Polygon"):
        return _polygon(el, source, method)
    pos = _pos(el.find(_q("gml", "pos")))
    if tag == _q("gml", "Point"):
        return Location(source=source, shape="point", lat=pos[0], lon=pos[1], method=method)
    if tag == _q("gs", "Circle"):
        radius = _metres(el.find(_q("gs", "radius")))
        return Location(source=source, shape="circle", lat=pos[0], lon=pos[1], radius_m=radius, method=method)
    if tag == _q("gs", "Ellipse"):
        major = _metres(el.find(_q("gs", "semiMajorAxis")))
        minor = _metres(el.find(_q("gs", "semiMinorAxis")))
        return Location(source=source, shape="ellipse", lat=pos[0], lon=pos[1], radius_m=max(major, minor),
                        semi_minor_m=min(major, minor), orientation_deg=_degrees(el.find(_q("gs", "orientation"))),
                        method=method)
    raise LocationError(f"unsupported PIDF-LO shape {tag!r}")


def _polygon(el: Element, source: LocationSource, method: str) -> Location:
    pos_list = el.find(f".//{_q('gml', 'posList')}")
    if pos_list is not None:
        numbers = _numbers(_text(pos_list))
        three_d = pos_list.get("srsDimension") == "3" or "4979" in el.get("srsName", "")
        step = 3 if three_d else 2  # EPSG 4979: lat lon altitude triplets
        if len(numbers) % step:
            raise LocationError(f"gml:posList of {len(numbers)} numbers does not hold whole positions")
        pairs = [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), step)]
    else:
        pairs = [_pos(p) for p in el.iter(_q("gml", "pos"))]
    points = polygon_points(pairs)
    lat, lon = polygon_centroid(points)
    return Location(source=source, shape="polygon", lat=lat, lon=lon, radius_m=radius_around(lat, lon, points),
                    points=points, method=method)


def polygon_points(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Validated polygon vertices (closing vertex dropped). Raises LocationError."""
    if len(pairs) > 2 and pairs[0] == pairs[-1]:
        pairs = pairs[:-1]
    if not 3 <= len(pairs) <= 500:
        raise LocationError(f"polygon needs 3-500 distinct vertices, got {len(pairs)}")
    for lat, lon in pairs:
        check_coordinates(lat, lon)
    return pairs


def _numbers(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split()]
    except ValueError as exc:
        raise LocationError(f"non-numeric coordinate in {text[:60]!r}") from exc
    if any(not math.isfinite(v) for v in values):
        raise LocationError("coordinate is not a finite number")
    return values


def _pos(el: Element | None) -> tuple[float, float]:
    values = _numbers(_text(el))
    if len(values) not in (2, 3):
        raise LocationError(f"gml:pos needs 'lat lon', got {len(values)} numbers")
    check_coordinates(values[0], values[1])
    return values[0], values[1]


def check_coordinates(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise LocationError(f"coordinates out of range: {lat}, {lon}")


def _number(el: Element | None, default: float) -> float:
    if el is None:
        return default
    values = _numbers(_text(el))
    if len(values) != 1:
        raise LocationError("expected one number")
    return values[0]


def _degrees(el: Element | None) -> float:
    """An RFC 5491 angle in degrees: uom EPSG 9102 is degrees, EPSG 9101 radians."""
    value = _number(el, 0.0)
    return math.degrees(value) if el is not None and "9101" in el.get("uom", "") else value


def _metres(el: Element | None) -> float:
    if el is None:
        raise LocationError("missing distance")
    value = _number(el, 0.0)
    if not 0 <= value <= 1_000_000:
        raise LocationError(f"distance {value} m out of range")
    if "9001" not in el.get("uom", "9001"):
        raise LocationError(f"unsupported unit {el.get('uom')!r}, expected metres (EPSG 9001)")
    return value
