"""E-mail building, pure: MIME structure, encodings, Message-IDs, header-injection refusal, planning."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest

from channels import email_message as em
from channels.base import Message

DATE = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)
SUBJECT_KK = "ЖАТТЫҒУ: Қатты жел туралы ескерту — Алматы қаласы, Әуезов ауданы"
BODY_KK = "Құрметті тұрғындар! Қатты жел күтілуде (25 м/с дейін).\nҮйде болыңыз, терезелерден алыс тұрыңыз.\n"
HTML_KK = "<p>Құрметті тұрғындар!</p><p>Қатты жел күтілуде.</p>"


def message(**overrides: object) -> Message:
    fields: dict[str, object] = dict(idempotency_key="alert-1:email:u1", alert_id="alert-1", address="u1@example.kz",
                                     language="kk", subject=SUBJECT_KK, body=BODY_KK, html=HTML_KK)
    fields.update(overrides)
    return Message(**fields)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def build(msg: Message, **kwargs: object) -> tuple[str, bytes]:
    return em.build(msg, from_address="alerts@police.kz", from_name="ҚР ІІМ Алматы", date=DATE, **kwargs)  # type: ignore[arg-type]


def test_kazakh_subject_is_rfc2047_encoded_and_decodes_back() -> None:
    _, data = build(message())
    raw_headers = data.split(b"\r\n\r\n", 1)[0]
    assert b"Subject: =?utf-8?" in raw_headers
    assert data.isascii()  # 7bit on the wire: no relay needs 8BITMIME
    mail = parse(data)
    assert mail["Subject"] == SUBJECT_KK
    assert str(mail["From"]) == "ҚР ІІМ Алматы <alerts@police.kz>"
    assert mail["To"] == "u1@example.kz"
    assert mail["Date"] == "Sun, 08 Mar 2026 09:30:00 +0000"
    assert mail["X-ECGW-Alert"] == "alert-1"
    assert mail["Content-Language"] == "kk"
    assert mail["Auto-Submitted"] == "auto-generated"


def test_text_and_html_alternatives_in_utf8() -> None:
    _, data = build(message())
    mail = parse(data)
    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all(p["MIME-Version"] is None for p in parts)  # only on the top level
    assert parts[0].get_content().replace("\r\n", "\n") == BODY_KK
    assert parts[1].get_content().replace("\r\n", "\n").strip() == HTML_KK
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def test_text_only_when_no_html() -> None:
    mail = parse(build(message(html=""))[1])
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().replace("\r\n", "\n") == BODY_KK


def test_russian_and_english_bodies() -> None:
    ru = parse(build(message(language="ru", subject="УЧЕНИЯ: Штормовое предупреждение", body="Оставайтесь дома.\n",
                             html=""))[1])
    assert ru["Subject"] == "УЧЕНИЯ: Штормовое предупреждение"
    assert ru.get_content().replace("\r\n", "\n") == "Оставайтесь дома.\n"
    en = build(message(language="en", subject="EXERCISE: Storm warning", body="Stay indoors.\n", html=""))[1]
    assert b"Subject: EXERCISE: Storm warning\r\n" in en  # ASCII stays readable
    assert b"Content-Transfer-Encoding: 7bit" in en


def test_exercise_marker_kept_as_rendered() -> None:
    mail = parse(build(message(exercise=True))[1])
    assert mail["Subject"].startswith("ЖАТТЫҒУ:")  # the renderer's marker, nothing added or removed
    assert mail["Subject"] == SUBJECT_KK


def test_message_id_is_deterministic_from_the_idempotency_key() -> None:
    mid1, data1 = build(message())
    mid2, _ = em.build(message(), from_address="alerts@police.kz", date=datetime(2027, 1, 1, tzinfo=UTC))
    mid3, _ = build(message(idempotency_key="alert-1:email:u2", address="u2@example.kz"))
    assert mid1 == mid2 != mid3
    assert mid1.startswith("<ecgw.") and mid1.endswith("@police.kz>")
    assert parse(data1)["Message-ID"] == mid1
    assert em.message_id("k", "police.kz") == em.message_id("k", "police.kz")


def test_shared_copy_has_undisclosed_recipients_and_a_content_derived_id() -> None:
    mid_a, data = build(message(), shared=True)
    mid_b, _ = build(message(idempotency_key="other", address="u9@example.kz"), shared=True)
    assert mid_a == mid_b  # same alert and text: same Message-ID however recipients were grouped
    assert mid_a != build(message(body="other text"), shared=True)[0]
    assert parse(data)["To"] == "undisclosed-recipients:;"
    assert b"u1@example.kz" not in data


@pytest.mark.parametrize("field, value", [
    ("subject", "Alert\r\nBcc: victim@example.com"),
    ("subject", "Alert\nX-Injected: 1"),
    ("subject", "Alert\rX"),
    ("subject", "Alert\u2028X"),
    ("subject", "Alert\x00X"),
    ("address", "u1@example.kz\r\nBcc: victim@example.com"),
    ("alert_id", "a1\nX-Injected: 1"),
])
def test_header_injection_refused(field: str, value: str) -> None:
    with pytest.raises(em.EmailContentError, match="line break"):
        build(message(**{field: value}))


def test_header_injection_in_from_name_refused() -> None:
    with pytest.raises(em.EmailContentError, match="from_name"):
        em.render_content(message(), from_address="alerts@police.kz", from_name="Police\r\nBcc: x@example.com")


def test_personalize_refuses_line_breaks() -> None:
    with pytest.raises(em.EmailContentError):
        em.personalize(b"", to="a@b.kz\r\nBcc: c@d.kz", message_id="<x@y>", date=DATE)
    with pytest.raises(em.EmailContentError):
        em.personalize(b"", to="a@b.kz", message_id="<x@y>\nBcc: c@d.kz", date=DATE)


def test_addresses_normalized() -> None:
    assert em.normalize_address("User.Name+tag@Example.KZ") == "User.Name+tag@example.kz"
    assert em.normalize_address("info@мвд.қаз") == "info@xn--b1aew.xn--80ao21a"
    assert em.domain_of("alerts@Police.KZ") == "police.kz"


@pytest.mark.parametrize("address", [
    "no-at-sign", "@example.kz", "user@", "two words@example.kz", '"quoted"@example.kz', "тест@example.kz",
    "a@-bad-.kz", "a@exa mple.kz", "a@b@c", "<a@b.kz>", "a@b.kz, c@d.kz", "a..b@example.kz",
])
def test_bad_addresses_refused(address: str) -> None:
    with pytest.raises(em.EmailContentError, match="address"):
        em.normalize_address(address)


def test_check_covers_every_header_field() -> None:
    em.check(message())
    with pytest.raises(em.EmailContentError):
        em.check(message(address="bad"))


def test_plan_one_recipient_per_transaction() -> None:
    msgs = [message(address=f"u{i}@example.kz") for i in range(3)]
    assert em.plan(msgs, 1) == [[0], [1], [2]]


def test_plan_groups_identical_content_up_to_the_limit() -> None:
    kk = [message(address=f"k{i}@example.kz") for i in range(5)]
    ru = [message(address=f"r{i}@example.kz", language="ru", subject="Тест", body="Текст") for i in range(2)]
    msgs = [kk[0], ru[0], kk[1], kk[2], ru[1], kk[3], kk[4]]
    assert em.plan(msgs, 2) == [[0, 2], [1, 4], [3, 5], [6]]
    assert em.plan(msgs, 10) == [[0, 2, 3, 5, 6], [1, 4]]


def test_plan_never_puts_one_address_twice_in_a_transaction() -> None:
    msgs = [message(address="same@example.kz"), message(address="SAME@example.kz"), message(address="x@example.kz")]
    assert em.plan(msgs, 5) == [[0], [1, 2]]
