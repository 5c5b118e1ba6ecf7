"""SMS to 112, pure: texts and senders as kept, the acknowledgement, the pending-AML buffer."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from gateway.incident.records import Caller, Incident
from gateway.intake.text.sms112 import reply_number
from gateway.protocols import aml, sms_text
from gateway.protocols.smpp_text import text_units
from gateway.settings import Sms112Config
from sim.sms_citizen import aml_sms

REPORT = aml.parse_sms(aml_sms(43.2381, 76.9456, when=datetime(2026, 11, 21, 9, 30, tzinfo=UTC)),
                       sender="+77011234567")


def test_text_is_kept_with_newlines_and_without_controls() -> None:
    clean = sms_text.clean_text("  Help\r\nflat 5\x00\x1b[31m\u202e ok \x07", 2000)
    assert clean.text == "Help\nflat 5[31m ok" and clean.flags == ("control_chars",) and clean.length == 26


def test_empty_text_is_still_a_report_flagged() -> None:
    assert sms_text.clean_text(" \r\n\x00", 10) == sms_text.CleanText(text="", length=4,
                                                                        flags=("control_chars", "empty"))
    assert sms_text.clean_text("", 10).flags == ("empty",)


def test_oversized_text_is_cut_and_says_how_long_it_was() -> None:
    clean = sms_text.clean_text("ә" * 5000, 2000)
    assert clean.text == "ә" * 2000 and clean.length == 5000 and clean.flags == ("truncated",)


@pytest.mark.parametrize(("raw", "number", "can_reply", "flag"), [
    ("+77011234567", "+77011234567", True, None),
    ("87011234567", "+77011234567", True, None),
    ("77011234567", "+77011234567", True, None),  # SMPP source_addr without the plus
    ("+447700900123", "+447700900123", True, "foreign_number"),
    ("Beeline", "", False, "number_not_numeric"),
    ("1414", "", False, "short_number"),
    ("", "", False, "withheld"),
    ("+7701\x001234567", "+77011234567", True, "sender_control_chars"),
    ("7" * 60, "", False, "sender_too_long"),
])
def test_sender_formats(raw: str, number: str, can_reply: bool, flag: str | None) -> None:
    who = sms_text.sender(raw)
    assert who.caller.number == number and who.can_reply is can_reply
    assert who.reporter == (f"sms:{number}" if number else f"sms:{who.caller.raw_number or 'unknown'}")
    if flag:
        assert flag in who.caller.flags
    if not number:
        assert "sender_not_a_number" in who.caller.flags


def test_language_and_acknowledgement() -> None:
    assert sms_text.language("Көмек керек", "ru") == "kk"
    assert sms_text.language("Помогите", "kk") == "ru"
    assert sms_text.language("help", "kk") == "kk"
    kk_first, ru_first = sms_text.acknowledgement("kk"), sms_text.acknowledgement("ru")
    assert kk_first.startswith("112: хабарлама") and ru_first.startswith("112: сообщение")
    assert sorted(kk_first.split("\n")) == sorted(ru_first.split("\n"))
    coding, units = text_units(kk_first)
    assert coding == 8 and units <= 3 * 67  # three SMS parts at most


def test_aml_is_recognised_however_broken() -> None:
    assert sms_text.is_aml(' A"ML=1;lt=+43') and sms_text.is_aml('A"ML=9')
    assert not sms_text.is_aml("AML please") and not sms_text.is_aml('a"ml=1')


def test_pending_aml_is_taken_by_its_number_within_the_window() -> None:
    pending = sms_text.PendingAml(window_s=60)
    assert pending.hold("+77011234567", REPORT, 100.0) == []
    assert pending.holds("+77011234567") and not pending.holds("+77019999999")
    assert pending.take("+77019999999", 120.0) == []
    [held] = pending.take("+77011234567", 159.0)
    assert held.report is REPORT and held.held_at == 100.0 and len(pending) == 0


def test_pending_aml_expires_for_the_log_and_is_not_taken_late() -> None:
    pending = sms_text.PendingAml(window_s=60)
    pending.hold("+77011234567", REPORT, 100.0)
    pending.hold("+77012222222", REPORT, 150.0)
    assert pending.take("+77011234567", 161.0) == []  # too late for a call now
    [old] = pending.expire(161.0)
    assert old.number == "+77011234567" and len(pending) == 1


def test_pending_aml_is_bounded_oldest_out() -> None:
    pending = sms_text.PendingAml(window_s=60, limit=2)
    pending.hold("+1", REPORT, 1.0)
    pending.hold("+2", REPORT, 2.0)
    [out] = pending.hold("+3", REPORT, 3.0)
    assert out.number == "+1" and len(pending) == 2


def test_config_defaults_and_typos() -> None:
    cfg = Sms112Config()
    assert not cfg.enabled and cfg.service == "112" and cfg.reply_language == "kk"
    with pytest.raises(msgspec.ValidationError, match="reopen_windw_s"):
        msgspec.convert({"reopen_windw_s": 1}, Sms112Config)
    with pytest.raises(msgspec.ValidationError, match="aml_token_sha256"):
        msgspec.convert({"aml_token_sha256": "secret"}, Sms112Config)
    with pytest.raises(msgspec.ValidationError, match="twilio_path"):
        msgspec.convert({"twilio_path": "webhooks"}, Sms112Config)


def test_reply_number_prefers_the_sms_reporter() -> None:
    caller = Caller(raw_number="87011234567", number="+77011234567", display_name="", withheld=False)
    sms = Incident(id="a", service="112", created_wall=0, caller=caller, reporter="sms:+77019999999", source="sms")
    call = Incident(id="b", service="112", created_wall=0, caller=caller)
    odd = Incident(id="c", service="112", created_wall=0, reporter="sms:Beeline",
                   caller=Caller(raw_number="Beeline", number="", display_name="", withheld=False))
    assert (reply_number(sms), reply_number(call), reply_number(odd)) == ("+77019999999", "+77011234567", "")
