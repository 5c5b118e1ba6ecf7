"""Real-world AML texts and HTTPS bodies (tests/data/real/aml, sources in tests/data/real/SOURCES.md):
the valid ones parse with the right fields, the invalid ones are refused with a ProtocolError that names
the field, and no input, nor any cut or damaged copy of one, raises anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import ProtocolError
from gateway.protocols import aml

CORPUS = Path(__file__).resolve().parents[1] / "data" / "real" / "aml"
SOURCES = CORPUS.parent / "SOURCES.md"

# file -> the fields that must come out: (version, lat, lon, radius_m, confidence_pct, method, positioned_at,
# imei, mcc, mnc, flags)
PARSED: dict[str, tuple[object, ...]] = {
    "google-els-v1-no-location.txt": ("1", None, None, None, None, "none", datetime(2022, 1, 31, 17, 37, 34),
                                      "123456789012345", "234", "15", ()),
    # Google's example says ml=126 but is 127 characters long: flagged, never fatal
    "google-els-v1-location-computed.txt": ("1", 51.53321, -0.12601, 14.0, 68.0, "wifi",
                                            datetime(2022, 1, 31, 17, 17, 48), "123456789012345", "234", "15",
                                            ("length_mismatch",)),
    "aml-lib-readme-v1.txt": ("1", 48.82639, -2.36619, 52.0, 68.0, "gnss", datetime(2019, 11, 12, 11, 29, 28),
                              "353472104343540", "208", "20", ()),
    "aml-lib-verify-v1.txt": ("1", 48.82639, -2.36619, 52.0, 68.0, "gnss", datetime(2019, 11, 12, 11, 29, 28),
                              "353472104343540", "208", "20", ("length_mismatch",)),
    # version 2: et 1593187189 plus lt -9999 s; en holds a phone number, not an emergency number: dropped, flagged
    "aml-lib-verify-v2.txt": ("2", -37.42175, -122.08461, 2000.1, 68.0, "gnss", datetime(2020, 6, 26, 13, 13, 10),
                              "358239059042542", "310", "260", ("bad_emergency_number",)),
    "aml-lib-verify-data-sms-v1.hex": ("1", 37.42175, -122.08461, 20.0, 68.0, "gnss",
                                       datetime(2015, 6, 13, 1, 9, 48), "358239059042542", "310", "260", ()),
    # location_certainty=83 is a percentage where the field is meant to be a fraction: accepted, flagged
    "aml-lib-verify-https-v1.form": ("1", 55.85732, -4.26325, 10.4, 83.0, "gnss",
                                     datetime(2016, 10, 11, 12, 37, 24, 435000), "354773072099116", "234", "15",
                                     ("confidence_as_percent",)),
    "aml-lib-verify-https-hmac.form": ("1", 0.85732, -4.26325, 10.4, 83.0, "gnss", datetime(2020, 11, 9, 8, 55, 21),
                                       "", "", "", ("confidence_as_percent",)),
    "gridgears-valid.txt": ("1", 54.76397, -0.18305, 50.0, 90.0, "wifi", datetime(2013, 7, 17, 14, 19, 35),
                            "1234567890123456", "234", "30", ()),
    # GridGears refuses the next four; here a wrong ml is flagged, an unknown key ignored, an unknown method
    # letter kept as "unknown" and a fractional confidence kept: none of them moves the dot
    "gridgears-invalid-message-length.txt": ("1", 54.76397, -0.18305, 50.0, 90.0, "wifi",
                                             datetime(2013, 7, 17, 14, 19, 35), "1234567890123456", "234", "30",
                                             ("length_mismatch",)),
    "gridgears-unknown-attribute.txt": ("1", 54.76397, -0.18305, 50.0, 90.0, "wifi", datetime(2013, 7, 17, 14, 19, 35),
                                        "1234567890123456", "234", "30", ()),
    "gridgears-unknown-positioning-method.txt": ("1", 54.76397, -0.18305, 50.0, 90.0, "unknown",
                                                 datetime(2013, 7, 17, 14, 19, 35), "1234567890123456", "234", "30",
                                                 ()),
    "gridgears-invalid-level-of-confidence.txt": ("1", 54.76397, -0.18305, 50.0, 99.9, "wifi",
                                                  datetime(2013, 7, 17, 14, 19, 35), "1234567890123456", "234",
                                                  "30", ()),
    "gridgears-no-imsi.txt": ("1", 54.76397, -0.18305, 50.0, 90.0, "wifi", datetime(2013, 7, 17, 14, 19, 35),
                              "1234567890123456", "234", "30", ()),
}

REFUSED: dict[str, str] = {
    "gridgears-incorrect-date-format.txt": "top: expected YYYYMMDDhhmmss, got '20130717'",
    "gridgears-invalid-latitude.txt": "lt: expected a decimal number, got '+g4.7d397'",
    "gridgears-no-header.txt": "not an AML message: text starts 'lt=+54.76397'",
    "gridgears-no-latitude.txt": "AML SMS lacks mandatory field(s): lt",
    "gridgears-no-positioning-method.txt": "AML SMS lacks mandatory field(s): pm",
    "gridgears-no-time-of-positioning.txt": "AML SMS lacks mandatory field(s): top",
    "gridgears-invalid-attribute-pair.txt": "AML SMS field 'a==' is not key=value",
    "gridgears-invalid-attribute.txt": "AML SMS field '' is not key=value (an empty field between two ';')",
}


def unpack_septets(data: bytes) -> str:
    """GSM 03.38 7-bit unpacking, as a data SMS from an older Android handset carries its text."""
    out, carry, bits = [], 0, 0
    for byte in data:
        out.append(((byte << bits) | carry) & 0x7F)
        carry, bits = byte >> (7 - bits), bits + 1
        if bits == 7:
            out.append(carry)
            carry, bits = 0, 0
    return bytes(out).decode("ascii")


def parse_file(name: str) -> aml.AmlReport:
    path = CORPUS / name
    if path.suffix == ".form":
        return aml.parse_https_body(path.read_bytes())
    text = path.read_bytes().decode("utf-8")
    if path.suffix == ".hex":
        text = unpack_septets(bytes.fromhex(text))
    return aml.parse_sms(text)


def test_every_file_has_an_expectation_and_a_source() -> None:
    files = {path.name for path in CORPUS.iterdir()}
    assert files == set(PARSED) | set(REFUSED)
    sources = SOURCES.read_text(encoding="utf-8")
    assert "## AML" in sources
    assert [name for name in files if name not in sources] == []


@pytest.mark.parametrize("name", sorted(PARSED))
def test_valid_inputs_parse_with_the_right_fields(name: str) -> None:
    version, lat, lon, radius, confidence, method, when, imei, mcc, mnc, flags = PARSED[name]
    r = parse_file(name)
    assert (r.version, r.lat, r.lon, r.radius_m, r.confidence_pct, r.method) == (version, lat, lon, radius,
                                                                                   confidence, method)
    assert r.positioned_at == when.replace(tzinfo=UTC)  # type: ignore[attr-defined]
    assert (r.imei, r.mcc, r.mnc, r.flags) == (imei, mcc, mnc, flags)
    assert r.has_position == (lat is not None)


def test_the_version_2_example_keeps_its_extra_fields() -> None:
    r = parse_file("aml-lib-verify-v2.txt")
    assert (r.altitude_m, r.language, r.emergency_number, r.imsi) == (-100.1, "en-US", "", "")
    assert r.positioned_at == datetime.fromtimestamp(1593187189 - 9999, UTC)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invalid_inputs_are_refused_naming_the_field(name: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_file(name)
    assert REFUSED[name] in str(caught.value)


@pytest.mark.parametrize("name", sorted(PARSED) + sorted(REFUSED))
def test_cut_or_damaged_copies_raise_nothing_but_protocol_errors(name: str) -> None:
    raw = (CORPUS / name).read_bytes().decode("utf-8")
    if name.endswith(".hex"):
        raw = unpack_septets(bytes.fromhex(raw))
    damaged = {raw[:cut] for cut in range(len(raw))}
    damaged |= {raw[:i] + raw[i + 1:] for i in range(len(raw))}  # each character dropped in turn
    damaged |= {raw[:i] + "9" + raw[i + 1:] for i in range(len(raw))}
    parse = aml.parse_https_body if name.endswith(".form") else aml.parse_sms
    for text in damaged:
        try:
            parse(text)
        except ProtocolError:
            pass
