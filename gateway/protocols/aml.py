"""AML: Advanced Mobile Location reports sent by handsets during an emergency call (pure, no I/O).

ETSI TS 103 625 (from EENA's AML specification) defines two transports with the same content:

* SMS: ``A"ML=1;lt=+43.23810;lg=+76.94560;rd=15;top=20261121093012;lc=68;pm=G;si=...;ei=...;
  mcc=401;mnc=02;ml=123`` - latitude, longitude, radius (m), time of positioning (UTC), level of
  confidence (%), positioning method, IMSI, IMEI, network MCC/MNC and the message length.
* HTTPS POST, form-encoded: ``v``, ``time`` and ``location_time`` (ms since the epoch),
  ``location_latitude``/``_longitude``/``_accuracy``, ``location_confidence`` (a 0-1 fraction),
  ``location_source``, ``device_number``, ``device_imei``/``_imsi``, ``cell_network_mcc``/``_mnc``...

Theory of operation: a report is checked as a whole (size, control characters, duplicate fields),
then field by field. Anything that would put a wrong dot on the dispatcher's map is a ProtocolError
naming the field; identifiers that do not look like identifiers are dropped and flagged instead,
because they never move the dot and the location is worth more than they are. A handset without a
fix still reports (pm=N, lt/lg empty or +00.00000): that is a report *without a position*
(``has_position`` false), not an error, so the incident still learns AML was tried and by whom.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qsl, urlencode

import msgspec

from gateway.errors import ProtocolError
from gateway.protocols.caller import Location

Transport = Literal["sms", "https"]
Method = Literal["gnss", "wifi", "cell", "fused", "unknown", "none"]

SMS_HEADER = 'A"ML='
SMS_VERSIONS = frozenset({"1"})  # "2" is Google's experimental ELS Beta layout: different keys
HTTPS_VERSIONS = frozenset({"1", "2", "3"})  # Google's ELS documents v=1; deployed senders use up to 3
SMS_MANDATORY = ("lt", "lg", "rd", "top", "lc", "pm")
MAX_SMS_CHARS = 320  # an AML SMS fits one 160-character segment; twice that is not a handset
MAX_SENDER_CHARS = 32
MAX_BODY_BYTES = 32 * 1024
MAX_FIELDS = 128  # ELS may add optional emergency-information fields
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 2048
MAX_RADIUS_M = 100_000.0  # coarser than the largest rural cell says nothing a dispatcher can use
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

SMS_METHODS: dict[str, Method] = {"G": "gnss", "W": "wifi", "C": "cell", "F": "fused", "U": "unknown", "N": "none"}
HTTPS_METHODS: dict[str, Method] = {"gps": "gnss", "gnss": "gnss", "wifi": "wifi", "cell": "cell", "fused": "fused"}

_DECIMAL = re.compile(r"[+-]?[0-9]{1,9}(?:\.[0-9]{1,12})?")  # no exponents, nan, inf or '_' (float() takes them)
_SMS_KEY = re.compile(r"[a-z]{1,8}")
IDENTIFIERS = {"imei": "[0-9]{14,16}", "imsi": "[0-9]{5,15}", "mcc": "[0-9]{3}", "mnc": "[0-9]{2,3}",
               "emergency_number": "[0-9]{2,6}", "device_number": r"\+?[0-9 ().\-/]{1,32}"}


class AmlReport(msgspec.Struct, frozen=True, kw_only=True):
    """One AML report. ``lat``/``lon`` are None when the handset had no fix; ``radius_m`` is None
    when the handset gave none (or 0, which means unknown); ``number`` is as sent, to be normalised
    with ``gateway.protocols.ani.e164``; ``flags`` name what was odd but harmless."""

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
    flags: tuple[str, ...] = ()
    raw: str = ""

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None


def parse_sms(text: str, *, sender: str = "") -> AmlReport:
    """Parse the text of an AML SMS; ``sender`` is the SMS originating address, if known.

    Raises ProtocolError when the text is not AML, hostile, incomplete or out of range."""
    if len(text) > MAX_SMS_CHARS:
        raise ProtocolError(f"AML SMS of {len(text)} characters exceeds the {MAX_SMS_CHARS} limit")
    text = text.strip()  # SMSCs and modems add CR/LF around the user data
    _check_printable("AML SMS", text)
    if len(sender) > MAX_SENDER_CHARS:
        raise ProtocolError(f"SMS sender of {len(sender)} characters exceeds the {MAX_SENDER_CHARS} limit")
    _check_printable("SMS sender", sender)
    if not text.startswith(SMS_HEADER):
        raise ProtocolError(f"not an AML message: text starts {text[:12]!r}, expected {SMS_HEADER!r}")
    fields = _sms_fields(text)
    version = fields.pop('A"ML')
    if version not in SMS_VERSIONS:
        raise ProtocolError(f"unsupported AML SMS version {version[:8]!r}, expected one of {sorted(SMS_VERSIONS)}")
    missing = [name for name in SMS_MANDATORY if name not in fields]
    if missing:
        raise ProtocolError(f"AML SMS lacks mandatory field(s): {', '.join(missing)}")
    flags: list[str] = []
    method = _sms_method(fields["pm"])
    lat, lon = _position(fields["lt"], fields["lg"], "lt", "lg", method, flags)
    radius: float | None = None
    confidence: float | None = None
    if lat is not None:
        radius = _radius(fields["rd"], "rd", flags)
        confidence = _percent(fields["lc"], "lc") if fields["lc"] else None
    ml = fields.get("ml", "")  # lets a PSAP spot truncation; handsets disagree on counting, so only flagged
    if not (ml.isascii() and ml.isdigit()) or int(ml) != len(text):
        flags.append("length_mismatch" if ml else "no_length")
    return AmlReport(
        transport="sms", number=_ident(sender.strip(), "device_number", flags), lat=lat, lon=lon,
        radius_m=radius, confidence_pct=confidence, method=method, positioned_at=_sms_time(fields["top"]),
        imei=_ident(fields.get("ei", ""), "imei", flags), imsi=_ident(fields.get("si", ""), "imsi", flags),
        mcc=_ident(fields.get("mcc", ""), "mcc", flags), mnc=_ident(fields.get("mnc", ""), "mnc", flags),
        flags=tuple(flags), raw=text)


def parse_https_body(body: bytes | str) -> AmlReport:
    """Parse an ``application/x-www-form-urlencoded`` AML POST body. Raises ProtocolError."""
    size = len(body.encode("utf-8", "surrogatepass")) if isinstance(body, str) else len(body)
    if size > MAX_BODY_BYTES:
        raise ProtocolError(f"AML POST body of {size} bytes exceeds the {MAX_BODY_BYTES} byte limit")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_FIELDS,
                          errors="strict")
    except UnicodeError as exc:
        raise ProtocolError(f"AML POST body is not UTF-8: {exc}") from exc
    except ValueError as exc:
        raise ProtocolError(f"AML POST body is not a form: {exc}") from exc
    return parse_https(pairs)


def parse_https(form: Mapping[str, str] | Iterable[tuple[str, str]]) -> AmlReport:
    """Parse the fields of an AML HTTPS POST, as a mapping or as (key, value) pairs in body order
    (pairs let a repeated field be caught). Raises ProtocolError."""
    fields = _form_fields(form.items() if isinstance(form, Mapping) else form)
    if "v" not in fields:
        raise ProtocolError("not an AML message: the form has no 'v' (AML version) field")
    if fields["v"] not in HTTPS_VERSIONS:
        raise ProtocolError(f"unsupported AML HTTPS version {fields['v'][:8]!r}, expected one of "
                            f"{sorted(HTTPS_VERSIONS)}")
    flags: list[str] = []
    source = fields.get("location_source", "").lower()
    method: Method = HTTPS_METHODS.get(source, "unknown")
    lat, lon = _position(fields.get("location_latitude", ""), fields.get("location_longitude", ""),
                         "location_latitude", "location_longitude", method, flags)
    radius: float | None = None
    confidence: float | None = None
    if lat is None:
        method = "none"
    else:
        radius = _radius(fields.get("location_accuracy", ""), "location_accuracy", flags)
        confidence = _fraction_pct(fields.get("location_confidence", fields.get("location_certainty", "")), flags)
    return AmlReport(
        transport="https", number=_ident(fields.get("device_number", ""), "device_number", flags), lat=lat,
        lon=lon, radius_m=radius, confidence_pct=confidence, method=method, positioned_at=_https_time(fields, flags),
        imei=_ident(fields.get("device_imei", ""), "imei", flags),
        imsi=_ident(fields.get("device_imsi", ""), "imsi", flags),
        mcc=_ident(fields.get("cell_network_mcc", fields.get("cell_home_mcc", "")), "mcc", flags),
        mnc=_ident(fields.get("cell_network_mnc", fields.get("cell_home_mnc", "")), "mnc", flags),
        emergency_number=_ident(fields.get("emergency_number", ""), "emergency_number", flags),
        altitude_m=_altitude(fields.get("location_altitude", ""), flags), floor=fields.get("location_floor", "")[:16],
        flags=tuple(flags), raw=urlencode(list(fields.items())))


def to_location(report: AmlReport) -> Location | None:
    """The report as a location candidate (source "aml"), or None when the handset had no fix."""
    if report.lat is None or report.lon is None:
        return None
    shape: Literal["circle", "point"] = "circle" if report.radius_m is not None else "point"
    return Location(source="aml", shape=shape, lat=report.lat, lon=report.lon, radius_m=report.radius_m,
                    method=report.method)


def matches_call(report: AmlReport, number: str, call_started_at: datetime, window_s: float = 600) -> bool:
    """True when the report comes from ``number`` and was positioned within ``window_s`` seconds
    either side of the call's start (a handset may send a fix taken just before dialling).

    Both numbers should already be E.164 (``gateway.protocols.ani.e164``); only the Kazakh domestic forms
    (8XXXXXXXXXX, 10 digits) are tolerated here. A report without a number never matches."""
    if call_started_at.tzinfo is None:
        raise ValueError("call_started_at must be timezone-aware")
    if window_s < 0:
        raise ValueError(f"window_s must not be negative, got {window_s}")
    mine, theirs = _comparable(report.number), _comparable(number)
    if not mine or mine != theirs:
        return False
    return abs((report.positioned_at - call_started_at).total_seconds()) <= window_s


def _check_printable(what: str, text: str) -> None:
    # isprintable() is false for C0/C1 controls, NUL, newlines and bidi overrides alike
    if not text.isprintable():
        bad = next(ch for ch in text if not ch.isprintable())
        raise ProtocolError(f"{what} contains control character U+{ord(bad):04X}")


def _sms_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    parts = text.split(";")
    if parts[-1] == "":  # a trailing separator is harmless
        parts.pop()
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not (key == 'A"ML' or _SMS_KEY.fullmatch(key)):
            raise ProtocolError(f"AML SMS field {part[:20]!r} is not key=value")
        if key in fields:
            raise ProtocolError(f"AML SMS repeats field {key!r}")
        fields[key] = value
    return fields


def _form_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in itertools.islice(pairs, MAX_FIELDS + 1):
        if len(fields) == MAX_FIELDS:
            raise ProtocolError(f"AML POST has more than {MAX_FIELDS} fields")
        if not isinstance(key, str) or not isinstance(value, str):
            raise ProtocolError(f"AML POST field {key!r} is not text")
        if not 0 < len(key) <= MAX_KEY_CHARS:
            raise ProtocolError(f"AML POST field name of {len(key)} characters, limit {MAX_KEY_CHARS}")
        _check_printable("AML POST field name", key)
        if len(value) > MAX_VALUE_CHARS:
            raise ProtocolError(f"AML POST field {key!r} has {len(value)} characters, limit {MAX_VALUE_CHARS}")
        _check_printable(f"AML POST field {key!r}", value)
        if key in fields:
            raise ProtocolError(f"AML POST repeats field {key!r}")
        fields[key] = value.strip()
    return fields


def _sms_method(value: str) -> Method:
    if len(value) != 1 or not value.isalpha():
        raise ProtocolError(f"pm: expected one positioning-method letter, got {value[:8]!r}")
    return SMS_METHODS.get(value.upper(), "unknown")  # a newer letter still carries a position


def _position(lat_text: str, lon_text: str, lat_key: str, lon_key: str, method: Method,
              flags: list[str]) -> tuple[float | None, float | None]:
    if method == "none" or (lat_text == "" and lon_text == ""):
        return None, None  # no fix: whatever stands in lt/lg is a placeholder
    lat, lon = _decimal(lat_text, lat_key), _decimal(lon_text, lon_key)
    if not -90 <= lat <= 90:
        raise ProtocolError(f"{lat_key}: latitude {lat} is outside -90..90")
    if not -180 <= lon <= 180:
        raise ProtocolError(f"{lon_key}: longitude {lon} is outside -180..180")
    if lat == 0 and lon == 0:
        # ELS writes +00.00000/+000.00000 for "no location"; a dot at 0N 0E would send a unit nowhere
        flags.append("zero_position")
        return None, None
    return lat, lon


def _decimal(text: str, key: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ProtocolError(f"{key}: expected a decimal number, got {text[:16]!r}")
    return float(text)


def _radius(text: str, key: str, flags: list[str]) -> float | None:
    if text == "":
        flags.append("radius_unknown")
        return None
    radius = _decimal(text, key)
    if radius < 0:
        raise ProtocolError(f"{key}: negative radius {radius}")
    if radius > MAX_RADIUS_M:
        raise ProtocolError(f"{key}: radius of {radius} m is absurd (limit {MAX_RADIUS_M:.0f} m)")
    if radius == 0:  # 0 means "unknown", not "exact": it must not win the best-candidate rule
        flags.append("radius_unknown")
        return None
    return radius


def _percent(text: str, key: str) -> float:
    value = _decimal(text, key)
    if not 0 <= value <= 100:
        raise ProtocolError(f"{key}: confidence {value} is outside 0-100 %")
    return value


def _fraction_pct(text: str, flags: list[str]) -> float | None:
    if text == "":
        return None
    value = _decimal(text, "location_confidence")
    if 0 <= value <= 1:
        return round(value * 100, 4)
    flags.append("confidence_as_percent")  # the spec says 0-1; some senders write the percentage
    return _percent(text, "location_confidence")


def _sms_time(text: str) -> datetime:
    if not re.fullmatch(r"[0-9]{14}", text):
        raise ProtocolError(f"top: expected YYYYMMDDhhmmss, got {text[:20]!r}")
    try:
        when = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ProtocolError(f"top: {text!r} is not a date and time: {exc}") from exc
    return _plausible(when, "top")


def _https_time(fields: Mapping[str, str], flags: list[str]) -> datetime:
    key = "location_time" if fields.get("location_time") else "time"
    if not fields.get(key):
        raise ProtocolError("AML POST lacks mandatory field(s): location_time or time")
    if key == "time":
        flags.append("no_location_time")  # the call's start stands in for the fix time
    text = fields[key]
    if not re.fullmatch(r"[0-9]{1,15}", text):
        raise ProtocolError(f"{key}: expected milliseconds since 1970, got {text[:20]!r}")
    ms = min(int(text), int(LATEST.timestamp() * 1000))  # fromtimestamp fails past year 9999
    return _plausible(datetime.fromtimestamp(ms / 1000, tz=UTC), key)


def _plausible(when: datetime, key: str) -> datetime:
    if not EARLIEST <= when < LATEST:  # catches seconds sent as milliseconds and vice versa
        raise ProtocolError(f"{key}: {when.isoformat()} is not a plausible time of positioning")
    return when


def _ident(text: str, key: str, flags: list[str]) -> str:
    if text == "" or re.fullmatch(IDENTIFIERS[key], text):
        return text
    flags.append(f"bad_{key}")  # identifiers never move the dot: a bad one is dropped, not fatal
    return ""


def _altitude(text: str, flags: list[str]) -> float | None:
    # an altitude never moves the dot on the map: a bad one is dropped, not fatal
    if _DECIMAL.fullmatch(text) and -1000 <= float(text) <= 10_000:
        return float(text)
    if text:
        flags.append("bad_location_altitude")
    return None


def _comparable(number: str) -> str:
    digits = re.sub(r"[\s().\-/]", "", number)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif len(digits) == 11 and digits.startswith("8"):  # Kazakh trunk prefix
        digits = "7" + digits[1:]
    elif len(digits) == 10:
        digits = "7" + digits
    return digits if digits.isascii() and digits.isdigit() else ""
