"""RFC 5491 geodetic shapes of a PIDF-LO (the GML 3.1.1 subset and the GeoShape schema), read (pure).

All eight shapes: gml:Point, gml:Polygon (gml:posList or a sequence of gml:pos), gs:Circle, gs:Ellipse,
gs:ArcBand, gs:Sphere, gs:Ellipsoid, gs:Prism. Coordinates are WGS 84 (srsName EPSG::4326, or ::4979
with altitude), lengths in metres (uom EPSG::9001, the default when absent), angles in degrees
(EPSG::9102, the default) or radians (EPSG::9101). Anything else is a LocationError that names it.
Departures that leave the position certain (a missing srsName, a third coordinate in a 2-D CRS) are
accepted and reported in ``notes``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from xml.etree.ElementTree import Element

from gateway.protocols import shapes
from gateway.protocols.caller import Location, LocationSource
from gateway.protocols.shapes import LocationError, Position

GML = "http://www.opengis.net/gml"
GS = "http://www.opengis.net/pidflo/1.0"
OLD_GML = "urn:opengis:specification:gml:schema-xsd:feature:v3.0"  # RFC 4119's examples
PREFIXES = {GML: "gml", GS: "gs", OLD_GML: "gml", "urn:ietf:params:xml:ns:pidf:geopriv10:dynamic": "dyn",
            "urn:ietf:params:xml:ns:geopriv:conf": "con", "urn:ietf:params:xml:ns:pidf:geopriv10": "gp",
            "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr": "ca"}
CRS = {"urn:ogc:def:crs:EPSG::4326": 2, "urn:ogc:def:crs:EPSG::4979": 3}
_CRS_CODE = re.compile(r"(?:^|[:#/])(4326|4979)$")
METRE, DEGREE, RADIAN = "urn:ogc:def:uom:EPSG::9001", "urn:ogc:def:uom:EPSG::9102", "urn:ogc:def:uom:EPSG::9101"

Reader = Callable[[Element, LocationSource, int | None, list[str]], Location]


def name(tag: str) -> str:
    """``gs:Circle`` for a known namespace, ``{uri}local`` otherwise."""
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    prefix = PREFIXES.get(namespace)
    return f"{prefix}:{local}" if prefix else (f"{{{namespace[:60]}}}{local[:40]}" if namespace else local[:40])


def is_geodetic(tag: str) -> bool:
    """An element of GML or GeoShape: meant as a shape, so refused by name if not one we read."""
    return tag.startswith((f"{{{GML}}}", f"{{{GS}}}", f"{{{OLD_GML}}}"))


def read_shape(el: Element, source: LocationSource, notes: list[str]) -> Location:
    """The Location an RFC 5491 shape element describes. Raises LocationError saying what is wrong."""
    if el.tag.endswith("}location"):
        raise LocationError("obsolete RFC 4119 form (gml:location): RFC 5491 puts a shape such as gml:Point "
                            "directly in location-info")
    reader = READERS.get(el.tag)
    if reader is None:
        raise LocationError(f"unsupported shape {name(el.tag)}")
    try:
        return reader(el, source, _crs(el, notes), notes)
    except LocationError as exc:
        raise LocationError(f"{name(el.tag)}: {exc}") from exc


def _crs(el: Element, notes: list[str]) -> int | None:
    """2 or 3 dimensions from srsName; None when absent (then the count of numbers decides)."""
    srs = el.get("srsName")
    if srs is None:
        notes.append(f"{name(el.tag)} has no srsName: WGS 84 assumed (RFC 5491 requires one)")
        return None
    if srs in CRS:
        return CRS[srs]
    match = _CRS_CODE.search(srs.strip())
    if match is None:
        raise LocationError(f"unsupported CRS {srs[:60]!r}: RFC 5491 allows urn:ogc:def:crs:EPSG::4326 "
                            "(2-D) and urn:ogc:def:crs:EPSG::4979 (3-D)")
    notes.append(f"{name(el.tag)} names its CRS {srs[:60]!r}: read as EPSG::{match.group(1)}")
    return 2 if match.group(1) == "4326" else 3


def _point(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    return shapes.point(source, _pos(el, dims, notes))


def _circle(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    return shapes.circle(source, _pos(el, dims, notes), _length(el, "radius"))


def _sphere(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    return shapes.sphere(source, _pos(el, dims, notes), _length(el, "radius"))


def _ellipse(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    return shapes.ellipse(source, _pos(el, dims, notes), _length(el, "semiMajorAxis"),
                          _length(el, "semiMinorAxis"), _angle(el, "orientation", 0.0))


def _ellipsoid(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    return shapes.ellipsoid(source, _pos(el, dims, notes), _length(el, "semiMajorAxis"),
                            _length(el, "semiMinorAxis"), _length(el, "verticalAxis"),
                            _angle(el, "orientation", 0.0))


def _arc_band(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    return shapes.arc_band(source, _pos(el, dims, notes), _length(el, "innerRadius"), _length(el, "outerRadius"),
                           _angle(el, "startAngle", None), _angle(el, "openingAngle", None))


def _polygon(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    return shapes.polygon(source, _ring(el, dims, notes))


def _prism(el: Element, source: LocationSource, dims: int | None, notes: list[str]) -> Location:
    base = _only(el, GS, "base")
    return shapes.prism(source, _ring(_only(base, GML, "Polygon"), dims, notes), _length(el, "height"))


def _only(el: Element, namespace: str, local: str) -> Element:
    found = el.findall(f"{{{namespace}}}{local}")
    if not found:
        raise LocationError(f"no {PREFIXES[namespace]}:{local}")
    if len(found) > 1:
        raise LocationError(f"{PREFIXES[namespace]}:{local} given {len(found)} times")
    return found[0]


def _ring(polygon: Element, dims: int | None, notes: list[str]) -> list[Position]:
    """The exterior ring's positions, from a gml:posList or a sequence of gml:pos."""
    ring = _only(_only(polygon, GML, "exterior"), GML, "LinearRing")
    if polygon.find(f"{{{GML}}}interior") is not None:
        notes.append("gml:interior ring ignored: RFC 5491 polygons have none")
    pos_list, poses = ring.findall(f"{{{GML}}}posList"), ring.findall(f"{{{GML}}}pos")
    if len(pos_list) > 1 or (pos_list and poses):
        raise LocationError("gml:LinearRing mixes several gml:posList / gml:pos forms")
    if poses:
        return [_position(p, dims, notes) for p in poses]
    if not pos_list:
        raise LocationError("no position (gml:posList or gml:pos missing)")
    numbers = shapes.numbers(_text(pos_list[0]))
    declared = pos_list[0].get("srsDimension")
    step = 3 if declared == "3" or (dims == 3 and declared != "2") else 2
    if len(numbers) % step:
        raise LocationError(f"gml:posList of {len(numbers)} numbers does not hold whole {step}-D positions")
    return [shapes.position(numbers[i:i + step], "gml:posList") for i in range(0, len(numbers), step)]


