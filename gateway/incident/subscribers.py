"""Subscriber directory import: landline number -> address and coordinates (pure parsing).

CSV columns: number,address,lat,lon[,radius_m]. Bad rows are reported with their line number
and skipped; good rows are kept. A file that cannot be read at all raises DirectoryImportError.
"""

from __future__ import annotations

import csv
import io

from gateway.incident.records import Location
from gateway.protocols import ani
from gateway.protocols.pidf import LocationError, check_coordinates
from gateway.settings import AniConfig

REQUIRED = ("number", "address", "lat", "lon")
DEFAULT_RADIUS_M = 50.0  # an address point: the building, not the flat


def parse_csv(text: str, cfg: AniConfig = AniConfig()) -> tuple[list[tuple[str, Location]], list[str]]:
    """(entries, problems). Each problem names the line and what was wrong."""
    from gateway.errors import DirectoryImportError

    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DirectoryImportError(f"directory CSV header lacks column(s): {', '.join(missing)}; got {header}")
    reader.fieldnames = header
    entries: list[tuple[str, Location]] = []
    problems: list[str] = []
    try:
        for row in reader:
            line = reader.line_num
            try:
                entries.append(_entry(row, cfg))
            except (ValueError, LocationError) as exc:
                problems.append(f"line {line}: {exc}")
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: unreadable CSV: {exc}")
    return entries, problems


def _entry(row: dict[str, str | None], cfg: AniConfig) -> tuple[str, Location]:
    if None in row:
        raise ValueError("too many fields")
    raw = (row.get("number") or "").strip()
    number, flags = ani.e164(raw, cfg)
    if not number:
        raise ValueError(f"number {raw!r} is not a usable phone number ({', '.join(flags)})")
    address = " ".join((row.get("address") or "").split())
    if not address or len(address) > 300 or any(not ch.isprintable() for ch in address):
        raise ValueError("address must be 1-300 printable characters")
    lat, lon = float(row.get("lat") or "x"), float(row.get("lon") or "x")
    check_coordinates(lat, lon)
    radius = float(row.get("radius_m") or DEFAULT_RADIUS_M)
    if not 0 < radius <= 100_000:
        raise ValueError(f"radius_m {radius} out of range")
    return number, Location(source="directory", shape="circle", lat=lat, lon=lon, radius_m=radius, address=address)
