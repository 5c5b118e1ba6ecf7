"""AML: Advanced Mobile Location reports sent by handsets during an emergency call (pure, no I/O).

ETSI TS 103 625 (from EENA's AML specification) defines two transports with the same content:

* SMS: ``A"ML=1;lt=+43.23810;lg=+76.94560;rd=15;top=20261121093012;lc=68;pm=G;si=...;ei=...;
  mcc=401;mnc=02;ml=123`` - latitude, longitude, radius (m), time of positioning (UTC), level of
  confidence (%), positioning method, IMSI, IMEI, network MCC/MNC and the message length.
  ``A"ML=2`` is the version 2 layout Google's Android Emergency Location Service sends ("ELS Beta":
  ``en``, ``et``, ``lo``, ``lt``, ``lc``, ``lz``, ``ls``, ``ei``, ``nc``, ``hc``, ``lg``); it is read by
  ``gateway.protocols.aml_els``, and the same framing rules hold for both.
* HTTPS POST, form-encoded: ``v``, ``time`` and ``location_time`` (ms since the epoch),
  ``location_latitude``/``_longitude``/``_accuracy``, ``location_confidence`` (a 0-1 fraction),
  ``location_source``, ``device_number``, ``device_imei``/``_imsi``, ``cell_network_mcc``/``_mnc``...

Theory of operation: a report is checked as a whole (size, control characters, duplicate fields),
then field by field (``gateway.protocols.aml_fields``). Anything that would put a wrong dot on the
dispatcher's map is a ProtocolError naming the field; identifiers that do not look like identifiers
are dropped and flagged instead, because they never move the dot and the location is worth more than
they are. A handset without a fix still reports (pm=N, lt/lg empty or +00.00000; no ``lo`` in
version 2): that is a report *without a position* (``has_position`` false), not an error, so the
incident still learns AML was tried and by whom.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from gateway.errors import ProtocolError
from gateway.protocols import aml_els
from gateway.protocols import aml_fields as f
from gateway.protocols.aml_fields import AmlReport as AmlReport
from gateway.protocols.aml_fields import Method as Method
from gateway.protocols.aml_fields import Transport as Transport
from gateway.protocols.caller import Location

SMS_HEADER = 'A"ML='
SMS_VERSIONS = frozenset({"1", aml_els.VERSION})  # 1: ETSI TS 103 625; 2: Google's ELS Beta layout
HTTPS_VERSIONS = frozenset({"1", "2", "3"})  # Google's ELS documents v=1; deployed senders use up to 3
SMS_MANDATORY = ("lt", "lg", "rd", "top", "lc", "pm")
MAX_SMS_CHARS = 320  # an AML SMS fits one 160-character segment; twice that is not a handset
MAX_SENDER_CHARS = 32
MAX_BODY_BYTES = 32 * 1024
MAX_FIELDS = 128  # ELS may add optional emergency-information fields
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 2048
MAX_RADIUS_M = f.MAX_RADIUS_M
EARLIEST, LATEST = f.EARLIEST, f.LATEST

HTTPS_METHODS: dict[str, Method] = {"gps": "gnss", "gnss": "gnss", "wifi": "wifi", "cell": "cell", "fused": "fused"}

_SMS_KEY = re.compile(r"[a-z]{1,8}")


def parse_sms(text: str, *, sender: str = "") -> AmlReport:
    """Parse the text of an AML SMS (version 1 or 2); ``sender`` is the SMS originating address, if known.

    Raises ProtocolError when the text is not AML, hostile, incomplete or out of range."""
    if len(text) > MAX_SMS_CHARS:
        raise ProtocolError(f"AML SMS of {len(text)} characters exceeds the {MAX_SMS_CHARS} limit")
    text = text.strip()  # SMSCs and modems add CR/LF around the user data
    f.check_printable("AML SMS", text)
    if len(sender) > MAX_SENDER_CHARS:
        raise ProtocolError(f"SMS sender of {len(sender)} characters exceeds the {MAX_SENDER_CHARS} limit")
    f.check_printable("SMS sender", sender)
    if not text.startswith(SMS_HEADER):
        raise ProtocolError(f"not an AML message: text starts {text[:12]!r}, expected {SMS_HEADER!r}")
    fields = _sms_fields(text)
    version = fields.pop('A"ML')
    if version not in SMS_VERSIONS:
        raise ProtocolError(f"unsupported AML SMS version {version[:8]!r}, expected one of {sorted(SMS_VERSIONS)}")
    if version == aml_els.VERSION:
        return aml_els.parse(fields, text=text, sender=sender)
    return _sms_v1(fields, text, sender)


def _sms_v1(fields: Mapping[str, str], text: str, sender: str) -> AmlReport:
    missing = [name for name in SMS_MANDATORY if name not in fields]
    if missing:
        raise ProtocolError(f"AML SMS lacks mandatory field(s): {', '.join(missing)}")
    flags: list[str] = []
    method = f.letter_method(fields["pm"], "pm", "positioning-method")
    lat, lon = f.position(fields["lt"], fields["lg"], "lt", "lg", method, flags)
    radius: float | None = None
    confidence: float | None = None
    if lat is not None:
        radius = f.radius(fields["rd"], "rd", flags)
        confidence = f.percent(fields["lc"], "lc") if fields["lc"] else None
    ml = fields.get("ml", "")  # lets a PSAP spot truncation; handsets disagree on counting, so only flagged
    if not (ml.isascii() and ml.isdigit()) or int(ml) != len(text):
        flags.append("length_mismatch" if ml else "no_length")
    return AmlReport(
        transport="sms", number=f.ident(sender.strip(), "device_number", flags), lat=lat, lon=lon,
        radius_m=radius, confidence_pct=confidence, method=method, positioned_at=_sms_time(fields["top"]),
        imei=f.ident(fields.get("ei", ""), "imei", flags), imsi=f.ident(fields.get("si", ""), "imsi", flags),
        mcc=f.ident(fields.get("mcc", ""), "mcc", flags), mnc=f.ident(fields.get("mnc", ""), "mnc", flags),
        version="1", flags=tuple(flags), raw=text)


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
    lat, lon = f.position(fields.get("location_latitude", ""), fields.get("location_longitude", ""),
                          "location_latitude", "location_longitude", method, flags)
    radius: float | None = None
    confidence: float | None = None
    if lat is None:
        method = "none"
    else:
        radius = f.radius(fields.get("location_accuracy", ""), "location_accuracy", flags)
        confidence = _fraction_pct(fields.get("location_confidence", fields.get("location_certainty", "")), flags)
    return AmlReport(
        transport="https", number=f.ident(fields.get("device_number", ""), "device_number", flags), lat=lat,
        lon=lon, radius_m=radius, confidence_pct=confidence, method=method, positioned_at=_https_time(fields, flags),
        imei=f.ident(fields.get("device_imei", ""), "imei", flags),
        imsi=f.ident(fields.get("device_imsi", ""), "imsi", flags),
        mcc=f.ident(fields.get("cell_network_mcc", fields.get("cell_home_mcc", "")), "mcc", flags),
        mnc=f.ident(fields.get("cell_network_mnc", fields.get("cell_home_mnc", "")), "mnc", flags),
        emergency_number=f.ident(fields.get("emergency_number", ""), "emergency_number", flags),
        altitude_m=f.altitude(fields.get("location_altitude", ""), flags),
        floor=fields.get("location_floor", "")[:16], version=fields["v"], flags=tuple(flags),
        raw=urlencode(list(fields.items())))


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


def _sms_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    parts = text.split(";")
    if parts[-1] == "":  # a trailing separator is harmless
        parts.pop()
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or "=" in value or not (key == 'A"ML' or _SMS_KEY.fullmatch(key)):
            empty = " (an empty field between two ';')" if not part else ""
            raise ProtocolError(f"AML SMS field {part[:20]!r} is not key=value{empty}")
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
        f.check_printable("AML POST field name", key)
        if len(value) > MAX_VALUE_CHARS:
            raise ProtocolError(f"AML POST field {key!r} has {len(value)} characters, limit {MAX_VALUE_CHARS}")
        f.check_printable(f"AML POST field {key!r}", value)
        if key in fields:
            raise ProtocolError(f"AML POST repeats field {key!r}")
        fields[key] = value.strip()
    return fields


def _fraction_pct(text: str, flags: list[str]) -> float | None:
    if text == "":
        return None
    value = f.decimal(text, "location_confidence")
    if 0 <= value <= 1:
        return round(value * 100, 4)
    flags.append("confidence_as_percent")  # the spec says 0-1; some senders write the percentage
    return f.percent(text, "location_confidence")


def _sms_time(text: str) -> datetime:
    if not re.fullmatch(r"[0-9]{14}", text):
        raise ProtocolError(f"top: expected YYYYMMDDhhmmss, got {text[:20]!r}")
    try:
        when = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ProtocolError(f"top: {text!r} is not a date and time: {exc}") from exc
    return f.plausible(when, "top")


def _https_time(fields: Mapping[str, str], flags: list[str]) -> datetime:
    key = "location_time" if fields.get("location_time") else "time"
    if not fields.get(key):
        raise ProtocolError("AML POST lacks mandatory field(s): location_time or time")
    if key == "time":
        flags.append("no_location_time")  # the call's start stands in for the fix time
    text = fields[key]
    if not re.fullmatch(r"[0-9]{1,15}", text):
        raise ProtocolError(f"{key}: expected milliseconds since 1970, got {text[:20]!r}")
    return f.from_epoch(int(text) / 1000, key)


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
