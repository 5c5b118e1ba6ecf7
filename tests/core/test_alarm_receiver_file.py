"""Asterisk AlarmReceiver event files: both layouts, bad lines reported with line numbers, files that are not
event files."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from gateway.errors import ProtocolError
from gateway.intake.alarm.receiver_file import (
    EventFileError,
    ReceivedCall,
    UnsupportedProtocolError,
    parse_event_file,
    read_event_file,
)
from gateway.protocols.contact_id import ContactIdEvent

# Checksums worked in tests/test_contact_id.py: 131 perimeter burglary, 602 periodic test,
# 120 panic from hex account B2E4 (dialled *2B4), and the burglary's restore.
BURGLARY = "1234181131010158"
PERIODIC_TEST = "1234181602000002"
PANIC_HEX_ACCOUNT = "*2B418112001006B"
BURGLARY_RESTORE = "1234183131010156"

# Exactly what write_metadata() and write_event() print: two blank lines, then the sections.
ASTERISK_FILE = f"""

[metadata]

PROTOCOL=ADEMCO_CONTACT_ID
CHECKSUM=yes
CALLINGFROM=87172123456
CALLERNAME=School 12 Astana
TIMESTAMP=Mon Mar 04, 2024 @ 10:15:02 +05

[events]

{BURGLARY}
{PERIODIC_TEST}
{PANIC_HEX_ACCOUNT}
"""


def test_asterisk_event_file_is_read_whole() -> None:
    call = parse_event_file(ASTERISK_FILE)
    assert (call.protocol, call.calling_from, call.caller_name, call.timestamp) == (
        "ADEMCO_CONTACT_ID",
        "87172123456",
        "School 12 Astana",
        "Mon Mar 04, 2024 @ 10:15:02 +05",
    )
    assert [e.raw for e in call.events] == [BURGLARY, PERIODIC_TEST, PANIC_HEX_ACCOUNT]
    assert [e.category for e in call.events] == ["burglary", "test", "panic"]
    assert call.events[2].account == "B2E4"
    assert call.errors == []


def test_crlf_line_endings_and_a_byte_order_mark() -> None:
    call = parse_event_file("\ufeff" + ASTERISK_FILE.replace("\n", "\r\n"))
    assert len(call.events) == 3 and call.errors == []


def test_unknown_caller_id_reads_as_empty() -> None:
    text = ASTERISK_FILE.replace("87172123456", "<unknown>").replace("School 12 Astana", "<unknown>")
    call = parse_event_file(text)
    assert (call.calling_from, call.caller_name) == ("", "")


def test_older_asterisk_without_checksum_line_and_extra_keys() -> None:
    text = ASTERISK_FILE.replace("CHECKSUM=yes\n", "").replace("[events]", "SOMETHING_NEW=1\n\n[events]")
    call = parse_event_file(text)
    assert len(call.events) == 3 and call.errors == []


def test_caller_name_may_hold_an_equals_sign() -> None:
    call = parse_event_file(ASTERISK_FILE.replace("School 12 Astana", "Gymnasium=7"))
    assert call.caller_name == "Gymnasium=7"


def test_no_group_meta_layout() -> None:
    text = f"""PROTOCOL=ADEMCO_CONTACT_ID
CHECKSUM=yes
CALLINGFROM=87172123456
CALLERNAME=School 12 Astana
TIMESTAMP=Mon Mar 04, 2024 @ 10:15:02 +05

