"""AML (Advanced Mobile Location) parsing, SMS and HTTPS, with plain strings: no loop, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.errors import ProtocolError
from gateway.incident.records import Location
from gateway.protocols import aml, location

# The brief's example: a correct message whose ml (123) disagrees with its real length (128).
ALMATY = ('A"ML=1;lt=+43.23810;lg=+76.94560;rd=15;top=20261121093012;lc=68;pm=G;si=401021234567890;'
          'ei=356789012345678;mcc=401;mnc=02;ml=123')
# Google ELS V1 examples ("no location" and "location computed"); the first has a correct ml.
ELS_NONE = ('A"ML=1;lt=+00.00000;lg=+000.00000;rd=N;top=20220131173734;lc=0;pm=N;si=234159000000000;'
            'ei=123456789012345;mcc=234;mnc=15;ml=127')
TOP = datetime(2026, 11, 21, 9, 30, 12, tzinfo=UTC)
MS = int(TOP.timestamp() * 1000)


def sms(**changes: str | None) -> str:
    """ALMATY with fields replaced (None removes one), ml kept honest."""
    fields = dict(part.split("=", 1) for part in ALMATY.split(";"))
    for key, value in changes.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    fields.pop("ml", None)
    text = ";".join(f"{k}={v}" for k, v in fields.items()) + ";ml="
    length = len(text) + 3
    return text + str(length if len(str(length)) == 3 else len(text) + len(str(len(text))))


def form(**changes: str | None) -> dict[str, str]:
    fields = {
        "v": "3", "emergency_number": "112", "source": "call", "thunderbird_version": "2800",
        "time": str(MS - 15_000), "location_latitude": "43.2381", "location_longitude": "76.9456",
        "location_time": str(MS), "location_altitude": "812", "location_floor": "3", "location_source": "gps",
        "location_accuracy": "12.5", "location_confidence": "0.6827", "device_number": "+77011234567",
        "device_model": "Samsung SM-A525F", "device_imsi": "401021234567890", "device_imei": "356789012345678",
        "cell_home_mcc": "401", "cell_home_mnc": "01", "cell_network_mcc": "401", "cell_network_mnc": "02",
        "device_languages": "kk-KZ,ru-RU",
    }
    for key, value in changes.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    return fields


def rejected(text: str, *, sender: str = "") -> str:
    with pytest.raises(ProtocolError) as info:
        aml.parse_sms(text, sender=sender)
    return str(info.value)


def rejected_https(fields: dict[str, str] | list[tuple[str, str]]) -> str:
    with pytest.raises(ProtocolError) as info:
        aml.parse_https(fields)
    return str(info.value)


# --- SMS: what arrives ---------------------------------------------------------------------------

def test_sms_every_field() -> None:
    r = aml.parse_sms(ALMATY, sender="+77011234567")
    assert (r.transport, r.number, r.lat, r.lon, r.radius_m, r.confidence_pct, r.method) == (
        "sms", "+77011234567", 43.2381, 76.9456, 15.0, 68.0, "gnss")
    assert r.positioned_at == TOP and r.positioned_at.tzinfo is UTC
    assert (r.imsi, r.imei, r.mcc, r.mnc) == ("401021234567890", "356789012345678", "401", "02")
    assert r.has_position and r.raw == ALMATY
    assert r.flags == ("length_mismatch",)  # 128 characters, ml says 123: flagged, not fatal


def test_sms_honest_length_has_no_flags_and_negative_coordinates() -> None:
    r = aml.parse_sms(sms(lt="-33.86785", lg="-151.20732", pm="W"))
    assert (r.lat, r.lon, r.method, r.flags) == (-33.86785, -151.20732, "wifi", ())


def test_sms_surrounding_line_ends_and_trailing_separator_are_tolerated() -> None:
    r = aml.parse_sms("\r\n" + sms() + ";\r\n")
    assert r.lat == 43.2381 and r.raw == sms() + ";"


@pytest.mark.parametrize(("pm", "method"), [("G", "gnss"), ("W", "wifi"), ("C", "cell"), ("F", "fused"),
                                            ("U", "unknown"), ("X", "unknown")])
def test_sms_positioning_methods(pm: str, method: str) -> None:
    assert aml.parse_sms(sms(pm=pm)).method == method


@pytest.mark.parametrize("lat, lon", [("+90.00000", "+180.00000"), ("-90", "-180"), ("43", "76.9")])
def test_sms_coordinates_at_the_limits(lat: str, lon: str) -> None:
    r = aml.parse_sms(sms(lt=lat, lg=lon))
    assert (r.lat, r.lon) == (float(lat), float(lon))


def test_sms_missing_identifiers_are_empty_and_bad_ones_dropped_with_a_flag() -> None:
    r = aml.parse_sms(sms(si=None, ei="35678901234567X", mcc="4O1", mnc="02"))
    assert (r.imsi, r.imei, r.mcc, r.mnc) == ("", "", "", "02")
    assert set(r.flags) == {"bad_imei", "bad_mcc"}


def test_sms_without_ml_is_flagged() -> None:
    r = aml.parse_sms(ALMATY.rsplit(";ml=", 1)[0])
    assert r.flags == ("no_length",) and r.has_position


# --- SMS: no fix is a report without a position, not an error ------------------------------------

def test_sms_els_null_location_has_no_position() -> None:
    r = aml.parse_sms(ELS_NONE)
    assert (r.lat, r.lon, r.radius_m, r.confidence_pct, r.method) == (None, None, None, None, "none")
    assert not r.has_position and r.imei == "123456789012345" and r.flags == ()
    assert aml.to_location(r) is None


def test_sms_pm_n_with_empty_position_fields() -> None:
    r = aml.parse_sms(sms(lt="", lg="", rd="", lc="", pm="N"))
    assert not r.has_position and r.method == "none" and r.positioned_at == TOP


def test_sms_pm_n_ignores_whatever_stands_in_the_position_fields() -> None:
    assert not aml.parse_sms(sms(pm="N", lt="+43.23810", rd="N", lc="x")).has_position


def test_sms_empty_position_without_pm_n_is_still_no_position() -> None:
    assert not aml.parse_sms(sms(lt="", lg="", pm="G")).has_position


def test_sms_zero_zero_is_never_shown_as_a_place() -> None:
    r = aml.parse_sms(sms(lt="+00.00000", lg="+000.00000", pm="G"))
    assert not r.has_position and "zero_position" in r.flags


def test_sms_half_a_position_is_an_error() -> None:
    assert "lg: expected a decimal number" in rejected(sms(lg=""))


# --- SMS: rejected -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["Hello, I need help", 'AML=1;lt=+43.2;lg=+76.9', "", 'a"ml=1;lt=1',
                                  'lt=+43.2;A"ML=1'])
def test_sms_not_aml(text: str) -> None:
    assert "not an AML message" in rejected(text)


@pytest.mark.parametrize("version", ["3", "0", "", "1.0", "2.0"])
def test_sms_unsupported_version(version: str) -> None:
    assert "unsupported AML SMS version" in rejected(sms(**{'A"ML': version}))


def test_sms_missing_mandatory_fields_are_all_named() -> None:
    message = rejected(sms(rd=None, top=None))
    assert "mandatory" in message and "rd" in message and "top" in message


@pytest.mark.parametrize("key", ["lt", "lg", "lc", "pm"])
def test_sms_each_location_field_is_mandatory(key: str) -> None:
    assert f"mandatory field(s): {key}" in rejected(sms(**{key: None}))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"lt": "+90.00001"}, "lt: latitude 90.00001 is outside -90..90"),
    ({"lt": "-91"}, "lt: latitude -91.0 is outside"),
    ({"lg": "+180.5"}, "lg: longitude 180.5 is outside -180..180"),
    ({"lg": "-181"}, "lg: longitude -181.0 is outside"),
])
def test_sms_coordinates_out_of_range(changes: dict[str, str], expected: str) -> None:
    assert expected in rejected(sms(**changes))


@pytest.mark.parametrize("value", ["nan", "inf", "1e1", "43,2381", "4_3.2", " 43.2", "+", "43.", "٤٣.٢"])
def test_sms_coordinates_must_be_plain_decimals(value: str) -> None:
    assert "lt: expected a decimal number" in rejected(sms(lt=value))


@pytest.mark.parametrize(("rd", "expected"), [
    ("-5", "rd: negative radius -5.0"),
    ("100001", "rd: radius of 100001.0 m is absurd"),
    ("999999999", "is absurd"),
    ("N", "rd: expected a decimal number"),
])
def test_sms_bad_radius(rd: str, expected: str) -> None:
    assert expected in rejected(sms(rd=rd))


def test_sms_zero_or_empty_radius_means_unknown_not_exact() -> None:
    for rd in ("0", "0.0", ""):
        r = aml.parse_sms(sms(rd=rd))
        assert r.radius_m is None and "radius_unknown" in r.flags and r.has_position


@pytest.mark.parametrize(("top", "expected"), [
    ("2026112109301", "top: expected YYYYMMDDhhmmss"),
    ("2026-11-21T09:30:12", "top: expected YYYYMMDDhhmmss"),
    ("", "top: expected YYYYMMDDhhmmss"),
    ("20261321093012", "is not a date and time"),
    ("20260230093012", "is not a date and time"),
    ("20261121246012", "is not a date and time"),
    ("19991231235959", "not a plausible time"),
    ("21000101000000", "not a plausible time"),
])
def test_sms_malformed_time(top: str, expected: str) -> None:
    assert expected in rejected(sms(top=top))


@pytest.mark.parametrize(("lc", "expected"), [
    ("101", "lc: confidence 101.0 is outside 0-100"),
    ("-1", "lc: confidence -1.0 is outside 0-100"),
    ("high", "lc: expected a decimal number"),
])
def test_sms_confidence_outside_0_100(lc: str, expected: str) -> None:
    assert expected in rejected(sms(lc=lc))


def test_sms_confidence_limits_accepted() -> None:
    assert aml.parse_sms(sms(lc="0")).confidence_pct == 0.0
    assert aml.parse_sms(sms(lc="100")).confidence_pct == 100.0


@pytest.mark.parametrize("pm", ["", "GW", "1", "?"])
def test_sms_malformed_positioning_method(pm: str) -> None:
    assert "pm: expected one positioning-method letter" in rejected(sms(pm=pm))


@pytest.mark.parametrize("text", [
    ALMATY.replace(";rd=15;", ";rd=15;lt=+51.50000;"),
    ALMATY.replace(";top=", ";rd=15;top="),
    ALMATY + ';A"ML=1',
])
def test_sms_duplicate_fields(text: str) -> None:
    assert "repeats field" in rejected(text)


@pytest.mark.parametrize("text", [ALMATY.replace(";rd=15;", ";rd15;"), ALMATY.replace(";rd=15;", ";;"),
                                  ALMATY.replace(";rd=15;", ";RD=15;"), ALMATY.replace(";rd=15;", ";=15;")])
def test_sms_fields_that_are_not_key_value(text: str) -> None:
    assert "is not key=value" in rejected(text)


def test_sms_very_long_text_is_refused_before_parsing() -> None:
    assert "exceeds the 320 limit" in rejected(ALMATY + ";" + "x=" + "9" * 100_000)


@pytest.mark.parametrize("bad", ["\x00", "\n", "\x1b", "\x7f", "\u202e", "\x85"])
def test_sms_control_characters(bad: str) -> None:
    assert "control character" in rejected(ALMATY.replace(";rd=15;", f";rd=15{bad};"))


def test_sms_empty_confidence_is_unknown() -> None:
    assert aml.parse_sms(sms(lc="")).confidence_pct is None


def test_sms_sender_that_is_not_a_number_is_dropped_and_flagged() -> None:
    r = aml.parse_sms(ALMATY, sender="Beeline")
    assert r.number == "" and "bad_device_number" in r.flags and r.has_position


def test_sms_hostile_sender() -> None:
    assert "control character" in rejected(ALMATY, sender="+7701\x00")
    assert "SMS sender of 200 characters" in rejected(ALMATY, sender="7" * 200)


# --- SMS version 2 (Google ELS Beta layout) --------------------------------------------------------

# Made up for these tests in the layout of Google's ELS SMS specification (its ELS Beta table), with Almaty values.
V2 = ('A"ML=2;en=112;et=1593187189;lo=43.23810,76.94560,20.1;lt=5;lc=68;lz=812.4,10.1;ls=W;'
      'ei=356789012345678;nc=40102;hc=40101;lg=kk-KZ')
ET = datetime(2020, 6, 26, 15, 59, 49, tzinfo=UTC)


def v2(**changes: str | None) -> str:
    fields = dict(part.split("=", 1) for part in V2.split(";"))
    for key, value in changes.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    return ";".join(f"{k}={v}" for k, v in fields.items())


def test_sms_v2_every_field() -> None:
    r = aml.parse_sms(V2, sender="+77011234567")
    assert (r.version, r.transport, r.number, r.lat, r.lon, r.radius_m, r.confidence_pct, r.method) == (
        "2", "sms", "+77011234567", 43.2381, 76.9456, 20.1, 68.0, "wifi")
    assert r.positioned_at == ET + timedelta(seconds=5)  # et + lt
    assert (r.emergency_number, r.altitude_m, r.imei, r.mcc, r.mnc, r.language) == (
        "112", 812.4, "356789012345678", "401", "02", "kk-KZ")  # network, not home
    assert r.flags == () and r.raw == V2 and r.imsi == ""  # version 2 carries no IMSI and no ml


def test_sms_v2_home_network_stands_in_and_fields_are_optional() -> None:
    r = aml.parse_sms(v2(nc=None, lt=None, lc=None, lz=None, ls=None, lg=None, en=None))
    assert (r.mcc, r.mnc, r.confidence_pct, r.altitude_m, r.method, r.language) == ("401", "01", None, None,
                                                                                      "unknown", "")
    assert r.positioned_at == ET and "no_location_time" in r.flags


def test_sms_v2_without_lo_has_no_position_and_ignores_the_location_fields() -> None:
    r = aml.parse_sms(v2(lo=None, lt="abc", ls="??", lz="x"))
    assert not r.has_position and r.method == "none" and r.positioned_at == ET
    assert aml.to_location(r) is None


@pytest.mark.parametrize(("lo", "radius", "flag"), [("43.2381,76.9456,0", None, "radius_unknown"),
                                                     ("43.2381,76.9456", None, "radius_unknown"),
                                                     ("-37.42175,-122.08461,2000.1", 2000.1, None)])
def test_sms_v2_accuracy(lo: str, radius: float | None, flag: str | None) -> None:
    r = aml.parse_sms(v2(lo=lo))
    assert r.has_position and r.radius_m == radius and (flag is None or flag in r.flags)


def test_sms_v2_zero_position_is_no_position() -> None:
    r = aml.parse_sms(v2(lo="0.00000,0.00000,0"))
    assert not r.has_position and "zero_position" in r.flags


@pytest.mark.parametrize(("changes", "expected"), [
    ({"et": None}, "version 2 lacks mandatory field(s): et"),
    ({"et": ""}, "version 2 lacks mandatory field(s): et"),
    ({"et": "1593187189000"}, "et: expected the call's time in whole seconds"),
    ({"et": "15931871.89"}, "et: expected the call's time in whole seconds"),
    ({"et": "5"}, "et: 1970-01-01T00:00:05+00:00 is not a plausible time"),
    ({"lo": "43.2381"}, "lo: expected latitude,longitude,accuracy, got 1 part(s)"),
    ({"lo": "43.2381,76.9456,20,4"}, "lo: expected latitude,longitude,accuracy, got 4 part(s)"),
    ({"lo": "95.0,76.9456,20"}, "lo: latitude 95.0 is outside -90..90"),
    ({"lo": "43.2381,-181,20"}, "lo: longitude -181.0 is outside -180..180"),
    ({"lo": "43.2381,abc,20"}, "lo: expected a decimal number, got 'abc'"),
    ({"lo": "43.2381,76.9456,-3"}, "lo: negative radius -3.0"),
    ({"lo": "43.2381,76.9456,1e9"}, "lo: expected a decimal number"),
    ({"lt": "soon"}, "lt: expected whole seconds relative to et"),
    ({"lt": "-999999999"}, "lt: 1988-"),
    ({"lc": "120"}, "lc: confidence 120.0 is outside 0-100"),
    ({"ls": "GPS"}, "ls: expected one location-source letter"),
])
def test_sms_v2_malformed_fields_are_named(changes: dict[str, str | None], expected: str) -> None:
    assert expected in rejected(v2(**changes))


def test_sms_v2_bad_identifiers_are_dropped_and_flagged() -> None:
    r = aml.parse_sms(v2(en="+15555555555", ei="35678", nc="4O102", hc="x", lg="english language", lz="high,1"))
    assert (r.emergency_number, r.imei, r.mcc, r.mnc, r.language, r.altitude_m) == ("", "", "", "", "", None)
    assert {"bad_emergency_number", "bad_imei", "bad_nc", "bad_hc", "bad_language", "bad_lz"} <= set(r.flags)
    assert r.has_position


def test_sms_v2_framing_rules_are_those_of_version_1() -> None:
    assert "repeats field 'lo'" in rejected(V2 + ";lo=1,2,3")
    assert "is not key=value" in rejected(V2.replace(";lc=68;", ";lc;"))
    assert "control character" in rejected(V2.replace(";lc=68;", ";lc=6\n8;"))


def test_sms_v2_matches_its_call() -> None:
    report = aml.parse_sms(V2, sender="+77011234567")
    assert aml.matches_call(report, "+77011234567", ET)


def test_sms_value_holding_an_equals_sign_is_not_key_value() -> None:
    assert "is not key=value" in rejected(ALMATY.replace(";rd=15;", ";a==;rd=15;"))


# --- HTTPS ---------------------------------------------------------------------------------------

def test_https_every_field() -> None:
    r = aml.parse_https(form())
    assert (r.transport, r.number, r.lat, r.lon, r.radius_m, r.method) == (
        "https", "+77011234567", 43.2381, 76.9456, 12.5, "gnss")
    assert r.confidence_pct == pytest.approx(68.27)  # sent as the fraction 0.6827
    assert r.positioned_at == TOP  # location_time, not the call's start
    assert (r.imei, r.imsi, r.mcc, r.mnc) == ("356789012345678", "401021234567890", "401", "02")  # network, not home
    assert (r.emergency_number, r.altitude_m, r.floor, r.flags) == ("112", 812.0, "3", ())
    assert "device_model=Samsung+SM-A525F" in r.raw


def test_https_body_form_encoded() -> None:
    body = "&".join(f"{k}={v}" for k, v in form(device_number="%2B77011234567", device_model="Pixel%207").items())
    r = aml.parse_https_body(body.encode())
    assert (r.number, r.lat, r.positioned_at) == ("+77011234567", 43.2381, TOP)


@pytest.mark.parametrize(("source", "method"), [("gps", "gnss"), ("GPS", "gnss"), ("wifi", "wifi"),
                                                ("cell", "cell"), ("unknown", "unknown"), ("", "unknown")])
def test_https_location_source(source: str, method: str) -> None:
    assert aml.parse_https(form(location_source=source)).method == method


def test_https_without_location_has_no_position_and_uses_the_call_time() -> None:
    r = aml.parse_https(form(location_latitude=None, location_longitude=None, location_accuracy=None,
                             location_confidence=None, location_time=None))
    assert (r.lat, r.lon, r.radius_m, r.method) == (None, None, None, "none")
    assert r.positioned_at == TOP - timedelta(seconds=15) and "no_location_time" in r.flags
    assert aml.to_location(r) is None


def test_https_optional_fields_may_be_absent() -> None:
    r = aml.parse_https({"v": "1", "location_latitude": "43.2381", "location_longitude": "76.9456",
                         "location_time": str(MS)})
    assert (r.number, r.radius_m, r.confidence_pct, r.method) == ("", None, None, "unknown")
    assert "radius_unknown" in r.flags


def test_https_confidence_as_a_percentage_is_accepted_and_flagged() -> None:
    r = aml.parse_https(form(location_confidence="68"))
    assert r.confidence_pct == 68.0 and "confidence_as_percent" in r.flags


@pytest.mark.parametrize("value", ["101", "-0.1", "abc"])
def test_https_confidence_outside_0_100(value: str) -> None:
    assert "location_confidence" in rejected_https(form(location_confidence=value))


def test_https_not_aml() -> None:
    assert "not an AML message" in rejected_https(form(v=None))
    assert "not an AML message" in rejected_https({"q": "hello"})


def test_https_unsupported_version() -> None:
    assert "unsupported AML HTTPS version '9'" in rejected_https(form(v="9"))


def test_https_missing_time_is_missing_a_mandatory_field() -> None:
    assert "mandatory" in rejected_https(form(time=None, location_time=None))


def test_https_half_a_position() -> None:
    assert "location_longitude: expected a decimal number" in rejected_https(form(location_longitude=None))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"location_latitude": "95"}, "location_latitude: latitude 95.0 is outside"),
    ({"location_longitude": "-200"}, "location_longitude: longitude -200.0 is outside"),
    ({"location_accuracy": "-1"}, "location_accuracy: negative radius"),
    ({"location_accuracy": "5000000"}, "is absurd"),
    ({"location_time": "yesterday"}, "location_time: expected milliseconds"),
    ({"location_time": str(MS // 1000)}, "location_time: 1970"),  # seconds, not milliseconds
    ({"location_time": "9" * 15}, "not a plausible time"),
])
def test_https_out_of_range_and_malformed(changes: dict[str, str], expected: str) -> None:
    assert expected in rejected_https(form(**changes))


def test_https_bad_identifiers_and_altitude_are_dropped_not_fatal() -> None:
    r = aml.parse_https(form(device_imei="abc", device_number="+7 701 <script>", location_altitude="1e9"))
    assert (r.imei, r.number, r.altitude_m, r.lat) == ("", "", None, 43.2381)
    assert {"bad_imei", "bad_device_number", "bad_location_altitude"} <= set(r.flags)


def test_https_duplicate_fields_in_pairs_and_in_a_body() -> None:
    pairs = list(form().items()) + [("location_latitude", "51.5")]
    assert "repeats field 'location_latitude'" in rejected_https(pairs)
    with pytest.raises(ProtocolError, match="repeats field 'location_latitude'"):
        aml.parse_https_body("v=1&location_latitude=43.2&location_latitude=51.5&location_longitude=76.9&time=1")


def test_https_hostile_input() -> None:
    assert "control character U+0000" in rejected_https(form(device_model="Pixel\x00"))
    assert "control character U+000A" in rejected_https(form(location_floor="3\nEvil: yes"))
    assert "characters, limit" in rejected_https(form(device_model="x" * 5000))
    assert "more than 128 fields" in rejected_https({f"f{i}": "1" for i in range(500)} | form())
    with pytest.raises(ProtocolError, match="byte limit"):
        aml.parse_https_body(b"v=1&x=" + b"9" * 100_000)
    with pytest.raises(ProtocolError, match="not UTF-8"):
        aml.parse_https_body(b"v=1&device_model=\xff\xfe")
    with pytest.raises(ProtocolError, match="not UTF-8"):
        aml.parse_https_body(b"v=1&device_model=%ff%fe")
    with pytest.raises(ProtocolError, match="not a form"):
        aml.parse_https_body("&".join(["a=1"] * 200))
    with pytest.raises(ProtocolError, match="not a form"):
        aml.parse_https_body("v=1&garbage")


# --- Location and the best-candidate rule --------------------------------------------------------

def test_to_location_circle_from_aml() -> None:
    loc = aml.to_location(aml.parse_sms(ALMATY))
    assert loc == Location(source="aml", shape="circle", lat=43.2381, lon=76.9456, radius_m=15.0, method="gnss")


def test_to_location_point_when_radius_unknown() -> None:
    loc = aml.to_location(aml.parse_sms(sms(rd="0")))
    assert loc is not None and (loc.shape, loc.radius_m) == ("point", None)


def test_aml_competes_in_the_best_candidate_rule() -> None:
    directory = Location(source="directory", shape="point", lat=43.25, lon=76.9, radius_m=50.0)
    gnss = aml.to_location(aml.parse_sms(ALMATY))
    cell = aml.to_location(aml.parse_sms(sms(rd="2500", pm="C")))
    assert gnss is not None and cell is not None
    assert location.best([directory, gnss]) == 1
    assert location.best([directory, cell]) == 0


# --- Attaching to the caller's incident ----------------------------------------------------------

@pytest.mark.parametrize("number", ["+77011234567", "87011234567", "+7 (701) 123-45-67", "0077011234567",
                                    "7011234567"])
def test_matches_call_same_number_in_any_form(number: str) -> None:
    report = aml.parse_sms(ALMATY, sender="+77011234567")
    assert aml.matches_call(report, number, TOP - timedelta(seconds=20))


def test_matches_call_window_both_sides() -> None:
    report = aml.parse_https(form())
    assert aml.matches_call(report, "+77011234567", TOP + timedelta(seconds=30))  # fix taken just before the call
    assert aml.matches_call(report, "+77011234567", TOP - timedelta(seconds=600))
    assert not aml.matches_call(report, "+77011234567", TOP - timedelta(seconds=601))
    assert not aml.matches_call(report, "+77011234567", TOP + timedelta(hours=1))
    assert aml.matches_call(report, "+77011234567", TOP - timedelta(seconds=900), window_s=900)


def test_matches_call_other_or_missing_number() -> None:
    assert not aml.matches_call(aml.parse_https(form()), "+77017654321", TOP)
    assert not aml.matches_call(aml.parse_https(form()), "+447011234567", TOP)
    assert not aml.matches_call(aml.parse_sms(ALMATY), "+77011234567", TOP)  # SMS without its sender
    assert not aml.matches_call(aml.parse_https(form()), "", TOP)


def test_matches_call_needs_an_aware_time_and_a_sane_window() -> None:
    report = aml.parse_https(form())
    with pytest.raises(ValueError, match="timezone-aware"):
        aml.matches_call(report, "+77011234567", TOP.replace(tzinfo=None))
    with pytest.raises(ValueError, match="negative"):
        aml.matches_call(report, "+77011234567", TOP, window_s=-1)


def test_report_is_frozen() -> None:
    report = aml.parse_sms(ALMATY)
    with pytest.raises(AttributeError):
        report.lat = 0.0  # type: ignore[misc]
