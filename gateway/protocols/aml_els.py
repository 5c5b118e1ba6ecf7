"""AML SMS version 2 (``A"ML=2``): the layout Google's Android Emergency Location Service sends to
partners that chose "ELS Beta" (pure, no I/O). ``gateway.protocols.aml.parse_sms`` calls it.

Version 2 keeps version 1's framing (``key=value`` pairs separated by ``;``, header first) but not
its keys; ``lt`` and ``lg`` even change meaning. As Google's ELS SMS specification lists them::

    en  emergency number dialled                      911
    et  time of the emergency call, Unix seconds      1593187189
    lo  latitude,longitude,accuracy (deg, deg, m)     37.42175,-122.08461,20.1   accuracy 0 = unknown
    lt  time of the fix in seconds relative to et     5                          (ignored without lo or et)
    lc  confidence, percent                           68
    lz  altitude,vertical accuracy (m, m)             -10.1,10.1                 (ignored without lo)
    ls  location source: W G C F U                    W                          (ignored without lo)
    ei  IMEI
    nc  network MCC and MNC run together              310260
    hc  home MCC and MNC run together                 310260
    lg  the handset's language, a BCP 47 tag          en-US

Every field is optional except ``et``: without it nothing says when the handset was positioned, so
the report could not be matched to a call. A report without ``lo`` is a report without a position
(the handset tried but had no fix), as in version 1. There is no ``ml``: nothing to check the length by.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from gateway.errors import ProtocolError
from gateway.protocols import aml_fields as f
from gateway.protocols.aml_fields import AmlReport, Method

VERSION = "2"
MANDATORY = ("et",)
_PLMN = re.compile(r"([0-9]{3})([0-9]{2,3})")


def parse(fields: Mapping[str, str], *, text: str, sender: str) -> AmlReport:
    """The version 2 report from its fields (header removed); ``text`` is kept as ``raw``. Raises ProtocolError."""
    missing = [name for name in MANDATORY if not fields.get(name)]
    if missing:
        raise ProtocolError(f"AML SMS version 2 lacks mandatory field(s): {', '.join(missing)} "
                            "(the call's time in Unix seconds; version 2 has no top)")
    flags: list[str] = []
    call = _call_time(fields["et"])
    lat, lon, radius = _location(fields.get("lo", ""), flags)
    method: Method = "none"
    confidence: float | None = None
    height: float | None = None
    positioned = call
    if lat is not None:
        method = f.letter_method(fields["ls"], "ls", "location-source") if fields.get("ls") else "unknown"
        confidence = f.percent(fields["lc"], "lc") if fields.get("lc") else None
        height = _altitude(fields.get("lz", ""), flags)
        positioned = _fix_time(call, fields.get("lt", ""), flags)
    mcc, mnc = _plmn(fields.get("nc", ""), "nc", flags)
    if not mcc:
        mcc, mnc = _plmn(fields.get("hc", ""), "hc", flags)
    return AmlReport(
        transport="sms", number=f.ident(sender.strip(), "device_number", flags), lat=lat, lon=lon,
        radius_m=radius, confidence_pct=confidence, method=method, positioned_at=positioned,
        imei=f.ident(fields.get("ei", ""), "imei", flags), mcc=mcc, mnc=mnc,
        emergency_number=f.ident(fields.get("en", ""), "emergency_number", flags), altitude_m=height,
        version=VERSION, language=f.ident(fields.get("lg", ""), "language", flags), flags=tuple(flags),
        raw=text)


def _call_time(text: str) -> datetime:
    if not re.fullmatch(r"[0-9]{1,12}", text):
        raise ProtocolError(f"et: expected the call's time in whole seconds since 1970, got {text[:20]!r}")
    return f.from_epoch(int(text), "et")


def _location(text: str, flags: list[str]) -> tuple[float | None, float | None, float | None]:
    """``lo``: latitude, longitude and accuracy; a missing accuracy is an unknown one."""
    if text == "":
        return None, None, None
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise ProtocolError(f"lo: expected latitude,longitude,accuracy, got {len(parts)} part(s) in {text[:40]!r}")
    lat, lon = f.position(parts[0], parts[1], "lo", "lo", "unknown", flags)
    if lat is None:
        return None, None, None
    return lat, lon, f.radius(parts[2] if len(parts) == 3 else "", "lo", flags)


def _fix_time(call: datetime, text: str, flags: list[str]) -> datetime:
    """``lt``: the fix's time relative to the call; without it the call's time stands in (flagged)."""
    if text == "":
        flags.append("no_location_time")
        return call
    if not re.fullmatch(r"[+-]?[0-9]{1,9}", text):
        raise ProtocolError(f"lt: expected whole seconds relative to et, got {text[:20]!r}")
    return f.plausible(call + timedelta(seconds=int(text)), "lt")


def _altitude(text: str, flags: list[str]) -> float | None:
    """``lz``: altitude and vertical accuracy; only the altitude is kept, and a bad one is dropped."""
    return f.altitude(text.split(",")[0], flags, "lz") if text else None


def _plmn(text: str, key: str, flags: list[str]) -> tuple[str, str]:
    """``nc``/``hc``: MCC and MNC run together (a 2- or 3-digit MNC), dropped and flagged when malformed."""
    found = _PLMN.fullmatch(text)
    if found:
        return found.group(1), found.group(2)
    if text:
        flags.append(f"bad_{key}")
    return "", ""
