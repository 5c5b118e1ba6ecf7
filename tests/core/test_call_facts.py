"""The caller's facts as the dialplan hands them over (``protocols.call_facts``): what Asterisk's URIENCODE
and LEN make of each variable, cut at its length, read back exactly; anything cut, garbled or absent is
listed to be read in full by REST, and nothing raises."""

from __future__ import annotations

from urllib.parse import quote

from gateway.protocols import call_facts
from gateway.protocols.call_facts import FIELDS

MARK = "-_.!~*'()"  # what URIENCODE leaves as it is, besides letters and digits


def asterisk_line(values: dict[str, str]) -> str:
    """``ECGW_FACTS`` as Asterisk makes it from ``dialplan_value()``: ${URIENCODE(${VAR:0:cap})} (RFC 3986
    unreserved and mark characters kept, ast_uri_http) and ${LEN(${VAR})} in bytes."""
    parts = []
    for key, (var, cap) in FIELDS.items():
        data = values.get(var, "").encode()
        parts.append(f"{key}={quote(data[:cap], safe=MARK)}")
        parts.append(f"{key}_len={len(data)}")
    return "&".join(parts)


def test_every_value_comes_back_exactly_whatever_it_holds() -> None:
    values = {"ECGW_SERVICE": "1402", "ECGW_PRES": "allowed_not_screened", "ECGW_CALL_ID": 'a"b,c(d)\\e+f%20@host',
              "ECGW_GEOLOC_HDR": "<cid:loc@op.kz>, <https://lis.op.kz/a?b=1&c=2>",
              "ECGW_LOCATION_FORMAT": "GML", "ECGW_LOCATION": "shape=Circle,crs=2d,pos=43.2 76.9,radius=25",
              "ECGW_LOCATION_CONFIDENCE": "pdf=normal,value=67", "ECGW_LOCATION_METHOD": "A-GPS"}
    facts = call_facts.parse(asterisk_line(values))
    assert facts.values == values and facts.missing == []


def test_unicode_and_empty_values() -> None:
    values = {"ECGW_LOCATION_FORMAT": "civicAddress", "ECGW_LOCATION": 'country=KZ,A1="Алматы",RD="Абая, 150"'}
    facts = call_facts.parse(asterisk_line(values))
    assert facts.var("ECGW_LOCATION") == values["ECGW_LOCATION"] and facts.var("ECGW_PRES") == ""
    assert facts.missing == []


def test_a_value_longer_than_its_cut_is_to_be_read_in_full() -> None:
    polygon = "shape=Polygon,crs=2d,pos_list=" + " ".join("43.123456 76.123456" for _ in range(100))
    facts = call_facts.parse(asterisk_line({"ECGW_LOCATION": polygon, "ECGW_LOCATION_FORMAT": "GML"}))
    assert facts.missing == ["ECGW_LOCATION"]
    facts.fill("ECGW_LOCATION", polygon)
    assert facts.missing == [] and facts.var("ECGW_LOCATION") == polygon


def test_a_cut_multibyte_character_is_read_in_full_too() -> None:
    civic = "country=KZ,A1=" + "Ә" * 700  # 2 bytes each: the cut at 1,200 bytes may split none, but is short
    facts = call_facts.parse(asterisk_line({"ECGW_LOCATION": civic}))
    assert facts.missing == ["ECGW_LOCATION"]


def test_a_long_call_id_keeps_its_first_128_characters_and_is_never_read_again() -> None:
    facts = call_facts.parse(asterisk_line({"ECGW_CALL_ID": "x" * 300}))
    assert facts.var("ECGW_CALL_ID") == "x" * 128 and facts.missing == []


def test_no_line_means_every_variable_is_read() -> None:
    every = [var for var, _ in FIELDS.values()]
    assert call_facts.parse(None).missing == every
    assert call_facts.parse("").missing == every


def test_garbled_lines_never_raise_and_say_what_to_read() -> None:
    good = asterisk_line({"ECGW_PRES": "allowed", "ECGW_LOCATION": "shape=Point,crs=2d,pos=43 76"})
    cut_short = good[:good.index("&loc_len")]  # Asterisk's 8 KiB buffer ended the line here
    facts = call_facts.parse(cut_short)
    assert facts.var("ECGW_PRES") == "allowed"
    assert facts.missing == ["ECGW_LOCATION", "ECGW_LOCATION_CONFIDENCE", "ECGW_LOCATION_METHOD"]
    for hostile in ("&&&", "=", "loc=%zz&loc_len=3", "loc=abc&loc_len=-1", "loc=abc&loc_len=x", "svc", "\x00=\x00",
                    "loc=a&loc_len=\u00b9", "loc=é&loc_len=2"):
        assert "ECGW_LOCATION" in call_facts.parse(hostile).missing, hostile
    assert call_facts.parse("svc=112&svc_len=3&svc=999&svc_len=3").var("ECGW_SERVICE") == "112"  # the first wins


def test_the_dialplan_line_names_every_field_within_asterisks_buffers() -> None:
    line = call_facts.dialplan_value()
    for key, (var, cap) in FIELDS.items():
        assert f"{key}=${{URIENCODE(${{{var}:0:{cap}}})}}" in line and f"{key}_len=${{LEN(${{{var}}})}}" in line
        assert 3 * cap < 4096  # a function's result buffer
    longest = sum(3 * cap + len(key) * 2 + 12 for key, (_, cap) in FIELDS.items())
    assert longest + len("caller,1402,") < 8192  # an application's data buffer
