"""Small spherical-earth helpers (pure). Accuracy of metres is plenty for matching addresses."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def polygon_centroid(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Vertex mean: good enough for city-sized polygons away from the antimeridian."""
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


def radius_around(lat: float, lon: float, points: list[tuple[float, float]]) -> float:
    """The smallest circle about (lat, lon) holding every vertex: the polygon's uncertainty."""
    return max(distance_m(lat, lon, a, b) for a, b in points)


def destination(lat: float, lon: float, bearing_deg: float, distance: float) -> tuple[float, float]:
    """The point ``distance`` metres from (lat, lon) along ``bearing_deg`` (clockwise from north)."""
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    d = distance / EARTH_RADIUS_M
    p2 = math.asin(min(1.0, max(-1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0
