"""What a PMTiles v3 archive's header says (pure): its tile type, compression, zooms and bounds.

The header is the archive's first 127 bytes, little-endian (spec/v3/spec.md of protomaps/PMTiles): the
magic ``PMTiles``, the version byte 3, eleven u64 offsets, lengths and counts, then the clustered flag,
the internal and tile compressions, the tile type, min/max zoom, the bounds and centre as i32 degrees
times 10^7. The console draws a raster archive as its base map; a vector one (MVT) needs a style, which
the console does not have, so the config check refuses it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_BYTES = 127
MAGIC = b"PMTiles"
_LAYOUT = struct.Struct("<7sB11QBBBBBBiiiiBii")  # 127 bytes
TILE_TYPES = {0: "unknown", 1: "mvt", 2: "png", 3: "jpeg", 4: "webp", 5: "avif", 6: "mlt"}
RASTER = frozenset({"png", "jpeg", "webp", "avif"})
COMPRESSIONS = {0: "unknown", 1: "none", 2: "gzip", 3: "brotli", 4: "zstd"}


class PmtilesError(ValueError):
    """The bytes are not a PMTiles v3 header we can read (says what is wrong and where)."""


@dataclass(frozen=True)
class PmtilesHeader:
    root_offset: int
    root_length: int
    tile_data_offset: int
    tile_data_length: int
    addressed_tiles: int
    internal_compression: str
    tile_compression: str
    tile_type: str  # one of TILE_TYPES' names
    min_zoom: int
    max_zoom: int
    bounds: tuple[float, float, float, float]  # min lon, min lat, max lon, max lat (degrees)
    center: tuple[int, float, float]  # zoom, lon, lat

    @property
    def raster(self) -> bool:
        return self.tile_type in RASTER


def read_header(head: bytes) -> PmtilesHeader:
    """Parse the first 127 bytes of a PMTiles archive. Raises PmtilesError."""
    if len(head) < HEADER_BYTES:
        raise PmtilesError(f"{len(head)} bytes, a PMTiles v3 header is {HEADER_BYTES}")
    if head[:7] != MAGIC:
        raise PmtilesError(f"bytes 0-6 are {head[:7]!r}, expected {MAGIC!r}: not a PMTiles archive")
    if head[7] != 3:
        raise PmtilesError(f"byte 7 (version) is {head[7]}, expected 3: only PMTiles v3 is read")
    (_, _, root_off, root_len, _meta_off, _meta_len, _leaf_off, _leaf_len, data_off, data_len, addressed,
     _entries, _contents, _clustered, internal, compression, tile_type, min_zoom, max_zoom,
     min_lon, min_lat, max_lon, max_lat, center_zoom, center_lon, center_lat) = _LAYOUT.unpack_from(head)
    if tile_type not in TILE_TYPES:
        raise PmtilesError(f"byte 99 (tile type) is {tile_type}, expected 0-{max(TILE_TYPES)}")
    if min_zoom > max_zoom:
        raise PmtilesError(f"min zoom {min_zoom} (byte 100) is above max zoom {max_zoom} (byte 101)")
    e7 = 10_000_000
    return PmtilesHeader(
        root_offset=root_off, root_length=root_len, tile_data_offset=data_off, tile_data_length=data_len,
        addressed_tiles=addressed, internal_compression=COMPRESSIONS.get(internal, f"{internal}"),
        tile_compression=COMPRESSIONS.get(compression, f"{compression}"), tile_type=TILE_TYPES[tile_type],
        min_zoom=min_zoom, max_zoom=max_zoom, bounds=(min_lon / e7, min_lat / e7, max_lon / e7, max_lat / e7),
        center=(center_zoom, center_lon / e7, center_lat / e7))


def raster_problem(header: PmtilesHeader) -> str | None:
    """Why the console cannot draw this archive as its base map, or None."""
    if header.tile_type in ("mvt", "mlt"):
        return "vector PMTiles need a style: give a raster PMTiles (png/jpeg/webp) or a tile URL"
    if not header.raster:
        return f"tile type {header.tile_type!r}: give a raster PMTiles (png/jpeg/webp) or a tile URL"
    return None
