"""AML report values shared by every AML transport and version: the report itself and the checks that
turn one field's text into a value (pure, no I/O).

Anything that would put a wrong dot on the dispatcher's map raises a ProtocolError naming the field;
identifiers that do not look like identifiers are dropped and flagged instead (``flags``), because
they never move the dot and the location is worth more than they are.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

import msgspec

from gateway.errors import ProtocolError

Transport = Literal["sms", "https"]
Method = Literal["gnss", "wifi", "cell", "fused", "unknown", "none"]

MAX_RADIUS_M = 100_000.0  # coarser than the largest rural cell says nothing a dispatcher can use
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# One-letter positioning methods: ``pm`` of version 1, ``ls`` of version 2 (Google's ELS adds F, fused).
LETTER_METHODS: dict[str, Method] = {"G": "gnss", "W": "wifi", "C": "cell", "F": "fused", "U": "unknown",
                                     "N": "none"}

_DECIMAL = re.compile(r"[+-]?[0-9]{1,9}(?:\.[0-9]{1,12})?")  # no exponents, nan, inf or '_' (float() takes them)
IDENTIFIERS = {"imei": "[0-9]{14,16}", "imsi": "[0-9]{5,15}", "mcc": "[0-9]{3}", "mnc": "[0-9]{2,3}",
               "emergency_number": "[0-9]{2,6}", "device_number": r"\+?[0-9 ().\-/]{1,32}",
               "language": "[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8}){0,4}"}


class AmlReport(msgspec.Struct, frozen=True, kw_only=True):
    """One AML report. ``lat``/``lon`` are None when the handset had no fix; ``radius_m`` is None
    when the handset gave none (or 0, which means unknown); ``number`` is as sent, to be normalised
    with ``gateway.protocols.ani.e164``; ``version`` is the AML version the handset wrote (SMS
    ``A"ML=``, HTTPS ``v``); ``language`` the handset's language tag (version 2 SMS ``lg``);
    ``flags`` name what was odd but harmless."""

    transport: Transport
    number: str
    lat: float | None
    lon: float | None
    radius_m: float | None
    confidence_pct: float | None
    method: Method
    positioned_at: datetime
    imei: str = ""
    imsi: str = ""
    mcc: str = ""
    mnc: str = ""
    emergency_number: str = ""
    altitude_m: float | None = None
    floor: str = ""
    version: str = ""
    language: str = ""
    flags: tuple[str, ...] = ()
    raw: str = ""

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None


def check_printable(what: str, text: str) -> None:
    """Raise when ``text`` holds a control character (C0/C1, NUL, newlines, bidi overrides)."""
    if not text.isprintable():
        bad = next(ch for ch in text if not ch.isprintable())
        raise ProtocolError(f"{what} contains control character U+{ord(bad):04X}")


def letter_method(value: str, key: str, what: str) -> Method:
    """A one-letter positioning method; an unknown letter still carries a position, so it is "unknown"."""
    if len(value) != 1 or not value.isalpha():
        raise ProtocolError(f"{key}: expected one {what} letter, got {value[:8]!r}")
    return LETTER_METHODS.get(value.upper(), "unknown")


def position(lat_text: str, lon_text: str, lat_key: str, lon_key: str, method: Method,
             flags: list[str]) -> tuple[float | None, float | None]:
    """Latitude and longitude, or (None, None) when the handset had no fix."""
    if method == "none" or (lat_text == "" and lon_text == ""):
        return None, None  # no fix: whatever stands in the fields is a placeholder
    lat, lon = decimal(lat_text, lat_key), decimal(lon_text, lon_key)
    if not -90 <= lat <= 90:
        raise ProtocolError(f"{lat_key}: latitude {lat} is outside -90..90")
    if not -180 <= lon <= 180:
        raise ProtocolError(f"{lon_key}: longitude {lon} is outside -180..180")
    if lat == 0 and lon == 0:
        # ELS writes +00.00000/+000.00000 for "no location"; a dot at 0N 0E would send a unit nowhere
        flags.append("zero_position")
        return None, None
    return lat, lon


def decimal(text: str, key: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ProtocolError(f"{key}: expected a decimal number, got {text[:16]!r}")
    return float(text)


def radius(text: str, key: str, flags: list[str]) -> float | None:
    """Horizontal uncertainty in metres; empty or 0 mean unknown (flagged), never "exact"."""
    if text == "":
        flags.append("radius_unknown")
        return None
    value = decimal(text, key)
    if value < 0:
        raise ProtocolError(f"{key}: negative radius {value}")
    if value > MAX_RADIUS_M:
        raise ProtocolError(f"{key}: radius of {value} m is absurd (limit {MAX_RADIUS_M:.0f} m)")
    if value == 0:  # 0 means "unknown", not "exact": it must not win the best-candidate rule
        flags.append("radius_unknown")
        return None
    return value


def percent(text: str, key: str) -> float:
    value = decimal(text, key)
    if not 0 <= value <= 100:
        raise ProtocolError(f"{key}: confidence {value} is outside 0-100 %")
    return value


def plausible(when: datetime, key: str) -> datetime:
    if not EARLIEST <= when < LATEST:  # catches seconds sent as milliseconds and vice versa
        raise ProtocolError(f"{key}: {when.isoformat()} is not a plausible time of positioning")
    return when


def from_epoch(seconds: float, key: str) -> datetime:
    """A UTC time from seconds since 1970, refused unless plausible."""
    seconds = max(min(seconds, LATEST.timestamp()), 0.0)  # fromtimestamp fails past year 9999
    return plausible(datetime.fromtimestamp(seconds, tz=UTC), key)


def ident(text: str, key: str, flags: list[str]) -> str:
    if text == "" or re.fullmatch(IDENTIFIERS[key], text):
        return text
    flags.append(f"bad_{key}")  # identifiers never move the dot: a bad one is dropped, not fatal
    return ""


def altitude(text: str, flags: list[str], key: str = "location_altitude") -> float | None:
    # an altitude never moves the dot on the map: a bad one is dropped, not fatal
    if _DECIMAL.fullmatch(text) and -1000 <= float(text) <= 10_000:
        return float(text)
    if text:
        flags.append(f"bad_{key}")
    return None