event={BURGLARY}
event={BURGLARY_RESTORE}
"""
    call = parse_event_file(text)
    assert call.calling_from == "87172123456"
    assert [e.qualifier for e in call.events] == ["new", "restore"]
    assert call.errors == []


def test_bad_event_lines_are_reported_with_line_numbers_and_the_rest_kept() -> None:
    lines = [
        "[metadata]",  # 1
        "PROTOCOL=ADEMCO_CONTACT_ID",  # 2
        "CALLINGFROM=87172123456",  # 3
        "[events]",  # 4
        BURGLARY,  # 5
        BURGLARY[:15] + "7",  # 6: checksum
        BURGLARY[:15],  # 7: short
        "",  # 8: blank lines are skipped
        "1234171131010159",  # 9: Express-style message type 17
        "hello world, not digits",  # 10
        PANIC_HEX_ACCOUNT,  # 11
    ]
    call = parse_event_file("\n".join(lines))
    assert [e.raw for e in call.events] == [BURGLARY, PANIC_HEX_ACCOUNT]
    assert len(call.errors) == 4
    checksum, short, message_type, garbage = call.errors
    assert checksum.startswith("line 6: ") and "checksum digit is '7' but should be '8'" in checksum
    assert short.startswith("line 7: ") and "has 15 digits" in short
    assert message_type.startswith("line 9: ") and "message type '17'" in message_type
    assert garbage.startswith("line 10: ") and "must have 16" in garbage


def test_bad_event_line_in_the_flat_layout() -> None:
    call = parse_event_file(f"PROTOCOL=ADEMCO_CONTACT_ID\nevent={BURGLARY}\nevent=12341811\nstray line\n")
    assert [e.raw for e in call.events] == [BURGLARY]
    assert call.errors[0].startswith("line 3: ") and "has 8 digits" in call.errors[0]
    assert call.errors[1] == "line 4: metadata line 'stray line' is not KEY=value"


def test_odd_metadata_and_sections_are_reported_not_raised() -> None:
    text = "\n".join(
        [
            "stray before any section",  # 1
            "[metadata]",  # 2
            "PROTOCOL=ADEMCO_CONTACT_ID",  # 3
            "no equals sign here",  # 4
            "[extras]",  # 5
            "ignored=1",  # 6
            "[events]",  # 7
            BURGLARY,  # 8
        ]
    )
    call = parse_event_file(text)
    assert [e.raw for e in call.events] == [BURGLARY]
    assert call.errors == [
        "line 1: 'stray before any section' comes before any section",
        "line 4: metadata line 'no equals sign here' is not KEY=value",
        "line 5: unexpected section [extras]; its lines are ignored",
    ]


def test_call_with_an_empty_events_section() -> None:
    call = parse_event_file(ASTERISK_FILE.split("[events]")[0] + "[events]\n\n")
    assert call.events == [] and call.errors == []


def test_file_without_events_section_raises() -> None:
    cut_short = ASTERISK_FILE.split("[events]")[0]
    with pytest.raises(EventFileError, match=r"event file: no \[events\] section"):
        parse_event_file(cut_short)


@pytest.mark.parametrize("text", ["", "\n\n", "hello\nworld\n", "[events]\n" + BURGLARY + "\n"])
def test_text_without_protocol_is_not_an_event_file(text: str) -> None:
    with pytest.raises(EventFileError, match="no PROTOCOL= line"):
        parse_event_file(text)


@pytest.mark.parametrize("protocol", ["ADEMCO_EXPRESS_4_2", "ADEMCO_HIGH_SPEED", "SIA"])
def test_unsupported_protocol_raises(protocol: str) -> None:
    with pytest.raises(UnsupportedProtocolError, match=f"PROTOCOL={protocol}: only ADEMCO_CONTACT_ID") as caught:
        parse_event_file(ASTERISK_FILE.replace("ADEMCO_CONTACT_ID", protocol))
    assert caught.value.protocol == protocol


def test_unknown_format_says_the_call_delivered_nothing() -> None:
    text = ASTERISK_FILE.split("[events]")[0].replace("ADEMCO_CONTACT_ID", "UNKNOWN_FORMAT") + "[events]\n"
    with pytest.raises(UnsupportedProtocolError, match="did not recognise the panel's format"):
        parse_event_file(text)


def test_file_errors_are_protocol_errors() -> None:
    assert issubclass(UnsupportedProtocolError, EventFileError) and issubclass(EventFileError, ProtocolError)


def test_read_event_file_names_the_file_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "event-a1B2c3"
    good.write_text(ASTERISK_FILE, encoding="utf-8")
    assert len(read_event_file(good).events) == 3
    bad = tmp_path / "event-Zz9Yy8"
    bad.write_text("[metadata]\nPROTOCOL=ADEMCO_CONTACT_ID\n", encoding="utf-8")
    with pytest.raises(EventFileError, match=re.escape(f"{bad}: no [events] section")):
        read_event_file(str(bad))
    with pytest.raises(FileNotFoundError):
        read_event_file(tmp_path / "missing")


def test_read_event_file_survives_a_caller_name_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "event-cp1251"
    text = ASTERISK_FILE.replace("School 12 Astana", "@@NAME@@")
    path.write_bytes(text.encode().replace(b"@@NAME@@", "Школа 12".encode("cp1251")))
    call = read_event_file(path)
    assert "\ufffd" in call.caller_name and len(call.events) == 3


def test_received_call_round_trips_through_json() -> None:
    call = parse_event_file(ASTERISK_FILE)
    again = msgspec.json.decode(msgspec.json.encode(call), type=ReceivedCall)
    assert again == call and isinstance(again.events[0], ContactIdEvent)