def _pos(el: Element, dims: int | None, notes: list[str]) -> Position:
    found = el.findall(f"{{{GML}}}pos")
    if not found:
        raise LocationError("no position (gml:pos missing)")
    if len(found) > 1:
        raise LocationError(f"gml:pos given {len(found)} times")
    return _position(found[0], dims, notes)


def _position(el: Element, dims: int | None, notes: list[str]) -> Position:
    pos = shapes.position(shapes.numbers(_text(el)), "gml:pos")
    if dims == 2 and pos[2] is not None:
        notes.append("gml:pos has 3 numbers in the 2-D CRS EPSG::4326: the third is kept as altitude")
    elif dims == 3 and pos[2] is None:
        notes.append("gml:pos has 2 numbers in the 3-D CRS EPSG::4979: no altitude")
    return pos


def _text(el: Element) -> str:
    return "".join(el.itertext()).strip()


def _number(el: Element) -> float:
    values = shapes.numbers(_text(el))
    if len(values) != 1:
        raise LocationError(f"{name(el.tag)}: expected one number, got {_text(el)[:40]!r}")
    return values[0]


def _length(el: Element, local: str) -> float:
    child = _only(el, GS, local)
    uom = child.get("uom", METRE)
    if uom != METRE:
        raise LocationError(f"gs:{local}: unsupported unit {uom[:60]!r}, expected metres ({METRE})")
    return _number(child)


def _angle(el: Element, local: str, default: float | None) -> float:
    """An angle in degrees; ``default`` None makes it required."""
    found = el.findall(f"{{{GS}}}{local}")
    if not found and default is not None:
        return default
    child = _only(el, GS, local)
    uom = child.get("uom", DEGREE)
    if uom not in (DEGREE, RADIAN):
        raise LocationError(f"gs:{local}: unsupported angle unit {uom[:60]!r}, expected {DEGREE} (degrees) or "
                            f"{RADIAN} (radians)")
    value = _number(child)
    return math.degrees(value) if uom == RADIAN else value


READERS: dict[str, Reader] = {
    f"{{{GML}}}Point": _point, f"{{{GML}}}Polygon": _polygon, f"{{{GS}}}Circle": _circle,
    f"{{{GS}}}Ellipse": _ellipse, f"{{{GS}}}ArcBand": _arc_band, f"{{{GS}}}Sphere": _sphere,
    f"{{{GS}}}Ellipsoid": _ellipsoid, f"{{{GS}}}Prism": _prism,
}
