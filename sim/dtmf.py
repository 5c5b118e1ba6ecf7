"""Build one RFC 2833 DTMF pcap for a whole key sequence from sip-tester's per-digit pcaps (pure).

sip-tester ships one pcap per digit, each with its own fixed RTP sequence numbers and
timestamps. Played one after another they go backwards (digit 2's packets are numbered above
digit 1's), and Asterisk rightly drops the older-looking packets. So we splice the digits into
one stream with monotonically increasing sequence numbers and timestamps, spaced in time.
"""

from __future__ import annotations

import struct
from pathlib import Path

from sim.sipp_xml import dtmf_pcap

PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD = struct.Struct("<IIII")
ETH, UDP = 14, 8
SAMPLES_PER_MS = 8


def _packets(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    magic, *_rest, linktype = PCAP_HEADER.unpack_from(data)
    if magic != 0xA1B2C3D4 or linktype != 1:
        raise ValueError(f"{path}: expected a little-endian Ethernet pcap")
    out, off = [], PCAP_HEADER.size
    while off + RECORD.size <= len(data):
        sec, usec, incl, _orig = RECORD.unpack_from(data, off)
        out.append((sec + usec / 1e6, data[off + RECORD.size: off + RECORD.size + incl]))
        off += RECORD.size + incl
    return out


def _rewrite(frame: bytes, seq: int, timestamp: int) -> bytes:
    ihl = (frame[ETH] & 0x0F) * 4
    udp = ETH + ihl
    rtp = udp + UDP
    out = bytearray(frame)
    struct.pack_into("!H", out, udp + 6, 0)  # UDP checksum 0: "not computed", valid for IPv4
    struct.pack_into("!HI", out, rtp + 2, seq & 0xFFFF, timestamp & 0xFFFFFFFF)
    return bytes(out)


def sequence_pcap(digits: str, target: Path, gap_ms: int = 600) -> Path:
    """Write a pcap keying ``digits`` one every ``gap_ms`` (sipp plays it from its first packet)."""
    records = []
    seq, ts_base = 1000, 160000
    for i, digit in enumerate(digits):
        packets = _packets(dtmf_pcap(digit))
        start = i * gap_ms
        t0 = packets[0][0]
        for when, frame in packets:
            records.append((start / 1000 + (when - t0), _rewrite(frame, seq, ts_base + start * SAMPLES_PER_MS)))
            seq += 1
    blob = bytearray(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for when, frame in records:
        sec = int(when)
        blob += RECORD.pack(sec, int(round((when - sec) * 1e6)), len(frame), len(frame)) + frame
    target.write_bytes(bytes(blob))
    return target
