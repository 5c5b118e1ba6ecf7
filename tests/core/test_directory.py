"""Subscriber directory CSV import: good rows kept, bad rows reported by line and skipped."""

from __future__ import annotations

import pytest

from gateway.errors import DirectoryImportError
from gateway.incident.subscribers import DEFAULT_RADIUS_M, parse_csv
from gateway.settings import AniConfig

HEADER = "number,address,lat,lon,radius_m\n"


def one_bad(row: str) -> str:
    """Import a good row, the bad one, and another good row; return the single problem reported."""
    text = HEADER + "87272123456,Абая 10,43.2381,76.9456,\n" + row + "\n" + "+77012345678,Достык 5,43.23,76.95,20\n"
    entries, problems = parse_csv(text)
    assert [number for number, _ in entries] == ["+77272123456", "+77012345678"]
    assert len(problems) == 1, problems
    assert problems[0].startswith("line 3: ")
    return problems[0]


def test_good_rows_become_directory_locations() -> None:
    text = (HEADER
            + '87272123456,"Алматы, Абая 10, кв. 5",43.2381,76.9456,\n'
            + "+7 701 234 56 78,  Достык   5  ,43.23,76.95,20\n")
    entries, problems = parse_csv(text)
    assert problems == []
    (n1, l1), (n2, l2) = entries
    assert n1 == "+77272123456"
    assert (l1.source, l1.shape, l1.lat, l1.lon) == ("directory", "circle", 43.2381, 76.9456)
    assert l1.radius_m == DEFAULT_RADIUS_M
    assert l1.address == "Алматы, Абая 10, кв. 5"
    assert n2 == "+77012345678"
    assert l2.address == "Достык 5"  # whitespace collapsed
    assert l2.radius_m == 20.0


def test_radius_column_is_optional() -> None:
    entries, problems = parse_csv("number,address,lat,lon\n87272123456,Абая 10,43.2,76.9\n")
    assert problems == []
    assert entries[0][1].radius_m == DEFAULT_RADIUS_M


def test_header_names_are_trimmed_and_columns_may_be_reordered() -> None:
    entries, problems = parse_csv(" lat , lon ,number, address \n43.2,76.9,87272123456,Абая 10\n")
    assert problems == []
    assert entries[0][0] == "+77272123456"
    assert (entries[0][1].lat, entries[0][1].lon) == (43.2, 76.9)


def test_foreign_numbers_are_kept() -> None:
    entries, problems = parse_csv(HEADER + "+4930123456,Berlin,52.5,13.4,\n")
    assert problems == []
    assert entries[0][0] == "+4930123456"


def test_ani_config_is_used() -> None:
    cfg = AniConfig(country_code="49", trunk_prefix="0", national_length=10)
    entries, _ = parse_csv(HEADER + "03012345678,Berlin,52.5,13.4,\n", cfg)
    assert entries[0][0] == "+493012345678"


@pytest.mark.parametrize("row, message", [
    ("abc,Абая 1,43.2,76.9,", "number 'abc' is not a usable phone number (number_not_numeric)"),
    ("102,Абая 1,43.2,76.9,", "short_number"),
    (",Абая 1,43.2,76.9,", "not a usable phone number"),
    ("anonymous,Абая 1,43.2,76.9,", "not a usable phone number"),
    ("87272000000,,43.2,76.9,", "address must be 1-300 printable characters"),
    ("87272000000,   ,43.2,76.9,", "address must be 1-300 printable characters"),
    ("87272000000,Абая\x1b[2J 1,43.2,76.9,", "address must be 1-300 printable characters"),
    ("87272000000,Абая\x00,43.2,76.9,", "address must be 1-300 printable characters"),
    ("87272000000,Абая\u202e1,43.2,76.9,", "address must be 1-300 printable characters"),
    ("87272000000," + "x" * 301 + ",43.2,76.9,", "address must be 1-300 printable characters"),
    ("87272000000,Абая 1,91,76.9,", "coordinates out of range"),
    ("87272000000,Абая 1,-90.5,76.9,", "coordinates out of range"),
    ("87272000000,Абая 1,43.2,181,", "coordinates out of range"),
    ("87272000000,Абая 1,nan,76.9,", "coordinates out of range"),
    ("87272000000,Абая 1,43.2,inf,", "coordinates out of range"),
    ("87272000000,Абая 1,north,76.9,", "could not convert"),
    ("87272000000,Абая 1,43°14',76.9,", "could not convert"),
    ("87272000000,Абая 1,43.2,,", "could not convert"),
    ("87272000000,Абая 1,43.2", "could not convert"),  # too few fields
    ("87272000000,Абая 1,43.2,76.9,50,extra", "too many fields"),
    ("87272000000,Абая 1,43.2,76.9,0", "radius_m 0.0 out of range"),
    ("87272000000,Абая 1,43.2,76.9,-5", "radius_m -5.0 out of range"),
    ("87272000000,Абая 1,43.2,76.9,100001", "out of range"),
    ("87272000000,Абая 1,43.2,76.9,nan", "out of range"),
    ("87272000000,Абая 1,43.2,76.9,wide", "could not convert"),
])
def test_bad_row_is_reported_with_line_number_and_skipped(row: str, message: str) -> None:
    assert message in one_bad(row)


def test_address_of_exactly_300_characters_is_accepted() -> None:
    entries, problems = parse_csv(HEADER + "87272123456," + "x" * 300 + ",43.2,76.9,\n")
    assert problems == []
    assert len(entries[0][1].address) == 300


def test_line_numbers_count_physical_lines_of_multiline_fields() -> None:
    text = HEADER + '87272123456,"Абая 10\nподъезд 2",43.2,76.9,\nbad,x,1,2,\n'
    entries, problems = parse_csv(text)
    assert entries[0][1].address == "Абая 10 подъезд 2"  # the embedded newline became a space
    assert problems == ["line 4: number 'bad' is not a usable phone number (number_not_numeric)"]


def test_every_bad_line_is_reported() -> None:
    rows = ["bad,x,1,2,", "87272123456,ok,1,2,", "87272123457,,1,2,", "87272123458,ok,100,2,"]
    entries, problems = parse_csv(HEADER + "\n".join(rows) + "\n")
    assert len(entries) == 1
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 4", "line 5"]


def test_unreadable_csv_is_reported_and_rows_before_it_are_kept() -> None:
    text = HEADER + "87272123456,ok,1,2,\n" + "87272123457," + "x" * 200_000 + ",1,2,\n"
    entries, problems = parse_csv(text)
    assert [n for n, _ in entries] == ["+77272123456"]
    assert len(problems) == 1
    assert "unreadable CSV" in problems[0]


@pytest.mark.parametrize("text, missing", [
    ("number,addr,lat,lon\n", "address"),
    ("phone,address,lat,lon\n+77012345678,x,1,2\n", "number"),
    ("number;address;lat;lon\n", "number, address, lat, lon"),  # wrong delimiter: one big column
    ("", "number, address, lat, lon"),
    ("+77012345678,Абая 10,43.2,76.9\n", "number, address, lat, lon"),  # no header at all
])
def test_missing_header_column_raises(text: str, missing: str) -> None:
    with pytest.raises(DirectoryImportError, match=f"lacks column\\(s\\): {missing};"):
        parse_csv(text)


def test_header_only_gives_nothing() -> None:
    assert parse_csv(HEADER) == ([], [])
