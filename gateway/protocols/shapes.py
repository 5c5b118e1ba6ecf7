"""Location shapes from numbers (pure): RFC 5491 geometry checked and made into what a map draws.

Shared by the PIDF-LO reader (``pidf_shapes``) and the reader of Asterisk's location_info
(``location``), so a shape means the same whichever way it arrived. Every shape gives ``lat``/``lon``
(a point inside, or for wide arc bands near, the area), ``radius_m`` (the circle about that point
holding the whole area: the uncertainty the best-candidate rule compares) and, for outlines, ``points``.
The centroids follow RFC 7459 section 4.2 (vertex mean for polygons, as ``gateway.geo`` does).
"""

from __future__ import annotations

import math

from gateway.geo import destination, polygon_centroid, radius_around
from gateway.protocols.caller import ArcBand, Location, LocationSource

MAX_DISTANCE_M = 1_000_000.0
MAX_VERTICES = 500
ARC_STEP_DEG = 10.0

Position = tuple[float, float, float | None]  # latitude, longitude, altitude (None when 2-D)


class LocationError(ValueError):
    """A location object that is malformed, hostile or out of range (the remote side's fault)."""


def check_coordinates(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise LocationError(f"coordinates out of range: {lat}, {lon}")


def numbers(text: str) -> list[float]:
    """The whitespace-separated numbers of a ``pos``, ``posList``, radius or angle; raises LocationError."""
    try:
        values = [float(x) for x in text.split()]
    except ValueError as exc:
        raise LocationError(f"non-numeric coordinate in {text[:60]!r}") from exc
    if any(not math.isfinite(v) for v in values):
        raise LocationError(f"not a finite number: {text[:60]!r}")
    return values


def position(numbers: list[float], what: str = "position") -> Position:
    """A checked position from 2 (lat lon) or 3 (lat lon altitude) numbers."""
    if len(numbers) not in (2, 3):
        raise LocationError(f"{what} needs 'lat lon' or 'lat lon altitude', got {len(numbers)} numbers")
    check_coordinates(numbers[0], numbers[1])
    altitude = numbers[2] if len(numbers) == 3 else None
    if altitude is not None and not (math.isfinite(altitude) and abs(altitude) <= MAX_DISTANCE_M):
        raise LocationError(f"{what}: altitude {altitude} m out of range")
    return numbers[0], numbers[1], altitude


def distance(value: float, what: str) -> float:
    """A checked length in metres."""
    if not (math.isfinite(value) and 0 <= value <= MAX_DISTANCE_M):
        raise LocationError(f"{what}: distance {value} m out of range (0 to {MAX_DISTANCE_M:.0f} m)")
    return value


def polygon_points(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Validated polygon vertices (closing vertex dropped). Raises LocationError."""
    if len(pairs) > 2 and pairs[0] == pairs[-1]:
        pairs = pairs[:-1]
    if not 3 <= len(pairs) <= MAX_VERTICES:
        raise LocationError(f"polygon needs 3-{MAX_VERTICES} distinct vertices, got {len(pairs)}")
    for lat, lon in pairs:
        check_coordinates(lat, lon)
    return pairs


def point(source: LocationSource, pos: Position) -> Location:
    return Location(source=source, shape="point", lat=pos[0], lon=pos[1], altitude_m=pos[2])


def circle(source: LocationSource, pos: Position, radius: float) -> Location:
    return Location(source=source, shape="circle", lat=pos[0], lon=pos[1], radius_m=distance(radius, "radius"),
                    altitude_m=pos[2])


def sphere(source: LocationSource, pos: Position, radius: float) -> Location:
    radius = distance(radius, "radius")
    return Location(source=source, shape="sphere", lat=pos[0], lon=pos[1], radius_m=radius, altitude_m=pos[2],
                    vertical_m=radius)


def ellipse(source: LocationSource, pos: Position, major: float, minor: float, orientation: float) -> Location:
    major, minor = distance(major, "semiMajorAxis"), distance(minor, "semiMinorAxis")
    orientation = _angle(orientation, "orientation")
    if minor > major:  # axes named the wrong way round: keep the shape sent, so the long axis is across it
        orientation = (orientation + 90.0) % 360.0
    return Location(source=source, shape="ellipse", lat=pos[0], lon=pos[1], radius_m=max(major, minor),
                    semi_minor_m=min(major, minor), orientation_deg=orientation, altitude_m=pos[2])


def ellipsoid(source: LocationSource, pos: Position, major: float, minor: float, vertical: float,
              orientation: float) -> Location:
    flat = ellipse(source, pos, major, minor, orientation)
    return Location(source=source, shape="ellipsoid", lat=flat.lat, lon=flat.lon, radius_m=flat.radius_m,
                    semi_minor_m=flat.semi_minor_m, orientation_deg=flat.orientation_deg, altitude_m=pos[2],
                    vertical_m=distance(vertical, "verticalAxis"))


def polygon(source: LocationSource, positions: list[Position]) -> Location:
    points = polygon_points([(p[0], p[1]) for p in positions])
    lat, lon = polygon_centroid(points)
    heights = [p[2] for p in positions if p[2] is not None]
    altitude = sum(heights) / len(heights) if heights and len(heights) == len(positions) else None
    return Location(source=source, shape="polygon", lat=lat, lon=lon, radius_m=radius_around(lat, lon, points),
                    points=points, altitude_m=altitude)


def prism(source: LocationSource, positions: list[Position], height: float) -> Location:
    """A Prism: its base polygon on the map; altitude is mid-height, vertical_m half the height."""
    base, height = polygon(source, positions), distance(height, "height")
    altitude = base.altitude_m + height / 2 if base.altitude_m is not None else None
    return Location(source=source, shape="prism", lat=base.lat, lon=base.lon, radius_m=base.radius_m,
                    points=base.points, altitude_m=altitude, vertical_m=height / 2)


def arc_band(source: LocationSource, pos: Position, inner: float, outer: float, start: float,
             opening: float) -> Location:
    """An ArcBand: the band's outline on the map, its centroid (RFC 7459 4.2) with the radius holding it."""
    inner, outer = distance(inner, "innerRadius"), distance(outer, "outerRadius")
    if not 0 <= inner < outer:
        raise LocationError(f"innerRadius {inner:g} m must be less than outerRadius {outer:g} m")
    start, opening = _angle(start, "startAngle") % 360.0, _angle(opening, "openingAngle")
    if not 0 < opening <= 360:
        raise LocationError(f"openingAngle {opening:g} degrees out of range (above 0, at most 360)")
    half = math.radians(opening) / 2
    offset = 4 * math.sin(half) * (outer**3 - inner**3) / (6 * half * (outer**2 - inner**2))
    lat, lon = destination(pos[0], pos[1], start + opening / 2, offset)
    points = _band_outline(pos[0], pos[1], inner, outer, start, opening)
    band = ArcBand(centre=(pos[0], pos[1]), inner_radius_m=inner, outer_radius_m=outer, start_angle_deg=start,
                   opening_angle_deg=opening)
    return Location(source=source, shape="arcband", lat=lat, lon=lon, radius_m=radius_around(lat, lon, points),
                    points=points, altitude_m=pos[2], arc_band=band)


def _band_outline(lat: float, lon: float, inner: float, outer: float, start: float,
                  opening: float) -> list[tuple[float, float]]:
    """Outer arc clockwise, then inner arc back (or the centre); a full ring is drawn as its outer circle."""
    steps = max(1, math.ceil(opening / ARC_STEP_DEG - 1e-6))
    bearings = [start + opening * i / steps for i in range(steps + 1)]
    if opening >= 360:
        return [destination(lat, lon, b, outer) for b in bearings[:-1]]
    ring = [destination(lat, lon, b, outer) for b in bearings]
    if inner == 0:
        return ring + [(lat, lon)]
    return ring + [destination(lat, lon, b, inner) for b in reversed(bearings)]


def _angle(value: float, what: str) -> float:
    if not math.isfinite(value) or abs(value) > 3600:
        raise LocationError(f"{what}: angle {value} out of range")
    return value
