"""Who is calling and from where, as the network and handsets tell it: the caller (ANI) and each
location candidate (ALI) with its source and uncertainty. What the protocol parsers produce and the
incident records keep."""

from __future__ import annotations

from typing import Literal

import msgspec

LocationSource = Literal["pidf-lo", "directory", "aml", "manual"]
Shape = Literal["point", "circle", "ellipse", "polygon", "civic"]


class Location(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One location candidate with where it came from and how uncertain it is."""

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


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """ANI as received and as normalised."""

    raw_number: str
    number: str  # E.164 (+7...) or "" when withheld/unusable
    display_name: str
    withheld: bool
    flags: list[str] = []
