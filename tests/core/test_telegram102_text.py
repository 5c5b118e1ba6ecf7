"""The 102 bot's pure core: parsing every kind of update, sanitising, flood gate, replies."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.protocols.telegram_chats import Chats, FloodGate, Pacer, chat_of, reporter_of
from gateway.protocols.telegram_replies import TEXTS, notice, share_keyboard, text
from gateway.protocols.telegram_updates import (
    Contact,
    Help,
    Ignored,
    Media,
    Place,
    Sender,
    Start,
    Text,
    language_of,
    parse_update,
    sanitise,
)
from sim.telegram_citizen import Citizen

CHAT = 5551234


def citizen(**kwargs: Any) -> Citizen:
    return Citizen(CHAT, **kwargs)


# ---- report items -------------------------------------------------------------------------------


def test_text_is_a_report_item_with_the_sender() -> None:
    item = parse_update(citizen(first_name="Айгерим").text("У подъезда драка"))
    assert isinstance(item, Text) and item.text == "У подъезда драка" and item.flags == []
    assert item.sender == Sender(chat_id=CHAT, user_id=CHAT, first_name="Айгерим", language="ru")


def test_start_and_help_commands() -> None:
    assert isinstance(parse_update(citizen().text("/start")), Start)
    assert isinstance(parse_update(citizen().text("/start ref123")), Start)
    assert isinstance(parse_update(citizen().text("/START@ecgw102_bot")), Start)
    assert isinstance(parse_update(citizen().text("/help")), Help)
    other = parse_update(citizen().text("/помогите меня грабят"))
    assert isinstance(other, Text) and other.text.startswith("/помогите")  # words, not a command we know


def test_location_with_accuracy_and_venue() -> None:
    item = parse_update(citizen().location(43.2381, 76.9456, accuracy_m=12.5))
    assert isinstance(item, Place)
    assert item == Place(sender=item.sender, lat=43.2381, lon=76.9456, accuracy_m=12.5)
    venue = citizen().message(venue={"location": {"latitude": 43.25, "longitude": 76.92}, "title": "ТЦ <Mega>",
                                     "address": "ул. Розыбакиева\u202e 247"})
    place = parse_update(venue)
    assert isinstance(place, Place) and place.address == "ТЦ <Mega>, ул. Розыбакиева 247"
    assert isinstance(parse_update(citizen().location(43.2, 76.9, accuracy_m=99999)), Place)
    assert parse_update(citizen().location(43.2, 76.9, accuracy_m=99999)).accuracy_m is None  # type: ignore[union-attr]


def test_photo_keeps_the_largest_size_as_a_file_id() -> None:
    item = parse_update(citizen().photo(caption="номер машины\x00 <b>A123</b>", size=200_000))
    assert isinstance(item, Media) and item.media == "photo"
    assert item.width == 1280 and item.height == 960 and item.size == 200_000
    assert item.file_id.startswith("AgAC") and item.caption == "номер машины <b>A123</b>"


def test_voice_note() -> None:
    item = parse_update(citizen().voice(duration=11, size=30_000))
    assert isinstance(item, Media) and (item.media, item.duration, item.size, item.mime_type) == (
        "voice", 11, 30_000, "audio/ogg")


def test_own_contact_is_verified_and_normalised() -> None:
    for raw in ("77011234567", "+7 701 123-45-67", "87011234567"):
        item = parse_update(citizen().own_contact(raw))
        assert isinstance(item, Contact) and item.own and item.number == "+77011234567"


def test_someone_elses_contact_is_not_own() -> None:
    for update in (citizen().foreign_contact("+77017654321"), citizen().foreign_contact("+77017654321", 999)):
        item = parse_update(update)
        assert isinstance(item, Contact) and not item.own and item.number == "+77017654321"
    forged = citizen().message(contact={"phone_number": "+77017654321", "user_id": True})
    assert not parse_update(forged).own  # type: ignore[union-attr]


def test_language_from_the_app() -> None:
    assert language_of("kk") == "kk" and language_of("en-GB") == "en" and language_of("RU") == "ru"
    assert language_of("de") is None and language_of(None) is None and language_of(7) is None
    assert parse_update(citizen(language_code=None).text("x")).sender.language is None  # type: ignore[union-attr]


# ---- hostile input ------------------------------------------------------------------------------


def test_sanitise_removes_controls_bidi_and_surrogates_but_keeps_markup_as_text() -> None:
    raw = "a\x00b\x1b[31mc\u202eevil\u200b\ud800 <script>alert(1)</script> 👨\u200d👩\r\nnext\n\n\n\n end"
    clean, flags = sanitise(raw, 2000)
    assert clean == "ab[31mcevil <script>alert(1)</script> 👨\u200d👩\nnext\n\n end"
    assert flags == ["control_chars", "markup"]
    assert sanitise("*bold* [x](http://evil)", 100)[1] == ["markup"]
    assert sanitise("  \x00\u200b \n ", 100) == ("", ["control_chars"])


def test_oversized_text_is_truncated_and_flagged() -> None:
    item = parse_update(citizen().text("Ы" * 1_000_000), max_text=500)
    assert isinstance(item, Text) and len(item.text) == 500 and item.text.endswith("…")
    assert item.length == 1_000_000 and "truncated" in item.flags


@pytest.mark.parametrize("location", [
    {"latitude": 91.0, "longitude": 76.9}, {"latitude": 43.2, "longitude": -180.5},
    {"latitude": float("nan"), "longitude": 76.9}, {"latitude": float("inf"), "longitude": 76.9},
    {"latitude": "43.2", "longitude": 76.9}, {"latitude": True, "longitude": 76.9}, {"latitude": 43.2},
    [43.2, 76.9], None,
])
def test_invalid_locations_are_refused_with_a_reply(location: Any) -> None:
    item = parse_update(citizen().message(location=location))
    assert isinstance(item, Ignored) and item.reason == "bad_location" and item.reply == "bad_location"
    assert item.sender is not None and item.sender.chat_id == CHAT


@pytest.mark.parametrize("content", [
    {"sticker": {"file_id": "CAAC", "file_unique_id": "u"}}, {"poll": {"id": "1", "question": "?"}},
    {"dice": {"emoji": "🎲", "value": 3}}, {"photo": []}, {"photo": [{"width": 1}]}, {"voice": {"file_id": ""}},
    {"voice": {"file_id": "x" * 1000}}, {"voice": "AwAC"}, {"contact": {"first_name": "no phone"}},
    {"contact": "+77011234567"}, {"text": "\x00\x01 \u200b"}, {"new_chat_members": []},
])
def test_unsupported_or_malformed_content_gets_a_polite_reply(content: dict[str, Any]) -> None:
    item = parse_update(citizen().message(**content))
    assert isinstance(item, Ignored) and item.reply == "unsupported" and item.sender is not None


def forged(**changes: Any) -> dict[str, Any]:
    update = citizen().text("hello")
    update["message"].update(changes)
    return update


@pytest.mark.parametrize(("update", "reason"), [
    (None, "not_an_update"), ([], "not_an_update"), ("x", "not_an_update"), ({}, "unknown_update"),
    ({"update_id": 5}, "unknown_update"), ({"message": "hi"}, "unknown_update"),
    ({"callback_query": {"id": "1"}}, "unknown_update"), ({"inline_query": {}}, "unknown_update"),
    (forged(chat=None), "no_chat"), (forged(chat={"id": "5551234", "type": "private"}), "no_chat"),
    (forged(chat={"id": True, "type": "private"}), "no_chat"), (forged(**{"from": None}), "no_sender"),
    (forged(**{"from": {"id": 42, "is_bot": False, "first_name": "X"}}), "forged_sender"),
    (forged(**{"from": {"id": CHAT, "is_bot": True, "first_name": "X"}}), "forged_sender"),
    (forged(chat={"id": -100123, "type": "supergroup"}), "not_private"),
    (forged(chat={"id": CHAT}), "not_private"),
])
def test_forged_and_malformed_updates_are_never_answered(update: Any, reason: str) -> None:
    item = parse_update(update)
    assert isinstance(item, Ignored) and item.reason == reason and item.sender is None and item.reply == ""


def test_edited_messages_are_refused_and_live_location_is_silent() -> None:
    edited = {"edited_message": citizen().text("исправил")["message"]}
    assert parse_update(edited) == Ignored(reason="edited", sender=parse_update(edited).sender, reply="edited")
    live = {"edited_message": citizen().location(43.2, 76.9)["message"]}
    item = parse_update(live)
    assert isinstance(item, Ignored) and item.reason == "live_location" and item.reply == ""


def test_hostile_first_name_is_cleaned() -> None:
    item = parse_update(citizen(first_name="<b>Adm\x07in</b>\u202e" + "x" * 500).text("hi"))
    assert item.sender is not None and len(item.sender.first_name) <= 64  # type: ignore[union-attr]
    assert "\x07" not in item.sender.first_name and "\u202e" not in item.sender.first_name  # type: ignore[union-attr]


def test_random_garbage_never_raises() -> None:
    rng = random.Random(102)
    atoms: list[Any] = [None, True, 0, -1, 2**70, 1.5, float("nan"), "", "/start", "x" * 5000, "\ud800", "private",
                        CHAT, [], {}]
    keys = ["update_id", "message", "edited_message", "chat", "from", "id", "type", "text", "language_code",
            "location", "latitude", "longitude", "contact", "phone_number", "user_id", "photo", "voice", "file_id",
            "file_size", "duration", "width", "caption", "venue", "is_bot", "first_name", "horizontal_accuracy"]

    def junk(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(atoms)
        if rng.random() < 0.2:
            return [junk(depth - 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(keys): junk(depth - 1) for _ in range(rng.randint(1, 6))}

    for _ in range(5000):
        parse_update(junk(6))
    for _ in range(2000):  # well-formed envelopes with junk content reach the deeper branches
        message = citizen().message(**{rng.choice(keys): junk(3) for _ in range(2)})
        parse_update(message)


# ---- per-chat state ------------------------------------------------------------------------------


def test_flood_gate_warns_once_then_drops_until_the_window_frees() -> None:
    gate = FloodGate(3, window_s=60)
    assert [gate.admit(1, t) for t in (0, 1, 2)] == ["ok", "ok", "ok"]
    assert [gate.admit(1, t) for t in (3, 4, 5)] == ["warn", "drop", "drop"]
    assert gate.admit(2, 5) == "ok"  # other chats are not affected
    assert gate.dropped == 3
    assert gate.admit(1, 60.5) == "ok"  # the first message left the window
    assert gate.admit(1, 60.6) == "warn"  # a new flood is acknowledged again


def test_flood_gate_and_chats_are_bounded() -> None:
    gate = FloodGate(1, max_chats=10)
    for chat in range(100):
        gate.admit(chat, 0)
    assert len(gate._seen) == 10
    chats = Chats(max_chats=5)
    for chat in range(20):
        chats.seen(Sender(chat_id=chat, user_id=chat, first_name="", language="kk"))
    assert len(chats) == 5 and chats.get(19) is not None and chats.get(0) is None


def test_pacer() -> None:
    pacer = Pacer(10)
    assert pacer.due(1, "added", 0) and not pacer.due(1, "added", 5) and pacer.due(1, "other", 5)
    assert pacer.due(1, "added", 10)


def test_chat_language_sticks_when_the_app_does_not_say() -> None:
    chats = Chats(default_language="ru")
    assert chats.seen(Sender(chat_id=1, user_id=1, first_name="A", language="kk")).language == "kk"
    assert chats.seen(Sender(chat_id=1, user_id=1, first_name="", language=None)).language == "kk"
    assert chats.seen(Sender(chat_id=2, user_id=2, first_name="", language=None)).language == "ru"


# ---- replies ------------------------------------------------------------------------------------


def test_every_text_exists_in_three_languages() -> None:
    for key, texts in TEXTS.items():
        assert set(texts) == {"kk", "ru", "en"}, key
    assert text("registered", "kk", ref="X-1").count("X-1") == 1
    assert text("help", "de") == TEXTS["help"]["ru"]


def test_share_keyboard_asks_for_own_number_and_location() -> None:
    rows = share_keyboard("kk")["keyboard"]
    assert rows == [[{"text": TEXTS["share_phone"]["kk"], "request_contact": True}],
                    [{"text": TEXTS["share_location"]["kk"], "request_location": True}]]
    assert share_keyboard("en", phone=False)["keyboard"] == [[{"text": "📍 Share my location",
                                                               "request_location": True}]]


def test_notices_say_the_status_and_nothing_internal() -> None:
    data = {"status": "assigned", "previous": "new", "unit": "Патруль 12 (ст. сержант Иванов)",
            "note": "see incident 20261121-1"}
    message = notice("status_changed", data, "ru")
    assert message == TEXTS["status_assigned"]["ru"]
    assert "Иванов" not in message and "Патруль" not in message and "2026" not in message
    assert notice("status_changed", {"status": "new"}, "ru") is None
    assert notice("status_changed", {"status": "bogus"}, "ru") is None
    assert notice("category_changed", {"category": "fire"}, "ru") is None
    assert notice("status_changed", {"status": "closed"}, "en") == TEXTS["status_closed"]["en"]


def test_dispatcher_reply_notice_is_sanitised_plain_text() -> None:
    message = notice("citizen_replied", {"text": "<b>Оставайтесь</b>\x00 дома", "actor": "Иванов"}, "kk")
    assert message == "102 кезекшісінің хабарламасы:\n<b>Оставайтесь</b> дома"
    assert notice("citizen_replied", {"text": 5}, "ru") is None
    assert notice("citizen_replied", {"text": "\x00"}, "ru") is None


def test_reporter_round_trip() -> None:
    assert chat_of(reporter_of(CHAT)) == CHAT and chat_of(reporter_of(-5)) == -5
    for bad in ("", "tg:", "tg:abc", "sms:+7701", "tg:1 ", "tg:" + "9" * 30):
        assert chat_of(bad) is None


def test_a_long_dispatcher_reply_fits_telegrams_limit_in_utf16_units() -> None:
    message = notice("citizen_replied", {"text": "🚓" * 4000}, "en", max_text=4000)
    assert message is not None and message.endswith("…")
    assert 3800 < len(message.encode("utf-16-le")) // 2 <= 4096
    short = notice("citizen_replied", {"text": "ok"}, "en")
    assert short == "Message from the 102 duty officer:\nok"
