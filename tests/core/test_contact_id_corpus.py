"""Real-world Contact ID messages and AlarmReceiver event files (tests/data/real/contact_id, sources in
tests/data/real/SOURCES.md): valid ones decode with the right fields and lead to the right action, invalid
ones are refused with a ContactIdError (or, in an event file, listed in ``errors`` with the rest of the
call kept), and no input, nor any damaged copy of one, raises anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.intake.alarm.panels import classify, event_data
from gateway.intake.alarm.receiver_file import EventFileError, parse_event_file
from gateway.intake.alarm.sites import Site
from gateway.protocols.contact_id import ContactIdError, parse
from gateway.settings import AlarmConfig

CORPUS = Path(__file__).resolve().parents[1] / "data" / "real" / "contact_id"
SOURCES = CORPUS.parent / "SOURCES.md"
SITE = Site(account="3182", name_kk="Тест", name_ru="Тест", address="Алматы", lat=43.25, lon=76.92, zone="almaly",
            panel_token_sha256="0" * 64, contacts=[])
CATEGORIES = AlarmConfig().incident_categories

# event file -> (qualifier, code, description, category, partition, zone or user, what the centre does)
EVENT_FILES: dict[str, tuple[str, str, str, str, str, str, str]] = {
    "alarmevent-event-armstay": ("restore", "441", "Armed STAY", "opening/closing", "01", "004", "note"),
    "alarmevent-event-disarm": ("new", "401", "Open/close by user", "opening/closing", "01", "002", "note"),
    "alarmevent-event-periodic": ("new", "601", "Manual test report", "test", "01", "002", "test"),
    "alarmevent-event-wateralarm": ("new", "150", "24-hour non-burglary alarm", "hazard", "01", "031", "alarm"),
}
# event files whose only message is refused: the file is still read, the refusal listed with its line
BAD_EVENT_FILES: dict[str, str] = {
    "alarmevent-event-alarm": "line 12: Contact ID message '3182181140010221': checksum digit is '1' but should "
                              "be '*' (digit values add up to 65",
}
NOT_EVENT_FILES: dict[str, str] = {
    "asterisk-contactid-fake-event-file": "no PROTOCOL= line, so this is not an AlarmReceiver event file",
}
# bare 16-digit strings -> the refusal (they were never valid: see SOURCES.md)
REFUSED: dict[str, str] = {
    "alarmevent-readme.txt": "checksum digit is '1' but should be 'C' (digit values add up to 61",
    "asterisk-contactid-disarm.txt": "'_' at position 16",
    "asterisk-contactid-arm.txt": "'_' at position 16",
    "asterisk-contactid-quick-arm.txt": "'_' at position 16",
    "asterisk-contactid-unknown-user.txt": "'_' at position 16",
    "asterisk-contactid-burglary.txt": "'_' at position 16",
    "asterisk-contactid-bypass.txt": "'_' at position 16",
    "asterisk-contactid-unbypass.txt": "'_' at position 16",
}


def text(name: str) -> str:
    return (CORPUS / name).read_bytes().decode("utf-8")


def test_every_file_has_an_expectation_and_a_source() -> None:
    files = {path.name for path in CORPUS.iterdir()}
    assert files == set(EVENT_FILES) | set(BAD_EVENT_FILES) | set(NOT_EVENT_FILES) | set(REFUSED)
    sources = SOURCES.read_text(encoding="utf-8")
    assert "## Contact ID" in sources
    assert [name for name in files if name not in sources] == []


@pytest.mark.parametrize("name", sorted(EVENT_FILES))
def test_event_files_decode_and_lead_to_the_right_action(name: str) -> None:
    qualifier, code, description, category, partition, zone, action = EVENT_FILES[name]
    call = parse_event_file(text(name), source=name)
    assert (call.protocol, call.calling_from, call.caller_name, call.errors) == ("ADEMCO_CONTACT_ID", "sfalarm",
                                                                                "SF House", [])
    [event] = call.events
    assert (event.account, event.message_type, event.qualifier, event.code) == ("3182", "18", qualifier, code)
    assert (event.description, event.category, event.partition, event.zone_or_user) == (description, category,
                                                                                        partition, zone)
    assert classify(event, SITE, CATEGORIES) == action
    assert event_data(event, SITE, via="asterisk")["contact_id"] == event.raw


def test_armed_stay_is_known_at_last() -> None:
    event = parse_event_file(text("alarmevent-event-armstay")).events[0]
    assert not event.description.startswith("Unknown")


@pytest.mark.parametrize("name", sorted(BAD_EVENT_FILES))
def test_a_refused_message_is_listed_and_the_file_still_read(name: str) -> None:
    call = parse_event_file(text(name), source=name)
    assert call.events == [] and call.calling_from == "sfalarm"
    [error] = call.errors
    assert error.startswith(BAD_EVENT_FILES[name])


@pytest.mark.parametrize("name", sorted(NOT_EVENT_FILES))
def test_a_file_that_is_not_an_event_file_is_refused(name: str) -> None:
    with pytest.raises(EventFileError, match=NOT_EVENT_FILES[name]):
        parse_event_file(text(name), source=name)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invalid_messages_are_refused_with_a_contact_id_error(name: str) -> None:
    with pytest.raises(ContactIdError) as caught:
        parse(text(name))
    assert REFUSED[name] in str(caught.value)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invalid_messages_refused_in_hex_notation_too(name: str) -> None:
    with pytest.raises(ContactIdError):
        parse(text(name), alphabet="hex")


@pytest.mark.parametrize("name", sorted(EVENT_FILES) + sorted(BAD_EVENT_FILES) + sorted(NOT_EVENT_FILES))
def test_damaged_event_files_raise_nothing_but_event_file_errors(name: str) -> None:
    raw = text(name)
    damaged = {raw[:cut] for cut in range(len(raw))}
    damaged |= {raw[:i] + raw[i + 1:] for i in range(len(raw))}
    damaged |= {raw[:i] + "7" + raw[i + 1:] for i in range(len(raw))}
    for copy in damaged:
        try:
            call = parse_event_file(copy, source=name)
        except EventFileError:
            continue
        for event in call.events:  # whatever decodes leads to an action, never to an exception
            assert classify(event, SITE, CATEGORIES) in ("test", "note", "restore", "alarm")


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_damaged_messages_raise_nothing_but_contact_id_errors(name: str) -> None:
    raw = text(name)
    for i in range(len(raw)):
        for digit in "0123456789*#ABC_":
            try:
                parse(raw[:i] + digit + raw[i + 1:])
            except ContactIdError:
                pass
