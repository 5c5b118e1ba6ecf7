"""Who is calling and from where, as the network and handsets tell it: the caller (ANI) and each
location candidate (ALI) with its source and uncertainty. What the protocol parsers produce and the
incident records keep."""

from __future__ import annotations

from typing import Literal

import msgspec

LocationSource = Literal["pidf-lo", "directory", "aml", "manual"]
# RFC 5491 shapes (2-D: point, circle, ellipse, arcband, polygon; 3-D: sphere, ellipsoid, prism) and civic.
Shape = Literal["point", "circle", "ellipse", "polygon", "civic", "arcband", "sphere", "ellipsoid", "prism"]


class ArcBand(msgspec.Struct, frozen=True, kw_only=True):
    """An RFC 5491 ArcBand as sent: a band of a ring about ``centre`` (often the antenna, outside the area)."""

    centre: tuple[float, float]
    inner_radius_m: float
    outer_radius_m: float
    start_angle_deg: float  # clockwise from true north
    opening_angle_deg: float  # clockwise from the start angle


class Location(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One location candidate with where it came from and how uncertain it is.

    Every shape gives what a map draws: ``lat``/``lon`` (a point inside the area) with ``radius_m`` (the
    circle about it holding the whole area), and ``points`` for areas drawn as outlines (polygon, prism,
    arcband). 3-D shapes add ``altitude_m`` and ``vertical_m``: the volume spans altitude ± vertical_m.
    """

    source: LocationSource
    shape: Shape
    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None
    semi_minor_m: float | None = None
    orientation_deg: float | None = None
    points: list[tuple[float, float]] = []
    civic: dict[str, str] = {}
    address: str = ""
    method: str = ""
    altitude_m: float | None = None  # metres above the WGS 84 ellipsoid (EPSG::4979)
    vertical_m: float | None = None  # vertical uncertainty (Sphere radius, Ellipsoid axis, half a Prism's height)
    arc_band: ArcBand | None = None  # the ArcBand's own parameters (lat/lon/points/radius_m are its area)
    confidence: float | None = None  # RFC 7459: percent chance the caller is inside the shape
    confidence_pdf: str = ""  # RFC 7459 probability distribution: "unknown", "normal" or "rectangular"
    timestamp: str = ""  # when the location was determined, as the sender wrote it


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """ANI as received and as normalised."""

    raw_number: str
    number: str  # E.164 (+7...) or "" when withheld/unusable
    display_name: str
    withheld: bool
    flags: list[str] = []
