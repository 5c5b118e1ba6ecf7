"""Warning zones: named polygons and circles with the sirens and information boards inside them.

Geometry runs on a local plane: (lat, lon) projected to kilometres around the catalogue's mean
latitude (equirectangular). A centre's zones span tens of kilometres, where this is accurate to
well under a percent, and it keeps shapely's planar predicates meaningful for circles.
Pure: no I/O except reading the zones file in ``load``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

import msgspec
import shapely
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from gateway.errors import ZoneError
from gateway.protocols.cap import Area, Circle
from gateway.settings.base import Base

KM_PER_DEGREE = 111.195
NAME_RE = r"^[a-z][a-z0-9_-]{0,47}$"


class RelayGroup(Base, frozen=True):
    """Relays of one board on one serial line: the coils that drive sirens or a board."""

    line: str
    unit: int
    coils: list[int]


class ZoneCircle(Base, frozen=True):
    lat: float
    lon: float
    radius_km: float


class Zone(Base, frozen=True):
    name: str
    title: dict[str, str] = {}
    polygon: list[tuple[float, float]] = []
    circle: ZoneCircle | None = None
    sirens: list[RelayGroup] = []
    boards: list[RelayGroup] = []


class ZonesFile(Base, frozen=True):
    zones: list[Zone]


class ZoneSet:
    """The zones of one centre, with their shapes on a common plane."""

    def __init__(self, zones: list[Zone]) -> None:
        problems = zone_problems(zones)
        if problems:
            raise ZoneError("; ".join(problems))
        self.zones = {z.name: z for z in zones}
        self._ref_lat = _mean_lat(zones)
        self._shapes = {z.name: self._zone_shape(z) for z in zones}

    def names(self) -> list[str]:
        return list(self.zones)

    def get(self, name: str) -> Zone:
        try:
            return self.zones[name]
        except KeyError:
            raise ZoneError(f"unknown zone {name!r} (known: {', '.join(self.zones)})") from None

    def matching(self, areas: Iterable[Area]) -> list[str]:
        """Names of the zones an alert's areas reach: named zones plus every zone a polygon or
        circle intersects. Raises ZoneError for an unknown zone name or an invalid shape."""
        found: set[str] = set()
        for area in areas:
            for name in area.zones:
                self.get(name)
                found.add(name)
            problems = area_problems(area)
            if problems:
                raise ZoneError("; ".join(problems))
            for shape in self._area_shapes(area):
                found.update(n for n, s in self._shapes.items() if s.intersects(shape))
        return [n for n in self.zones if n in found]

    def zone_of(self, lat: float, lon: float) -> str | None:
        """The first zone holding the point, or None."""
        point = Point(self._plane(lat, lon))
        return next((n for n, s in self._shapes.items() if s.covers(point)), None)

    def _area_shapes(self, area: Area) -> list[BaseGeometry]:
        shapes: list[BaseGeometry] = [Polygon([self._plane(*p) for p in poly]) for poly in area.polygons]
        shapes.extend(self._circle(c.lat, c.lon, c.radius_km) for c in area.circles)
        return shapes

    def _zone_shape(self, zone: Zone) -> BaseGeometry:
        if zone.circle is not None:
            return self._circle(zone.circle.lat, zone.circle.lon, zone.circle.radius_km)
        return Polygon([self._plane(*p) for p in zone.polygon])

    def _circle(self, lat: float, lon: float, radius_km: float) -> BaseGeometry:
        return Point(self._plane(lat, lon)).buffer(max(radius_km, 1e-6), quad_segs=32)

    def _plane(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon * KM_PER_DEGREE * math.cos(math.radians(self._ref_lat)), lat * KM_PER_DEGREE)


def load(path: str | Path) -> ZoneSet:
    """Read ``zones.toml``. Raises ZoneError naming the file and every problem in it."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        parsed = msgspec.convert(raw, ZonesFile)
    except OSError as exc:
        raise ZoneError(f"{path}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ZoneError(f"{path}: not valid UTF-8 TOML: {exc}") from exc
    except msgspec.ValidationError as exc:
        raise ZoneError(f"{path}: {exc}") from exc
    try:
        return ZoneSet(parsed.zones)
    except ZoneError as exc:
        raise ZoneError(f"{path}: {exc}") from exc


def zone_problems(zones: list[Zone]) -> list[str]:
    """Every problem in a zone list: names, duplicates, missing or doubled shapes, bad geometry."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        where = f"zones[{i}] ({zone.name})"
        if not re.match(NAME_RE, zone.name):
            problems.append(f"{where}: name: expected lower-case letters, digits, - or _")
        if zone.name in seen:
            problems.append(f"{where}: duplicate zone name")
        seen.add(zone.name)
        if bool(zone.polygon) == (zone.circle is not None):
            problems.append(f"{where}: expected exactly one of polygon or circle")
        if zone.polygon:
            problems.extend(f"{where}: {p}" for p in polygon_problems(zone.polygon))
        if zone.circle is not None:
            c = zone.circle
            problems.extend(f"{where}: {p}"
                            for p in circle_problems(Circle(lat=c.lat, lon=c.lon, radius_km=c.radius_km)))
        for group in (*zone.sirens, *zone.boards):
            if not 1 <= group.unit <= 247 or not group.coils or any(not 0 <= c <= 65535 for c in group.coils):
                problems.append(f"{where}: relay group on {group.line}: unit 1-247 and coils 0-65535 expected")
    return problems


def area_problems(area: Area) -> list[str]:
    """Geometric problems of an alert area's polygons and circles."""
    problems = [f"area {area.area_desc!r}: {p}" for poly in area.polygons for p in polygon_problems(poly)]
    problems.extend(f"area {area.area_desc!r}: {p}" for c in area.circles for p in circle_problems(c))
    return problems


def polygon_problems(points: list[tuple[float, float]]) -> list[str]:
    """A polygon needs three distinct in-range vertices and must not cross itself."""
    bad = [p for p in points if not (-90 <= p[0] <= 90 and -180 <= p[1] <= 180)]
    if bad:
        return [f"polygon point {bad[0]} out of range (lat -90..90, lon -180..180)"]
    ring = points[:-1] if len(points) > 1 and points[0] == points[-1] else points
    if len(set(ring)) < 3:
        return [f"polygon needs at least 3 distinct points, got {len(set(ring))}"]
    shape = Polygon([(lon, lat) for lat, lon in ring])
    if not shape.is_valid:
        return [f"polygon is not simple: {explain_validity(shape)}"]
    if shapely.area(shape) == 0:
        return ["polygon has no area"]
    return []


def circle_problems(circle: Circle) -> list[str]:
    if not (-90 <= circle.lat <= 90 and -180 <= circle.lon <= 180):
        return [f"circle centre ({circle.lat}, {circle.lon}) out of range"]
    if not 0 <= circle.radius_km <= 1000:
        return [f"circle radius {circle.radius_km} km: expected 0-1000"]
    return []


def _mean_lat(zones: list[Zone]) -> float:
    lats = [p[0] for z in zones for p in z.polygon] + [z.circle.lat for z in zones if z.circle]
    return sum(lats) / len(lats) if lats else 0.0
