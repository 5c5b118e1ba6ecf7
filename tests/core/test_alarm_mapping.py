"""What a Contact ID event becomes (pure), the panel API body, and the spool file helpers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import pytest

from gateway.intake.alarm.panels import (
    BadBody,
    classify,
    event_data,
    file_away,
    panel_event,
    pending_files,
    site_location,
)
from gateway.intake.alarm.sites import Contact, Site
from gateway.protocols.contact_id import checksum_digit, encode, parse
from gateway.settings import AlarmConfig

SITE = Site(account="1201", name_kk="№ 12 мектеп-гимназия", name_ru="Школа-гимназия № 12",
            address="Алматы, ул. Толе би, 111", lat=43.25234, lon=76.91871, zone="almaly",
            panel_token_sha256="0" * 64, contacts=[Contact(name="Айгуль", role="director", phone="+77017120001")])
CATEGORIES = AlarmConfig().incident_categories


def event(code: str, qualifier: str = "new", account: str = "1201", zone: int = 3):  # type: ignore[no-untyped-def]
    return parse(encode(account, code, qualifier, 1, zone))  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "qualifier", "action"), [
    ("120", "new", "alarm"),  # panic button
    ("122", "status", "alarm"),  # silent panic still present
    ("121", "new", "alarm"),  # duress
    ("110", "new", "alarm"),  # fire
    ("137", "new", "alarm"),  # tamper
    ("120", "restore", "restore"),
    ("602", "new", "test"),  # periodic test
    ("601", "new", "test"),
    ("401", "new", "note"),  # disarmed by a user: no police for the janitor
    ("401", "restore", "note"),  # armed
    ("301", "new", "note"),  # AC power loss
    ("570", "new", "note"),  # bypass
    ("606", "new", "note"),  # listen-in to follow: not an alarm by itself
])
def test_classify(code: str, qualifier: str, action: str) -> None:
    assert classify(event(code, qualifier), SITE, CATEGORIES) == action


@pytest.mark.parametrize(("code", "qualifier", "action"), [
    ("441", "restore", "note"),  # armed STAY: was "unknown" before the table was completed
    ("441", "new", "note"),  # disarmed from STAY
    ("147", "new", "alarm"),  # sensor supervision failure: DC-05 counts it among the alarms
    ("163", "new", "alarm"),  # tank level: 24-hour non-burglary
    ("341", "new", "alarm"),  # expansion module tamper
    ("611", "new", "test"),  # point tested OK
    ("423", "new", "note"),  # forced access: access control, not an alarm code
])
def test_classify_codes_of_the_full_table(code: str, qualifier: str, action: str) -> None:
    assert classify(event(code, qualifier), SITE, CATEGORIES) == action


@pytest.mark.parametrize("code", ["170", "188", "199", "1B0", "1F9"])
def test_an_unknown_alarm_code_still_opens_an_incident(code: str) -> None:
    new = parse(encode("1201", code, "new", 1, 3, alphabet="hex"), alphabet="hex")
    assert classify(new, SITE, CATEGORIES) == "alarm"
    assert classify(msgspec.structs.replace(new, qualifier="status"), SITE, CATEGORIES) == "alarm"
    assert classify(parse(encode("1201", code, "restore", 1, 3)), SITE, CATEGORIES) == "restore"
    assert classify(new, SITE, []) == "alarm"  # whatever the configured categories
    data = event_data(new, SITE, via="asterisk")
    assert data["event_code"] == code and data["event_description"].startswith(f"Unknown event {code}")
    assert data["contact_id"] == new.raw


@pytest.mark.parametrize("code", ["2B0", "4B2", "5F1", "6E0", "700", "998"])
def test_an_unknown_code_of_another_group_is_noted_with_its_code(code: str) -> None:
    unknown = parse(encode("1201", code, "new", 1, 3, alphabet="hex"), alphabet="hex")
    assert classify(unknown, SITE, CATEGORIES) == "note"
    assert unknown.description.startswith(f"Unknown event {code}")


def test_unknown_account_beats_everything() -> None:
    assert classify(event("120", account="9999"), None, CATEGORIES) == "unknown"
    assert classify(event("602", account="9999"), None, CATEGORIES) == "unknown"


def test_event_data_and_location() -> None:
    data = event_data(event("120"), SITE, via="asterisk", calling_from="87272920012", file="event-abc")
    assert data["account"] == "1201" and data["site_ru"] == "Школа-гимназия № 12" and data["zone"] == "almaly"
    assert (data["event_code"], data["event_description"], data["qualifier"]) == ("120", "Panic alarm", "new")
    assert (data["partition"], data["zone_or_user"], data["via"]) == ("01", "003", "asterisk")
    assert data["contact_id"] == encode("1201", "120", "new", 1, 3)
    assert all(isinstance(v, str) for v in data.values())
    loc = site_location(SITE)
    assert (loc.lat, loc.lon, loc.address, loc.source) == (SITE.lat, SITE.lon, SITE.address, "directory")


# --- POST /alarms bodies ---------------------------------------------------------------------------


def test_fields_body() -> None:
    got = panel_event(b'{"account": "1201", "event_code": 120, "qualifier": 1, "partition": 1, "zone_or_user": 15}')
    assert (got.account, got.code, got.qualifier, got.partition, got.zone_or_user) == ("1201", "120", "new", "01",
                                                                                       "015")
    restore = panel_event(b'{"account": "4B09", "event_code": "120", "qualifier": 3}')
    assert (restore.account, restore.qualifier, restore.zone_or_user) == ("4B09", "restore", "000")


def test_raw_bodies() -> None:
    message = encode("1201", "120", "new", 1, 15, alphabet="hex")
    assert panel_event(message.encode()).raw == message
    assert panel_event(f"{message[:4]} {message[4:]}\n".encode()).code == "120"  # spaces as manuals print it
    assert panel_event(msgspec.json.encode(message)).raw == message
    dtmf = encode("4B09", "120", "new", 1, 1)
    assert panel_event(msgspec.json.encode({"raw": dtmf, "alphabet": "dtmf"})).account == "4B09"


@pytest.mark.parametrize(("body", "says"), [
    (b"", "empty body"),
    (b"   ", "empty body"),
    (b"{not json", "not valid JSON"),
    (b'{"account": "1201", "event_code": 120, "zone": 3}', "unknown field `zone`"),
    (b'{"account": 1201, "event_code": 120}', "Expected `str | null`, got `int`"),
    (b'{"account": "1201"}', "at least account and event_code"),
    (b'{"event_code": "120"}', "at least account and event_code"),
    (b'{"account": "1201", "event_code": 120, "qualifier": 2}', "qualifier 2 must be 1 (new), 3 (restore) or 6"),
    (b'{"account": "12345", "event_code": 120}', "account '12345' must be exactly 4 digits"),
    (b'{"account": "1201", "event_code": 1200}', "code 1200 does not fit in 3 decimal digits"),
    (b'{"account": "12A1", "event_code": 120}', "account '12A1' must be exactly 4 digits"),
    (b"1201181120010017", "checksum digit is '7' but should be"),  # one digit off
    (b"12011811200100", "has 14 digits"),
    (b'{"raw": "1201181120010017"}', "checksum digit"),
    (b'{"raw": "120128112001001' + checksum_digit("120128112001001", alphabet="hex").encode() + b'"}',
     "message type '28' is not 18 or 98"),
    (b'"1201181120010017"', "checksum"),
    (b'"1201181120010016', "not a valid JSON string"),
    (b"[1, 2]", "has"),
])
def test_malformed_bodies_are_refused_clearly(body: bytes, says: str) -> None:
    with pytest.raises(BadBody) as caught:
        panel_event(body)
    assert says in str(caught.value)


# --- spool helpers -------------------------------------------------------------------------------


def test_pending_files_wait_until_settled_and_skip_the_rest(tmp_path: Path) -> None:
    old, fresh = tmp_path / "event-old", tmp_path / "event-new"
    old.write_text("x")
    fresh.write_text("x")
    os.utime(old, (time.time() - 10, time.time() - 10))
    (tmp_path / "other.txt").write_text("x")
    (tmp_path / "event-dir").mkdir()
    assert pending_files(tmp_path, time.time() - 1) == [old]
    assert pending_files(tmp_path, time.time() + 1) == [old, fresh]  # oldest first


def test_file_away_never_overwrites_and_notes_why(tmp_path: Path) -> None:
    for kind in ("done", "bad"):
        (tmp_path / kind).mkdir()
    first = tmp_path / "event-AAAAAA"
    first.write_text("one")
    moved_first = file_away(first, "done")
    first.write_text("two")  # Asterisk may reuse the name once the spool no longer holds it
    moved_second = file_away(first, "bad", "line 9: checksum")
    assert moved_first != moved_second and moved_first.read_text() == "one" and moved_second.read_text() == "two"
    assert moved_second.parent.name == "bad" and not first.exists()
    assert Path(str(moved_second) + ".why").read_text() == "line 9: checksum\n"
