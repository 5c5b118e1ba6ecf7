"""The residents' sign-up bot as a pure conversation: a Bot API update in, replies and changes out.

Theory of operation: ``SignupBot.handle(update, now)`` takes one update exactly as ``getUpdates``
returns it (a dict decoded from JSON) and returns an ``Outcome``: subscription ``changes`` for the
recipients store and ``replies`` for the Bot API, in the order to apply them. No I/O; the only
memory is each chat's chosen language and its recorded subscription (for /zones): seeded at start,
updated by ``applied(change)`` once the store has taken a change, so it never shows one that failed.

The conversation:
  /start            greeting in kk, ru and en with a language keyboard   (buttons ``l:<lang>``)
  language chosen   the greeting becomes a district keyboard             (buttons ``z:<lang>:<zone>``,
                    and a reply keyboard offers "share my location"       ``z:<lang>:*`` = all districts)
  district chosen   subscribe(zone) and confirm
  location shared   subscribe(zone_of(lat, lon), lat, lon); outside every zone: say so, offer the list
  /zones            the current subscription and the district keyboard to change it
  /stop             unsubscribe (also when the resident blocks the bot: my_chat_member "kicked")
  /help, anything unexpected   a short polite reply

Hostile or unexpected input — malformed updates, unknown commands, huge text, stickers, edited
messages, callback data we never sent — never raises. Polite replies to unexpected input are sent
at most once per ``polite_interval_s`` per chat: the bot shares Telegram's 30 messages/s with
warning delivery, and a resident flooding stickers must not spend it. In groups the bot answers only
commands addressed to it and its own buttons. Live-location updates (edited messages carrying a
location) are ignored without a reply, since they arrive every few seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from gateway.errors import ConfigError

Language = Literal["kk", "ru", "en"]
LANGUAGES: tuple[Language, ...] = ("kk", "ru", "en")
ALL_ZONES = "*"
MAX_TEXT = 200  # longer text is never a district name
MAX_REMEMBERED = 100_000
COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?(?:\s|$)")

TEXTS: dict[str, dict[Language, str]] = {
    "choose_district": {
        "kk": "Ескертулерді қай аудан бойынша алғыңыз келеді? Ауданды таңдаңыз немесе орналасқан жеріңізді жіберіңіз.",
        "ru": "По какому району присылать предупреждения? Выберите район или отправьте своё местоположение.",
        "en": "Which district should we warn you about? Choose a district or share your location.",
    },
    "share_prompt": {
        "kk": "Немесе төмендегі батырманы басып, орналасқан жеріңізді жіберіңіз.",
        "ru": "Или нажмите кнопку ниже, чтобы отправить своё местоположение.",
        "en": "Or press the button below to share your location.",
    },
    "share_button": {
        "kk": "📍 Орналасқан жерімді жіберу",
        "ru": "📍 Отправить моё местоположение",
        "en": "📍 Share my location",
    },
    "all_districts": {"kk": "Барлық аудандар", "ru": "Все районы", "en": "All districts"},
    "subscribed": {
        "kk": "Дайын! Сіз ескертулерге жазылдыңыз: {zone}. Ауданды өзгерту үшін — /zones, "
              "жазылымнан бас тарту үшін — /stop.",
        "ru": "Готово! Вы подписаны на предупреждения: {zone}. Сменить район — /zones, отписаться — /stop.",
        "en": "Done! You are subscribed to warnings for: {zone}. Change district: /zones, unsubscribe: /stop.",
    },
    "outside": {
        "kk": "Бұл орын біз қамтитын аудандардың ешқайсысына кірмейді. Тізімнен ауданды таңдаңыз:",
        "ru": "Это место не входит ни в один из обслуживаемых районов. Выберите район из списка:",
        "en": "This place is outside every district we cover. Choose a district from the list:",
    },
    "current": {
        "kk": "Қазіргі жазылым: {zone}.",
        "ru": "Текущая подписка: {zone}.",
        "en": "Current subscription: {zone}.",
    },
    "not_subscribed": {
        "kk": "Сіз әлі жазылмағансыз.",
        "ru": "Вы пока не подписаны.",
        "en": "You are not subscribed yet.",
    },
    "stopped": {
        "kk": "Сіз ескертулерден бас тарттыңыз. Қайта жазылу үшін — /start.",
        "ru": "Вы отписались от предупреждений. Чтобы подписаться снова — /start.",
        "en": "You have unsubscribed from warnings. To subscribe again: /start.",
    },
    "help": {
        "kk": "Командалар: /start — жазылу, /zones — ауданды өзгерту, /stop — жазылымнан бас тарту.",
        "ru": "Команды: /start — подписаться, /zones — сменить район, /stop — отписаться.",
        "en": "Commands: /start — subscribe, /zones — change district, /stop — unsubscribe.",
    },
    "unknown_command": {
        "kk": "Мұндай команда жоқ.",
        "ru": "Такой команды нет.",
        "en": "There is no such command.",
    },
    "unexpected": {
        "kk": "Кешіріңіз, мен тек батырмаларды, командаларды және орналасқан жерді түсінемін. /help",
        "ru": "Извините, я понимаю только кнопки, команды и местоположение. /help",
        "en": "Sorry, I only understand buttons, commands and locations. /help",
    },
    "edited": {
        "kk": "Өзгертілген хабарламаларды өңдей алмаймын — жаңасын жіберіңіз.",
        "ru": "Я не обрабатываю отредактированные сообщения — отправьте новое.",
        "en": "I don't process edited messages — please send a new one.",
    },
    "stale_button": {
        "kk": "Бұл батырма ескірген. /start басыңыз.",
        "ru": "Эта кнопка устарела. Нажмите /start.",
        "en": "This button is out of date. Press /start.",
    },
    "unavailable": {
        "kk": "Қызмет уақытша қолжетімсіз. Кейінірек қайталап көріңіз.",
        "ru": "Сервис временно недоступен. Попробуйте позже.",
        "en": "The service is temporarily unavailable. Please try again later.",
    },
}
GREETING = (
    "Сәлеметсіз бе! Бұл бот төтенше жағдайлар туралы ресми ескертулерді жібереді. Тілді таңдаңыз.\n\n"
    "Здравствуйте! Этот бот рассылает официальные предупреждения о чрезвычайных ситуациях. Выберите язык.\n\n"
    "Hello! This bot sends official emergency warnings. Choose your language."
)
LANGUAGE_BUTTONS: dict[Language, str] = {"kk": "Қазақша", "ru": "Русский", "en": "English"}
COMMANDS: dict[Language, list[tuple[str, str]]] = {
    "kk": [("start", "Ескертулерге жазылу"), ("zones", "Ауданды өзгерту"), ("stop", "Жазылымнан бас тарту"),
           ("help", "Көмек")],
    "ru": [("start", "Подписаться на предупреждения"), ("zones", "Сменить район"), ("stop", "Отписаться"),
           ("help", "Помощь")],
    "en": [("start", "Subscribe to warnings"), ("zones", "Change district"), ("stop", "Unsubscribe"),
           ("help", "Help")],
}


# ---- what comes out ------------------------------------------------------------------------------


class Send(msgspec.Struct, frozen=True, kw_only=True, tag="sendMessage"):
    chat_id: int
    text: str
    reply_markup: dict[str, Any] | None = None


class Edit(msgspec.Struct, frozen=True, kw_only=True, tag="editMessageText"):
    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None = None


class Answer(msgspec.Struct, frozen=True, kw_only=True, tag="answerCallbackQuery"):
    callback_query_id: str
    text: str = ""


class Subscribe(msgspec.Struct, frozen=True, kw_only=True):
    """Subscribe ``chat_id`` to warnings for ``zone`` (None: every district), replacing any earlier one."""

    chat_id: int
    zone: str | None
    lat: float | None = None
    lon: float | None = None
    language: Language


class Unsubscribe(msgspec.Struct, frozen=True, kw_only=True):
    chat_id: int


Reply = Send | Edit | Answer
Change = Subscribe | Unsubscribe


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """Apply ``changes`` first, then send ``replies`` in order (a confirmation follows the store)."""

    changes: list[Change] = []
    replies: list[Reply] = []


def api_call(reply: Reply) -> tuple[str, dict[str, Any]]:
    """The Bot API method and JSON parameters for one reply."""
    params = msgspec.to_builtins(reply)
    method = params.pop("type")
    return method, {k: v for k, v in params.items() if v is not None}


# ---- the conversation ---------------------------------------------------------------------------


class _Chat(msgspec.Struct, frozen=True):
    id: int
    private: bool
    language: Language


class SignupBot:
    """The sign-up conversation. ``zones`` maps zone name → {language: title}, in keyboard order;
    ``zone_of(lat, lon)`` names the zone containing a point, or None. Raises ``ConfigError`` for a
    zone name too long for a button's 64-byte callback data."""

    def __init__(self, zones: Mapping[str, Mapping[str, str]], zone_of: Callable[[float, float], str | None], *,
                 default_language: Language = "ru", bot_username: str = "",
                 subscriptions: Mapping[int, Subscribe] | None = None, polite_interval_s: float = 10.0) -> None:
        too_long = [name for name in zones if len(f"z:kk:{name}".encode()) > 64 or name == ALL_ZONES]
        if too_long:
            raise ConfigError([f"telegram bot: zone name {name!r} cannot be a button (max 59 bytes, not '*')"
                               for name in too_long])
        self.zones = {name: dict(titles) for name, titles in zones.items()}
        self.zone_of = zone_of
        self.default_language = default_language
        self.bot_username = bot_username
        self.polite_interval_s = polite_interval_s
        self._languages: dict[int, Language] = {}
        self._subscriptions: dict[int, Subscribe] = dict(subscriptions or {})
        self._polite_at: dict[int, float] = {}

    def handle(self, update: object, now: float = 0.0) -> Outcome:
        """What to do about one update; ``now`` (seconds, any clock) paces polite replies."""
        if not isinstance(update, dict):
            return Outcome()
        message = update.get("message")
        if isinstance(message, dict):
            return self._message(message, now)
        query = update.get("callback_query")
        if isinstance(query, dict):
            return self._callback(query)
        edited = update.get("edited_message")
        if isinstance(edited, dict):
            return self._edited(edited, now)
        member = update.get("my_chat_member")
        if isinstance(member, dict):
            return self._membership(member)
        return Outcome()  # channel posts, inline queries, polls...: nothing to say and no one to say it to

    def applied(self, change: Change) -> None:
        """The store has recorded ``change``: /zones may show it from now on."""
        if isinstance(change, Subscribe):
            self._subscriptions[change.chat_id] = change
        else:
            self._subscriptions.pop(change.chat_id, None)

    def subscription(self, chat_id: int) -> Subscribe | None:
        """The chat's subscription as last recorded (seeded at start, then through ``applied``)."""
        return self._subscriptions.get(chat_id)

    # ---- updates ----

    def _message(self, message: dict[str, Any], now: float) -> Outcome:
        chat = self._chat(message, message.get("from"))
        if chat is None:
            return Outcome()
        text = message.get("text")
        if isinstance(text, str) and text.startswith("/"):
            return self._command(chat, text, now)
        if not chat.private:
            return Outcome()
        if "location" in message:
            return self._location(chat, message["location"], now)
        if isinstance(text, str) and len(text) <= MAX_TEXT:
            zone = self._zone_named(text)
            if zone is not None:
                return self._subscribe(chat, zone, None, None)
        return self._polite(chat, "unexpected", now)

    def _command(self, chat: _Chat, text: str, now: float) -> Outcome:
        match = COMMAND_RE.match(text)
        if match and match.group(2) and self.bot_username and match.group(2).lower() != self.bot_username.lower():
            return Outcome()  # addressed to another bot in a group
        command = match.group(1).lower() if match else ""
        if command == "start":
            keyboard = _inline([[(LANGUAGE_BUTTONS[lang], f"l:{lang}") for lang in LANGUAGES]])
            return Outcome(replies=[Send(chat_id=chat.id, text=GREETING, reply_markup=keyboard)])
        if command == "stop":
            return Outcome(changes=[Unsubscribe(chat_id=chat.id)],
                           replies=[Send(chat_id=chat.id, text=_t("stopped", chat.language),
                                         reply_markup={"remove_keyboard": True})])
        if command == "zones":
            current = self._subscriptions.get(chat.id)
            status = (_t("current", chat.language).format(zone=self._title(current.zone, chat.language))
                      if current else _t("not_subscribed", chat.language))
            return Outcome(replies=[Send(chat_id=chat.id, text=f"{status}\n\n{_t('choose_district', chat.language)}",
                                         reply_markup=self._district_keyboard(chat.language))])
        if command == "help":
            return Outcome(replies=[Send(chat_id=chat.id, text=_t("help", chat.language))])
        if not chat.private and not (match and match.group(2)):
            return Outcome()  # "/something" in a group may be for another bot
        reply = f"{_t('unknown_command', chat.language)} {_t('help', chat.language)}"
        return self._polite(chat, reply, now, literal=True)

    def _location(self, chat: _Chat, location: object, now: float) -> Outcome:
        point = _point(location)
        if point is None:
            return self._polite(chat, "unexpected", now)
        lat, lon = point
        zone = self.zone_of(lat, lon)
        if zone is None or zone not in self.zones:
            return Outcome(replies=[Send(chat_id=chat.id, text=_t("outside", chat.language),
                                         reply_markup=self._district_keyboard(chat.language))])
        return self._subscribe(chat, zone, lat, lon)

    def _callback(self, query: dict[str, Any]) -> Outcome:
        raw_id = query.get("id")
        query_id = raw_id if isinstance(raw_id, str) else ""
        message = query.get("message")
        origin = message if isinstance(message, dict) else {"chat": {"id": _user_id(query), "type": "private"}}
        chat = self._chat(origin, query.get("from"))
        answers: list[Reply] = [Answer(callback_query_id=query_id)] if query_id else []
        if chat is None:
            return Outcome(replies=answers)
        data = query.get("data")
        parts = data.split(":", 2) if isinstance(data, str) and len(data) <= 64 else []
        if len(parts) == 2 and parts[0] == "l" and parts[1] in LANGUAGES:
            return self._language_chosen(chat, _lang(parts[1]), answers, message)
        if len(parts) == 3 and parts[0] == "z" and parts[1] in LANGUAGES:
            chat = msgspec.structs.replace(chat, language=_lang(parts[1]))
            if parts[2] == ALL_ZONES or parts[2] in self.zones:
                outcome = self._subscribe(chat, None if parts[2] == ALL_ZONES else parts[2], None, None)
                return Outcome(changes=outcome.changes, replies=[*answers, *outcome.replies])
        stale = [Answer(callback_query_id=query_id, text=_t("stale_button", chat.language))] if answers else []
        return Outcome(replies=[*stale, Send(chat_id=chat.id, text=_t("choose_district", chat.language),
                                             reply_markup=self._district_keyboard(chat.language))])

    def _language_chosen(self, chat: _Chat, language: Language, answers: list[Reply], message: object) -> Outcome:
        self._remember_language(chat.id, language)
        prompt, keyboard = _t("choose_district", language), self._district_keyboard(language)
        message_id = message.get("message_id") if isinstance(message, dict) else None
        first: Reply = (Edit(chat_id=chat.id, message_id=message_id, text=prompt, reply_markup=keyboard)
                        if isinstance(message_id, int) and message_id > 0
                        else Send(chat_id=chat.id, text=prompt, reply_markup=keyboard))
        replies: list[Reply] = [*answers, first]
        if chat.private:  # request_location buttons work only in private chats
            share = {"keyboard": [[{"text": _t("share_button", language), "request_location": True}]],
                     "resize_keyboard": True, "one_time_keyboard": True}
            replies.append(Send(chat_id=chat.id, text=_t("share_prompt", language), reply_markup=share))
        return Outcome(replies=replies)

    def _edited(self, edited: dict[str, Any], now: float) -> Outcome:
        chat = self._chat(edited, edited.get("from"))
        if chat is None or not chat.private or "location" in edited:
            return Outcome()
        return self._polite(chat, "edited", now)

    def _membership(self, member: dict[str, Any]) -> Outcome:
        chat = self._chat(member, member.get("from"))
        new = member.get("new_chat_member")
        if chat is not None and isinstance(new, dict) and new.get("status") in ("kicked", "left"):
            return Outcome(changes=[Unsubscribe(chat_id=chat.id)])
        return Outcome()

    # ---- helpers ----

    def _subscribe(self, chat: _Chat, zone: str | None, lat: float | None, lon: float | None) -> Outcome:
        change = Subscribe(chat_id=chat.id, zone=zone, lat=lat, lon=lon, language=chat.language)
        self._remember_language(chat.id, chat.language)
        text = _t("subscribed", chat.language).format(zone=self._title(zone, chat.language))
        return Outcome(changes=[change], replies=[Send(chat_id=chat.id, text=text,
                                                       reply_markup={"remove_keyboard": True})])

    def _polite(self, chat: _Chat, key: str, now: float, *, literal: bool = False) -> Outcome:
        last = self._polite_at.get(chat.id)
        if last is not None and 0 <= now - last < self.polite_interval_s:
            return Outcome()
        if len(self._polite_at) >= MAX_REMEMBERED:
            self._polite_at.clear()
        self._polite_at[chat.id] = now
        return Outcome(replies=[Send(chat_id=chat.id, text=key if literal else _t(key, chat.language))])

    def _chat(self, message: dict[str, Any], sender: object) -> _Chat | None:
        chat = message.get("chat")
        if not isinstance(chat, dict) or not _is_int(chat.get("id")):
            return None
        chat_id: int = chat["id"]
        return _Chat(chat_id, chat.get("type") == "private", self._language(chat_id, sender))

    def _language(self, chat_id: int, sender: object) -> Language:
        if chat_id in self._languages:
            return self._languages[chat_id]
        if chat_id in self._subscriptions:
            return self._subscriptions[chat_id].language
        code = sender.get("language_code") if isinstance(sender, dict) else None
        prefix = code[:2].lower() if isinstance(code, str) else ""
        return _lang(prefix) if prefix in LANGUAGES else self.default_language

    def _remember_language(self, chat_id: int, language: Language) -> None:
        if len(self._languages) >= MAX_REMEMBERED and chat_id not in self._languages:
            del self._languages[next(iter(self._languages))]
        self._languages[chat_id] = language

    def _title(self, zone: str | None, language: Language) -> str:
        if zone is None:
            return _t("all_districts", language)
        titles = self.zones.get(zone, {})
        return titles.get(language) or titles.get("ru") or zone

    def _zone_named(self, text: str) -> str | None:
        wanted = " ".join(text.split()).casefold()
        for name, titles in self.zones.items():
            if wanted == name.casefold() or any(wanted == t.casefold() for t in titles.values()):
                return name
        return None

    def _district_keyboard(self, language: Language) -> dict[str, Any]:
        buttons = [(self._title(name, language), f"z:{language}:{name}") for name in self.zones]
        rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
        rows.append([(_t("all_districts", language), f"z:{language}:{ALL_ZONES}")])
        return _inline(rows)


def bot_commands() -> list[tuple[Language | None, list[dict[str, str]]]]:
    """``setMyCommands`` calls: the default list (Russian) and one per language."""
    as_api = {lang: [{"command": c, "description": d} for c, d in cmds] for lang, cmds in COMMANDS.items()}
    return [(None, as_api["ru"]), ("kk", as_api["kk"]), ("en", as_api["en"])]


def _t(key: str, language: Language) -> str:
    return TEXTS[key][language]


def _lang(code: str) -> Language:
    return next(lang for lang in LANGUAGES if lang == code)


def _inline(rows: list[list[tuple[str, str]]]) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": text, "callback_data": data} for text, data in row] for row in rows]}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _user_id(query: dict[str, Any]) -> object:
    sender = query.get("from")
    return sender.get("id") if isinstance(sender, dict) else None


def _point(location: object) -> tuple[float, float] | None:
    if not isinstance(location, dict):
        return None
    values: list[float] = []
    for value in (location.get("latitude"), location.get("longitude")):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        values.append(float(value))
    lat, lon = values
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else None
