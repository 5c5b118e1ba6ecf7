"""Small PMTiles v3 archives written by hand for the tests (spec/v3/spec.md of protomaps/PMTiles): the
127-byte header, an uncompressed root directory, ``{}`` as metadata and solid-colour 256x256 PNG tiles.
Levels 0 to 9 are each one run of a single tile; from zoom 10 a square of tiles around a point (Almaty)."""

from __future__ import annotations

import math
import struct
import zlib

ALMATY = (43.2381, 76.9456)
COLOURS = [(0xb3, 0xd9, 0xf2), (0xc8, 0xe6, 0xc9), (0xff, 0xe0, 0xb2), (0xe1, 0xbe, 0xe7)]


def png(rgb: tuple[int, int, int], size: int = 256) -> bytes:
    """A solid-colour RGB PNG."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = (b"\0" + bytes(rgb) * size) * size
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tile_id(z: int, x: int, y: int) -> int:
    """The tile's position on the Hilbert curve of its level, after every tile of the levels above."""
    n, d = 1 << z, 0
    s = n // 2
    while s:
        rx, ry = int(x & s > 0), int(y & s > 0)
        d += s * s * ((3 * rx) ^ ry)
        if ry == 0:
            if rx == 1:
                x, y = n - 1 - x, n - 1 - y
            x, y = y, x
        s //= 2
    return ((1 << 2 * z) - 1) // 3 + d


def tile_of(lat: float, lon: float, z: int) -> tuple[int, int]:
    n = 1 << z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int((lon + 180) / 360 * n), int(y)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def archive(*, tile_type: int = 2, version: int = 3, max_zoom: int = 18, around: tuple[float, float] = ALMATY,
            spread: int = 3) -> bytes:
    """A whole archive: every tile of zooms 0-9 (one run per level), then a (2*spread+1)^2 square of tiles
    around ``around`` on each zoom up to ``max_zoom``; four colours, so tile edges show."""
    images = [png(c) for c in COLOURS]
    entries = [(tile_id(z, 0, 0), 4 ** z, z % 4) for z in range(min(10, max_zoom + 1))]  # a level is one run
    for z in range(10, max_zoom + 1):
        cx, cy = tile_of(*around, z)
        entries += [(tile_id(z, x, y), 1, (x + y + z) % 4) for x in range(cx - spread, cx + spread + 1)
                    for y in range(cy - spread, cy + spread + 1)]
    entries.sort()
    offsets = [sum(map(len, images[:i])) for i in range(len(images))]
    ids = [e[0] for e in entries]
    directory = (_varint(len(entries)) + b"".join(_varint(b - a) for a, b in zip([0, *ids], ids, strict=False))
                 + b"".join(_varint(e[1]) for e in entries)
                 + b"".join(_varint(len(images[e[2]])) for e in entries)
                 + b"".join(_varint(offsets[e[2]] + 1) for e in entries))  # never "right after the previous"
    metadata, data = b"{}", b"".join(images)
    root, meta = 127, 127 + len(directory)
    leaves = data_at = meta + len(metadata)
    lat, lon = around
    e7 = 10_000_000
    header = struct.pack("<7sB11QBBBBBBiiiiBii", b"PMTiles", version, root, len(directory), meta, len(metadata),
                         leaves, 0, data_at, len(data), sum(e[1] for e in entries), len(entries), len(images),
                         0, 1, 1, tile_type, 0, max_zoom, -180 * e7, -85 * e7, 180 * e7, 85 * e7, 12,
                         int(lon * e7), int(lat * e7))
    return header + directory + metadata + data
