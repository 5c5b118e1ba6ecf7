"""ALI: location candidates from Asterisk's geolocation and the subscriber directory (pure).

The best candidate is chosen by one rule, shown to the dispatcher with every other candidate:
  1. candidates with coordinates beat civic-only ones;
  2. among those, the smallest uncertainty radius wins (an unstated radius counts as 5 km);
  3. ties go to the more direct source: pidf-lo (the network/handset) > aml > directory > manual.

``parse_location_info`` reads what Asterisk's res_geolocation (22.x, pidf_to_eprofile.xslt) made of a
PIDF-LO: ``shape="Circle",crs="2d",pos="43.2 76.9",radius="25"``. Asterisk names the shape by the
element's local name, turns srsName into ``crs`` 2d/3d/unknown, keeps each child as ``name="text"``
(angles as ``"30 degrees"``/``"0.5 radians"``) and lifts the positions of a Polygon or Prism out of
their rings: one ``posList``, or one ``pos`` per gml:pos. What it drops (confidence, method) comes
from ``GEOLOC_PROFILE(confidence)`` and ``(method)`` when the dialplan passes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import msgspec

from gateway.protocols import shapes
from gateway.protocols.caller import Location
from gateway.protocols.pidf_civic import MAX_FIELDS, MAX_VALUE, civic_text
from gateway.protocols.shapes import LocationError, Position

__all__ = ["MAX_INFO", "SOURCE_RANK", "UNKNOWN_RADIUS_M", "best", "civic_text", "parse_location_info", "rank"]

UNKNOWN_RADIUS_M = 5000.0
SOURCE_RANK = {"pidf-lo": 0, "aml": 1, "directory": 2, "manual": 3}
MAX_INFO = 16 * 1024
_PAIR = re.compile(r'\s*([A-Za-z][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|([^,"]*))\s*(?:,|$)')

Fields = dict[str, list[str]]


def parse_location_info(info: str, fmt: str, *, confidence: str = "", method: str = "") -> Location:
    """A Location from ``GEOLOC_PROFILE(location_info)`` / ``(format)``. Raises LocationError.

    Reads every shape Asterisk carries over from a PIDF-LO (Point, Circle, Ellipse, ArcBand, Sphere,
    Ellipsoid, Polygon and Prism, the last two from ``posList`` or repeated ``pos``) and civic addresses
    with all their fields. ``confidence`` is ``GEOLOC_PROFILE(confidence)`` (``pdf="normal",value="95"``)
    and ``method`` is ``GEOLOC_PROFILE(method)``; both are optional.
    """
    if len(info) > MAX_INFO:
        raise LocationError(f"location_info of {len(info)} characters is too long")
    pairs = _pairs(info)
    if fmt == "civicAddress":
        loc = _civic(pairs)
    elif fmt == "GML":
        loc = _gml(_group(pairs))
    elif fmt == "URI":
        raise LocationError("location by reference (format URI) carries no position; it is not dereferenced")
    else:
        raise LocationError(f"unsupported location format {fmt!r}")
    value, pdf = _confidence(confidence)
    return msgspec.structs.replace(loc, method=method.strip()[:32], confidence=value, confidence_pdf=pdf)


def _pairs(info: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    pos = 0
    while pos < len(info):
        match = _PAIR.match(info, pos)
        if not match or match.end() == pos:
            raise LocationError(f"cannot parse location_info near {info[pos:pos + 40]!r}")
        value = match.group(2) if match.group(2) is not None else match.group(3)
        fields.append((match.group(1), value.replace('\\"', '"').strip()))
        pos = match.end()
    return fields


def _group(pairs: list[tuple[str, str]]) -> Fields:
    fields: Fields = {}
    for key, value in pairs:
        fields.setdefault("pos" if key == "pos3d" else key, []).append(value)
    return fields


def _civic(pairs: list[tuple[str, str]]) -> Location:
    """Every civic field Asterisk passed on (its ``lang`` is the xml:lang attribute, not a field)."""
    if any(key in ("pos", "pos3d", "posList") for key, _ in pairs):
        return _misfiled(_group(pairs))
    civic: dict[str, str] = {}
    for key, value in pairs:
        key = key[:40]
        if key == "lang" or not value or (key not in civic and len(civic) >= MAX_FIELDS):
            continue
        civic[key] = f"{civic[key]}; {value}"[:MAX_VALUE] if key in civic else value[:MAX_VALUE]
    if not civic:
        raise LocationError("civicAddress without any value")
    return Location(source="pidf-lo", shape="civic", civic=civic, address=civic_text(civic))


def _misfiled(fields: Fields) -> Location:
    """A shape Asterisk labelled civicAddress: its XSLT does so when a location-info holds a civicAddress
    after the shape, and then writes the shape's children without ``shape`` or ``crs``. The children tell
    the shape (RFC 5491 gives each shape its own set)."""
    pos = fields.get("pos", [])
    three_d = len(pos) == 1 and len(pos[0].split()) == 3
    keyed = [("innerRadius", "ArcBand"), ("height", "Prism"), ("verticalAxis", "Ellipsoid"),
             ("semiMajorAxis", "Ellipse"), ("radius", "Sphere" if three_d else "Circle")]
    shape = next((name for key, name in keyed if key in fields), "Polygon" if len(pos) != 1 else "Point")
    return _gml({**fields, "shape": [shape]})


def _gml(fields: Fields) -> Location:
    shape = _one(fields, "shape")
    if shape == "location":
        raise LocationError("obsolete RFC 4119 form (gml:location): RFC 5491 puts a shape such as gml:Point "
                            "directly in location-info")
    if shape == "confidence":
        raise LocationError("no shape: Asterisk took con:confidence, written before the shape, for the shape")
    reader = _READERS.get(shape)
    if reader is None:
        raise LocationError(f"unsupported shape {shape[:40]!r}")
    try:
        return reader(fields)
    except LocationError as exc:
        raise LocationError(f"{shape}: {exc}") from exc


def _one(fields: Fields, key: str) -> str:
    values = fields.get(key, [])
    if not values:
        raise LocationError(f"no {key} in location_info")
    if len(values) > 1:
        raise LocationError(f"{key} given {len(values)} times")
    return values[0]


def _pos(fields: Fields) -> Position:
    if not fields.get("pos"):
        raise LocationError("no position (pos missing)")
    return shapes.position(shapes.numbers(_one(fields, "pos")), "pos")


def _positions(fields: Fields) -> list[Position]:
    """Polygon and Prism vertices: one ``posList`` or a sequence of ``pos`` (a PIDF-LO's gml:pos sequence)."""
    if fields.get("posList") and fields.get("pos"):
        raise LocationError("both posList and pos given")
    if fields.get("pos"):
        return [shapes.position(shapes.numbers(p), "pos") for p in fields["pos"]]
    if not fields.get("posList"):
        raise LocationError("no position (no posList or pos)")
    numbers = shapes.numbers(_one(fields, "posList"))
    crs = fields.get("crs", [""])[0]
    step = 3 if crs == "3d" or (crs != "2d" and len(numbers) % 2 and not len(numbers) % 3) else 2
    if len(numbers) % step:
        raise LocationError(f"posList: {len(numbers)} numbers do not make {crs or '2d'} positions")
    return [shapes.position(numbers[i:i + step], "posList") for i in range(0, len(numbers), step)]


def _metres(fields: Fields, key: str) -> float:
    text = fields.get(key, [""])[-1]
    values = shapes.numbers(text.split(" ")[0] if text else "")
    if len(fields.get(key, [])) != 1 or len(values) != 1:
        raise LocationError(f"{key}: expected a distance in metres, got {text or None!r}")
    return shapes.distance(values[0], key)


def _degrees(fields: Fields, key: str, required: bool = False) -> float:
    """An angle as Asterisk writes it: ``30``, ``30 degrees`` or ``0.5 radians`` (degrees by default)."""
    text = _one(fields, key).strip() if fields.get(key) else ""
    if not text:
        if required:
            raise LocationError(f"no {key}")
        return 0.0
    value, _, unit = text.partition(" ")
    angles = shapes.numbers(value)
    if len(angles) != 1:
        raise LocationError(f"{key}: expected an angle, got {value[:40]!r}")
    unit = unit.strip().lower()
    if unit.startswith("rad"):
        return math.degrees(angles[0])
    if unit and not unit.startswith("deg"):
        raise LocationError(f"{key}: unknown unit {unit[:20]!r}, expected degrees or radians")
    return angles[0]


def _confidence(text: str) -> tuple[float | None, str]:
    """``pdf="normal",value="95"``; anything unusable is dropped (it never costs the location)."""
    try:
        fields = dict(_pairs(text)) if text.strip() else {}
    except LocationError:
        fields = {}
    try:
        value: float | None = float(fields.get("value", "nan"))
    except ValueError:
        value = None
    if value is not None and not (math.isfinite(value) and 0 < value <= 100):
        value = None
    pdf = fields.get("pdf", "")
    return value, pdf if pdf in ("unknown", "normal", "rectangular") else ("unknown" if fields else "")


_READERS: dict[str, Callable[[Fields], Location]] = {
    "Point": lambda f: shapes.point("pidf-lo", _pos(f)),
    "Circle": lambda f: shapes.circle("pidf-lo", _pos(f), _metres(f, "radius")),
    "Sphere": lambda f: shapes.sphere("pidf-lo", _pos(f), _metres(f, "radius")),
    "Ellipse": lambda f: shapes.ellipse("pidf-lo", _pos(f), _metres(f, "semiMajorAxis"),
                                        _metres(f, "semiMinorAxis"), _degrees(f, "orientation")),
    "Ellipsoid": lambda f: shapes.ellipsoid("pidf-lo", _pos(f), _metres(f, "semiMajorAxis"),
                                            _metres(f, "semiMinorAxis"), _metres(f, "verticalAxis"),
                                            _degrees(f, "orientation")),
    "ArcBand": lambda f: shapes.arc_band("pidf-lo", _pos(f), _metres(f, "innerRadius"), _metres(f, "outerRadius"),
                                         _degrees(f, "startAngle", True), _degrees(f, "openingAngle", True)),
    "Polygon": lambda f: shapes.polygon("pidf-lo", _positions(f)),
    "Prism": lambda f: shapes.prism("pidf-lo", _positions(f), _metres(f, "height")),
}


def rank(loc: Location) -> tuple[int, float, int]:
    """Sort key implementing the module's rule: lower is better."""
    has_coords = loc.lat is not None and loc.lon is not None
    radius = loc.radius_m if loc.radius_m is not None else UNKNOWN_RADIUS_M
    return (0 if has_coords else 1, radius if has_coords else 0.0, SOURCE_RANK.get(loc.source, 9))


def best(candidates: list[Location]) -> int | None:
    """Index of the best candidate, or None when there are none."""
    if not candidates:
        return None
    return min(range(len(candidates)), key=lambda i: rank(candidates[i]))
