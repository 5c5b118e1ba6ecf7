"""Replay keys (``gateway.protocols.replay``): the same report sent again has the same key; a new
report, even with the same words, has another; a report that cannot be told apart has none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from gateway.protocols import aml, replay
from gateway.protocols.contact_id import encode, parse

SID = "SM" + "0123456789abcdef" * 2


def test_twilio_inbound_message_is_its_message_sid() -> None:
    form = {"MessageSid": SID, "SmsSid": SID, "Body": "help", "From": "+77011234567"}
    assert replay.twilio_message(form) == f"twilio:{SID}"
    assert replay.twilio_message({**form, "Body": "changed"}) == replay.twilio_message(form)  # the sid decides
    assert replay.twilio_message({"SmsSid": SID}) == f"twilio:{SID}"  # the old field name
    assert replay.twilio_message({"Body": "help"}) == ""


def test_twilio_status_callback_is_sid_and_status() -> None:
    assert replay.twilio_status(SID, "sent") != replay.twilio_status(SID, "delivered")
    assert replay.twilio_status(SID, "delivered") == replay.twilio_status(SID, "delivered")
    assert replay.twilio_status("", "sent") == replay.twilio_status(SID, "") == ""


def test_smpp_message_is_the_smscs_id_when_it_gives_one() -> None:
    assert replay.smpp_message("4F2A") == "smpp:4F2A"
    assert replay.smpp_message("") == ""


def test_telegram_update_is_update_id_per_bot() -> None:
    update = {"update_id": 500000001, "message": {"text": "help"}}
    assert replay.telegram_update("102102:SECRET", update) == "telegram:102102:500000001"
    assert replay.telegram_update("102102:OTHER-SECRET", update) == replay.telegram_update("102102:SECRET", update)
    assert replay.telegram_update("777:SECRET", update) != replay.telegram_update("102102:SECRET", update)
    for bad in ({"message": {}}, {"update_id": "1"}, {"update_id": True}, ["update_id", 1], None):
        assert replay.telegram_update("102102:SECRET", bad) == ""


def test_contact_id_is_the_event_at_its_time_in_either_notation() -> None:
    stamp = "Sat Nov 21, 2026 @ 10:15:02 +05"
    dtmf = parse(encode("1201", "120", "new", 1, 1))
    hexed = parse(encode("1201", "120", "new", 1, 1, alphabet="hex"), alphabet="hex")
    assert replay.contact_id(dtmf, stamp) == replay.contact_id(hexed, stamp)
    assert replay.contact_id(dtmf, stamp) == "contact-id:1201:new:120:01:001:" + stamp
    others = [parse(encode("1201", "120", "restore", 1, 1)), parse(encode("1201", "120", "new", 1, 2)),
              parse(encode("1201", "130", "new", 1, 1)), parse(encode("1202", "120", "new", 1, 1))]
    assert len({replay.contact_id(e, stamp) for e in [dtmf, *others]}) == 5
    assert replay.contact_id(dtmf, "Sat Nov 21, 2026 @ 10:15:03 +05") != replay.contact_id(dtmf, stamp)
    assert replay.contact_id(dtmf, "") == replay.contact_id(dtmf, "  ") == ""  # no time: no key


def test_panel_time_is_one_instant_however_it_was_written() -> None:
    almaty = datetime(2026, 11, 21, 10, 15, 2, tzinfo=timezone(timedelta(hours=5)))
    assert replay.panel_time(almaty) == replay.panel_time(almaty.astimezone(UTC)) == "2026-11-21T05:15:02+00:00"


def test_aml_is_the_handset_and_its_fix() -> None:
    when = datetime(2026, 11, 21, 5, 15, 2, tzinfo=UTC)
    top = when.strftime("%Y%m%d%H%M%S")
    text = f'A"ML=1;lt=+43.23810;lg=+76.94560;rd=15;top={top};lc=68;pm=G;si=401021234567890;ei=356938035643809;ml='
    report = aml.parse_sms(text + f"{len(text) + 3:03d}", sender="+77011234567")
    key = replay.aml(report, "+77011234567")
    assert key == replay.aml(aml.parse_sms(text + f"{len(text) + 3:03d}", sender="+77011234567"), "+77011234567")
    assert key.startswith("aml:sms:+77011234567:2026-11-21T05:15:02+00:00:")
    assert replay.aml(report, "+77019999999") != key
