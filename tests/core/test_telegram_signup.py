"""The sign-up conversation as a pure function of updates: every branch and hostile input."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.protocols.telegram_signup import (
    GREETING,
    TEXTS,
    Answer,
    Edit,
    Outcome,
    Send,
    SignupBot,
    Subscribe,
    Unsubscribe,
    api_call,
    bot_commands,
)

ZONES = {
    "almaly": {"kk": "Алмалы ауданы", "ru": "Алмалинский район", "en": "Almaly district"},
    "medeu": {"kk": "Медеу ауданы", "ru": "Медеуский район", "en": "Medeu district"},
    "auezov": {"ru": "Ауэзовский район"},
}
CHAT = 501


def zone_of(lat: float, lon: float) -> str | None:
    if 43.228 <= lat <= 43.262 and 76.895 <= lon <= 76.955:
        return "almaly"
    return None


def bot(**kwargs: Any) -> SignupBot:
    return SignupBot(ZONES, zone_of, bot_username="ecgw_alerts_bot", **kwargs)


def message(chat: int = CHAT, *, private: bool = True, language_code: str | None = "ru", **content: Any) -> dict:
    sender: dict[str, Any] = {"id": abs(chat), "is_bot": False, "first_name": "Айгерим"}
    if language_code is not None:
        sender["language_code"] = language_code
    kind = "private" if private else "supergroup"
    return {"update_id": 1, "message": {"message_id": 10, "from": sender, "chat": {"id": chat, "type": kind},
                                        "date": 1760000000, **content}}


def text(body: str, chat: int = CHAT, **kwargs: Any) -> dict:
    return message(chat, text=body, **kwargs)


def press(data: Any, chat: int = CHAT, *, query_id: Any = "q1", message_id: Any = 42,
          private: bool = True, language_code: str = "ru") -> dict:
    query: dict[str, Any] = {"id": query_id, "from": {"id": abs(chat), "is_bot": False, "first_name": "A",
                                                      "language_code": language_code},
                             "chat_instance": "77", "data": data}
    if message_id is not None:
        query["message"] = {"message_id": message_id, "date": 1760000000,
                            "chat": {"id": chat, "type": "private" if private else "supergroup"}, "text": "…"}
    return {"update_id": 2, "callback_query": query}


def only_send(outcome: Outcome) -> Send:
    assert outcome.changes == []
    assert len(outcome.replies) == 1 and isinstance(outcome.replies[0], Send)
    return outcome.replies[0]


def buttons(markup: dict | None) -> list[str]:
    assert markup is not None
    return [b["callback_data"] for row in markup["inline_keyboard"] for b in row]


# ---- the happy path ---------------------------------------------------------------------------


def test_start_greets_in_three_languages_with_a_language_keyboard() -> None:
    reply = only_send(bot().handle(text("/start")))
    assert reply.chat_id == CHAT and reply.text == GREETING
    assert "Сәлеметсіз бе" in reply.text and "Здравствуйте" in reply.text and "Hello" in reply.text
    assert buttons(reply.reply_markup) == ["l:kk", "l:ru", "l:en"]


def test_choosing_a_language_turns_the_greeting_into_districts_and_offers_location() -> None:
    signup = bot()
    outcome = signup.handle(press("l:kk"))
    assert outcome.changes == []
    answer, edit, share = outcome.replies
    assert answer == Answer(callback_query_id="q1")
    assert isinstance(edit, Edit) and edit.message_id == 42 and edit.text == TEXTS["choose_district"]["kk"]
    assert edit.reply_markup is not None
    assert buttons(edit.reply_markup) == ["z:kk:almaly", "z:kk:medeu", "z:kk:auezov", "z:kk:*"]
    assert edit.reply_markup["inline_keyboard"][0][0]["text"] == "Алмалы ауданы"
    assert edit.reply_markup["inline_keyboard"][1][0]["text"] == "Ауэзовский район"  # no kk title: ru
    assert isinstance(share, Send) and share.reply_markup is not None
    button = share.reply_markup["keyboard"][0][0]
    assert button == {"text": "📍 Орналасқан жерімді жіберу", "request_location": True}
    # the choice sticks for later messages even though the resident's app is in Russian
    assert only_send(signup.handle(text("/help"))).text == TEXTS["help"]["kk"]


def test_language_button_without_its_message_sends_a_new_district_list() -> None:
    outcome = bot().handle(press("l:en", message_id=None))
    assert isinstance(outcome.replies[1], Send) and outcome.replies[1].text == TEXTS["choose_district"]["en"]


def test_choosing_a_district_subscribes_and_confirms() -> None:
    signup = bot()
    outcome = signup.handle(press("z:ru:medeu"))
    assert outcome.changes == [Subscribe(chat_id=CHAT, zone="medeu", lat=None, lon=None, language="ru")]
    answer, confirm = outcome.replies
    assert answer == Answer(callback_query_id="q1")
    assert isinstance(confirm, Send) and "Медеуский район" in confirm.text and "Готово" in confirm.text
    assert confirm.reply_markup == {"remove_keyboard": True}
    assert signup.subscription(CHAT) is None  # not until the store has it
    signup.applied(outcome.changes[0])
    assert signup.subscription(CHAT) == outcome.changes[0]


def test_all_districts_subscribes_with_no_zone() -> None:
    outcome = bot().handle(press("z:en:*", language_code="kk"))
    assert outcome.changes == [Subscribe(chat_id=CHAT, zone=None, language="en")]
    assert "All districts" in outcome.replies[1].text  # type: ignore[union-attr]


def test_location_inside_a_zone_subscribes_with_the_point() -> None:
    outcome = bot().handle(message(location={"latitude": 43.25, "longitude": 76.92}))
    assert outcome.changes == [Subscribe(chat_id=CHAT, zone="almaly", lat=43.25, lon=76.92, language="ru")]
    assert "Алмалинский район" in outcome.replies[0].text  # type: ignore[union-attr]


def test_location_outside_every_zone_says_so_and_offers_the_list() -> None:
    reply = only_send(bot().handle(message(location={"latitude": 51.17, "longitude": 71.45}, language_code="kk")))
    assert reply.text == TEXTS["outside"]["kk"]
    assert buttons(reply.reply_markup)[-1] == "z:kk:*"


def test_typing_a_district_name_subscribes() -> None:
    outcome = bot().handle(text("  алмалинский   РАЙОН "))
    assert [c.zone for c in outcome.changes if isinstance(c, Subscribe)] == ["almaly"]


def test_stop_unsubscribes_and_removes_the_keyboard() -> None:
    signup = bot()
    signup.applied(signup.handle(press("z:ru:almaly")).changes[0])
    outcome = signup.handle(text("/stop"))
    assert outcome.changes == [Unsubscribe(chat_id=CHAT)]
    assert outcome.replies == [Send(chat_id=CHAT, text=TEXTS["stopped"]["ru"], reply_markup={"remove_keyboard": True})]
    assert signup.subscription(CHAT) is not None
    signup.applied(outcome.changes[0])
    assert signup.subscription(CHAT) is None


def test_zones_shows_the_current_subscription_and_the_list() -> None:
    signup = bot(subscriptions={CHAT: Subscribe(chat_id=CHAT, zone="medeu", language="en")})
    reply = only_send(signup.handle(text("/zones")))
    assert reply.text.startswith("Current subscription: Medeu district.")
    assert "z:en:medeu" in buttons(reply.reply_markup)
    other = only_send(signup.handle(text("/zones", chat=777, language_code="kk")))
    assert other.text.startswith(TEXTS["not_subscribed"]["kk"])


def test_language_comes_from_the_app_when_not_chosen() -> None:
    assert only_send(bot().handle(text("/help", language_code="en-US"))).text == TEXTS["help"]["en"]
    assert only_send(bot().handle(text("/help", language_code="de"))).text == TEXTS["help"]["ru"]
    assert only_send(bot(default_language="kk").handle(text("/help", language_code=None))).text == TEXTS["help"]["kk"]


def test_blocking_the_bot_unsubscribes_silently() -> None:
    update: dict[str, Any] = {"update_id": 9, "my_chat_member": {
        "chat": {"id": CHAT, "type": "private"}, "from": {"id": CHAT, "is_bot": False, "first_name": "A"},
        "date": 1, "old_chat_member": {"status": "member"}, "new_chat_member": {"status": "kicked"}}}
    assert bot().handle(update) == Outcome(changes=[Unsubscribe(chat_id=CHAT)])
    update["my_chat_member"]["new_chat_member"] = {"status": "member"}
    assert bot().handle(update) == Outcome()


# ---- unexpected and hostile input -------------------------------------------------------------


@pytest.mark.parametrize("update", [
    text("/frobnicate"),
    text("/"),
    text("/старт"),
    text("x" * 100_000),
    text("привет"),
    message(sticker={"file_id": "CAACAgIAAxk", "file_unique_id": "u", "type": "regular", "width": 512,
                     "height": 512, "is_animated": False, "is_video": False}),
    message(photo=[{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}]),
    message(location={"latitude": "43.25", "longitude": 76.92}),
    message(location={"latitude": True, "longitude": 76.92}),
    message(location={"latitude": float("nan"), "longitude": 76.92}),
    message(location={"latitude": 91.0, "longitude": 76.92}),
    message(location=[43.25, 76.92]),
    message(contact={"phone_number": "+77011234567", "first_name": "A"}),
])
def test_unexpected_messages_get_a_short_polite_reply(update: dict) -> None:
    reply = only_send(bot().handle(update))
    assert reply.chat_id == CHAT and len(reply.text) < 200 and reply.reply_markup is None


def test_unknown_command_lists_the_real_ones() -> None:
    reply = only_send(bot().handle(text("/frobnicate", language_code="kk")))
    assert reply.text.startswith("Мұндай команда жоқ.") and "/start" in reply.text


def test_polite_replies_are_rate_limited_per_chat() -> None:
    signup = bot(polite_interval_s=10)
    sticker = message(sticker={"file_id": "s"})
    assert len(signup.handle(sticker, now=100).replies) == 1
    assert signup.handle(sticker, now=105) == Outcome()
    assert signup.handle(text("/nope"), now=106) == Outcome()
    assert len(signup.handle(sticker, now=110).replies) == 1
    assert len(signup.handle(message(chat=502, sticker={"file_id": "s"}), now=106).replies) == 1
    assert len(signup.handle(text("/start"), now=107).replies) == 1  # real commands are never throttled


def test_edited_messages_get_a_polite_reply_but_live_location_is_silent() -> None:
    edited = {"update_id": 3, "edited_message": text("/start")["message"] | {"edit_date": 1760000001}}
    assert only_send(bot().handle(edited)).text == TEXTS["edited"]["ru"]
    live = {"update_id": 4, "edited_message": message(location={"latitude": 43.25, "longitude": 76.92,
                                                                 "live_period": 900})["message"]}
    assert bot().handle(live) == Outcome()


@pytest.mark.parametrize("data", ["z:ru:nowhere", "z:xx:almaly", "l:de", "evil", "", None, 42, "z:ru", "l:ru:extra",
                                  "z:ru:" + "a" * 100])
def test_buttons_we_never_sent_are_answered_as_stale(data: Any) -> None:
    outcome = bot().handle(press(data))
    assert outcome.changes == []
    answer, send = outcome.replies
    assert answer == Answer(callback_query_id="q1", text=TEXTS["stale_button"]["ru"])
    assert isinstance(send, Send) and buttons(send.reply_markup)[-1] == "z:ru:*"


def test_callback_without_an_id_or_a_message_still_works() -> None:
    outcome = bot().handle(press("z:ru:almaly", query_id=None, message_id=None))
    assert [type(r) for r in outcome.replies] == [Send]
    assert outcome.changes == [Subscribe(chat_id=CHAT, zone="almaly", language="ru")]


def test_groups_answer_only_commands_addressed_to_the_bot() -> None:
    group = -1001234567890
    assert bot().handle(text("hello all", chat=group, private=False)) == Outcome()
    assert bot().handle(message(group, private=False, sticker={"file_id": "s"})) == Outcome()
    assert bot().handle(message(group, private=False, location={"latitude": 43.25, "longitude": 76.92})) == Outcome()
    assert bot().handle(text("/start@other_bot", chat=group, private=False)) == Outcome()
    assert bot().handle(text("/weather", chat=group, private=False)) == Outcome()
    assert only_send(bot().handle(text("/start@ECGW_alerts_bot", chat=group, private=False))).text == GREETING
    assert "Такой команды нет" in only_send(bot().handle(text("/x@ecgw_alerts_bot", chat=group, private=False))).text
    outcome = bot().handle(press("l:ru", chat=group, private=False))
    assert [type(r) for r in outcome.replies] == [Answer, Edit]  # no location keyboard outside private chats


@pytest.mark.parametrize("update", [
    None, [], "update", 42, {}, {"update_id": 1}, {"message": None}, {"message": "hi"}, {"message": {}},
    {"message": {"chat": {"id": "501"}, "text": "/start"}}, {"message": {"chat": {"id": True}, "text": "/start"}},
    {"message": {"chat": None, "text": "/start"}}, {"callback_query": {"id": "q", "data": "l:ru"}},
    {"callback_query": {"id": "q", "message": {"chat": "x"}}}, {"callback_query": []},
    {"edited_message": {"chat": {}}}, {"my_chat_member": {"chat": {"id": 1}, "new_chat_member": "kicked"}},
    {"channel_post": {"chat": {"id": -100, "type": "channel"}, "text": "/start"}},
    {"inline_query": {"id": "1", "from": {"id": 1}, "query": "x"}},
])
def test_malformed_updates_are_ignored(update: Any) -> None:
    outcome = bot().handle(update)
    assert outcome.changes == []
    assert all(isinstance(r, Answer) for r in outcome.replies)


def test_random_garbage_never_raises() -> None:
    rng = random.Random(7)
    atoms: list[Any] = [None, True, 0, -1, 2**70, 1.5, float("inf"), "", "/start", "l:kk", "z:ru:almaly", "x" * 5000,
                        "kicked", "private", [], {}]
    keys = ["update_id", "message", "edited_message", "callback_query", "my_chat_member", "chat", "id", "type",
            "text", "from", "language_code", "location", "latitude", "longitude", "data", "message_id",
            "new_chat_member", "status"]

    def junk(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(atoms)
        if rng.random() < 0.2:
            return [junk(depth - 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(keys): junk(depth - 1) for _ in range(rng.randint(1, 5))}

    signup = bot()
    for _ in range(3000):
        outcome = signup.handle(junk(5), now=rng.random() * 100)
        assert isinstance(outcome, Outcome)


# ---- plumbing ----------------------------------------------------------------------------------


def test_api_call_maps_replies_to_bot_api_methods() -> None:
    assert api_call(Send(chat_id=1, text="hi")) == ("sendMessage", {"chat_id": 1, "text": "hi"})
    assert api_call(Edit(chat_id=1, message_id=2, text="t", reply_markup={"inline_keyboard": []})) == (
        "editMessageText", {"chat_id": 1, "message_id": 2, "text": "t", "reply_markup": {"inline_keyboard": []}})
    assert api_call(Answer(callback_query_id="q")) == ("answerCallbackQuery", {"callback_query_id": "q", "text": ""})


def test_zone_names_must_fit_in_callback_data() -> None:
    with pytest.raises(ConfigError) as err:
        SignupBot({"a" * 60: {}, "*": {}, "ok": {}}, zone_of)
    assert len(err.value.problems) == 2


def test_command_menus_in_each_language() -> None:
    menus = dict(bot_commands())
    assert set(menus) == {None, "kk", "en"}
    assert [c["command"] for c in menus["kk"]] == ["start", "zones", "stop", "help"]
    assert menus[None][0]["description"] == "Подписаться на предупреждения"
