"""ALI: location candidates from Asterisk's geolocation and the subscriber directory (pure).

The best candidate is chosen by one rule, shown to the dispatcher with every other candidate:
  1. candidates with coordinates beat civic-only ones;
  2. among those, the smallest uncertainty radius wins (an unstated radius counts as 5 km);
  3. ties go to the more direct source: pidf-lo (the network/handset) > aml > directory > manual.
"""

from __future__ import annotations

import math
import re

from gateway.geo import polygon_centroid, radius_around
from gateway.protocols.caller import Location
from gateway.protocols.pidf import CIVIC_FIELDS, LocationError, check_coordinates, polygon_points

UNKNOWN_RADIUS_M = 5000.0
SOURCE_RANK = {"pidf-lo": 0, "aml": 1, "directory": 2, "manual": 3}
MAX_INFO = 16 * 1024
_PAIR = re.compile(r'\s*([A-Za-z][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|([^,"]*))\s*(?:,|$)')


def parse_location_info(info: str, fmt: str) -> Location:
    """A Location from ``GEOLOC_PROFILE(location_info)`` / ``(format)``. Raises LocationError."""
    if len(info) > MAX_INFO:
        raise LocationError(f"location_info of {len(info)} characters is too long")
    fields = _pairs(info)
    if fmt == "civicAddress":
        civic = {k: v[:128] for k, v in fields.items() if k in CIVIC_FIELDS and v}
        if not civic:
            raise LocationError("civicAddress without any known field")
        return Location(source="pidf-lo", shape="civic", civic=civic, address=civic_text(civic))
    if fmt != "GML":
        raise LocationError(f"unsupported location format {fmt!r}")
    return _gml(fields)


def _pairs(info: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(info):
        match = _PAIR.match(info, pos)
        if not match or match.end() == pos:
            raise LocationError(f"cannot parse location_info near {info[pos:pos + 40]!r}")
        value = match.group(2) if match.group(2) is not None else match.group(3)
        fields[match.group(1)] = value.replace('\\"', '"').strip()
        pos = match.end()
    return fields


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split()]
    except ValueError as exc:
        raise LocationError(f"non-numeric value {text[:40]!r}") from exc


def _metres(fields: dict[str, str], key: str) -> float:
    values = _floats(fields.get(key, "").split(" ")[0] if fields.get(key) else "")
    if len(values) != 1 or not 0 <= values[0] <= 1_000_000:
        raise LocationError(f"{key}: expected a distance in metres, got {fields.get(key)!r}")
    return values[0]


def _gml(fields: dict[str, str]) -> Location:
    shape = fields.get("shape", "")
    if shape == "Polygon":
        numbers = _floats(fields.get("posList", ""))
        step = 3 if fields.get("crs") == "3d" else 2  # 3d: lat lon altitude triplets
        if len(numbers) % step:
            raise LocationError(f"posList: {len(numbers)} numbers do not make {fields.get('crs') or '2d'} positions")
        pairs = [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), step)]
        points = polygon_points(pairs)
        lat, lon = polygon_centroid(points)
        return Location(source="pidf-lo", shape="polygon", lat=lat, lon=lon, points=points,
                        radius_m=radius_around(lat, lon, points))
    pos = _floats(fields.get("pos", ""))
    if len(pos) not in (2, 3):
        raise LocationError(f"pos: expected 'lat lon', got {fields.get('pos')!r}")
    lat, lon = pos[0], pos[1]
    check_coordinates(lat, lon)
    if shape == "Point":
        return Location(source="pidf-lo", shape="point", lat=lat, lon=lon)
    if shape == "Circle":
        return Location(source="pidf-lo", shape="circle", lat=lat, lon=lon, radius_m=_metres(fields, "radius"))
    if shape == "Ellipse":
        major, minor = _metres(fields, "semiMajorAxis"), _metres(fields, "semiMinorAxis")
        return Location(source="pidf-lo", shape="ellipse", lat=lat, lon=lon, radius_m=max(major, minor),
                        semi_minor_m=min(major, minor), orientation_deg=_degrees(fields.get("orientation", "")))
    raise LocationError(f"unsupported shape {shape!r}")


def _degrees(text: str) -> float:
    """An angle as Asterisk writes it: ``30``, ``30 degrees`` or ``0.5 radians`` (degrees by default)."""
    value, _, unit = text.strip().partition(" ")
    angles = _floats(value)
    if not angles:
        return 0.0
    if not math.isfinite(angles[0]):
        raise LocationError(f"orientation: expected an angle, got {text[:40]!r}")
    unit = unit.strip().lower()
    if unit.startswith("rad"):
        return math.degrees(angles[0])
    if unit and not unit.startswith("deg"):
        raise LocationError(f"orientation: unknown unit {unit[:20]!r}, expected degrees or radians")
    return angles[0]


def civic_text(civic: dict[str, str]) -> str:
    """A one-line address, most specific last: 'KZ, Алматы, Абая 10, fl. 3'."""
    street = " ".join(x for x in (civic.get("PRD", ""), civic.get("A6", "") or civic.get("RD", ""),
                                  civic.get("STS", ""), civic.get("HNO", ""), civic.get("HNS", "")) if x)
    parts = [civic.get(k, "") for k in ("country", "A1", "A2", "A3", "A4", "A5")]
    parts += [street, civic.get("NAM", "")]
    parts += [f"{label} {civic[k]}" for k, label in (("FLR", "fl."), ("UNIT", "unit"), ("ROOM", "room")) if k in civic]
    parts += [civic.get("LMK", ""), civic.get("LOC", "")]
    kept: list[str] = []
    for part in parts:  # A1 and A3 are often the same city
        if part and part not in kept:
            kept.append(part)
    return ", ".join(kept)


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
