"""The "102" Telegram bot's citizen side as pure code: an update in, a typed report item out.

Theory of operation: ``parse_update(update, max_text)`` takes one update exactly as ``getUpdates``
returns it (a dict decoded from JSON, trusted for nothing) and returns one item: a command
(``Start``, ``Help``), a report item (``Text``, ``Place``, ``Media``), a shared ``Contact``, or
``Ignored`` with a reason code and, when the sender can safely be answered, the key of a polite
reply. It never raises. Text is sanitised for storage and display (NFC, no control or bidi
characters, no lone surrogates, bounded length); markup is kept as literal text because nothing
we send to a citizen is ever parsed as HTML or Markdown.

``FloodGate`` (per-chat sliding-window limit), ``Pacer`` (at most one courtesy reply per interval)
and ``Chats`` (what we remember per chat: language, verified number, open incident) are plain
state with ``now`` passed in, so the driver stays thin and tests need no clock.

Forged updates are never answered: a private message whose sender is not the chat (or is a bot)
could point our replies at someone else's chat.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import deque
from typing import Any, Literal, TypeGuard

import msgspec

from gateway.protocols.ani import e164

Language = Literal["kk", "ru", "en"]
LANGUAGES: tuple[Language, ...] = ("kk", "ru", "en")
MediaKind = Literal["photo", "voice", "video", "video_note", "audio", "animation", "document"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("photo", "voice", "video", "video_note", "audio", "animation", "document")
COMMAND_RE = re.compile(r"^/(start|help)(?:@[A-Za-z0-9_]{1,64})?(?:\s|$)", re.IGNORECASE)
MAX_FILE_ID = 256
MAX_NAME = 64
MAX_ACCURACY_M = 1500.0  # Telegram's range for horizontal_accuracy
KEEP_FORMAT = {"\u200c", "\u200d"}  # ZWNJ/ZWJ: needed by emoji and some scripts; harmless
NOTICE_STATUSES = ("assigned", "en_route", "on_scene", "closed")
MAX_NOTICE_UTF16 = 3900  # a dispatcher's words plus our prefix stay under Telegram's 4096


# ---- what comes out -----------------------------------------------------------------------------


class Sender(msgspec.Struct, frozen=True, kw_only=True):
    chat_id: int
    user_id: int
    first_name: str
    language: Language | None  # None: the app did not say, or said a language we do not speak


class Start(msgspec.Struct, frozen=True, kw_only=True):
    sender: Sender


class Help(msgspec.Struct, frozen=True, kw_only=True):
    sender: Sender


class Text(msgspec.Struct, frozen=True, kw_only=True):
    sender: Sender
    text: str
    length: int  # characters as received
    flags: list[str] = []


class Place(msgspec.Struct, frozen=True, kw_only=True):
    sender: Sender
    lat: float
    lon: float
    accuracy_m: float | None = None
    address: str = ""  # a venue's title and address


class Media(msgspec.Struct, frozen=True, kw_only=True):
    sender: Sender
    media: MediaKind
    file_id: str
    file_unique_id: str = ""
    size: int | None = None
    duration: int | None = None
    width: int | None = None
    height: int | None = None
    mime_type: str = ""
    caption: str = ""


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """A shared contact; ``own`` when Telegram says it is the sender's own account (verified number)."""

    sender: Sender
    raw: str
    number: str  # E.164 or "" when the digits make no sense
    own: bool
    flags: list[str] = []


class Ignored(msgspec.Struct, frozen=True, kw_only=True):
    """Not a report item. ``reply`` names a TEXTS key when the sender may be answered, else ""."""

    reason: str
    sender: Sender | None = None
    reply: str = ""


Item = Start | Help | Text | Place | Media | Contact | Ignored


# ---- parsing ------------------------------------------------------------------------------------


def parse_update(update: object, max_text: int = 2000) -> Item:
    """One Bot API update as a report item; never raises."""
    if not isinstance(update, dict):
        return Ignored(reason="not_an_update")
    message = update.get("message")
    edited = update.get("edited_message")
    if not isinstance(message, dict):
        if isinstance(edited, dict):
            return _edited(edited)
        return Ignored(reason="unknown_update")
    sender, problem = _sender(message)
    if sender is None:
        return Ignored(reason=problem)
    return _content(sender, message, max_text)


def _edited(message: dict[str, Any]) -> Item:
    sender, problem = _sender(message)
    if sender is None:
        return Ignored(reason=problem)
    if "location" in message:  # live location: arrives every few seconds, never answered
        return Ignored(reason="live_location", sender=sender)
    return Ignored(reason="edited", sender=sender, reply="edited")


def _sender(message: dict[str, Any]) -> tuple[Sender | None, str]:
    chat, user = message.get("chat"), message.get("from")
    if not isinstance(chat, dict) or not _is_int(chat.get("id")):
        return None, "no_chat"
    if not isinstance(user, dict) or not _is_int(user.get("id")):
        return None, "no_sender"
    if chat.get("type") != "private":
        return None, "not_private"  # reports come in private chats only; groups are not answered
    if user["id"] != chat["id"] or user.get("is_bot") is True:
        return None, "forged_sender"
    first = user.get("first_name")
    name = sanitise(first, MAX_NAME)[0].replace("\n", " ") if isinstance(first, str) else ""
    return Sender(chat_id=chat["id"], user_id=user["id"], first_name=name,
                  language=language_of(user.get("language_code"))), ""


def _content(sender: Sender, message: dict[str, Any], max_text: int) -> Item:
    text = message.get("text")
    if isinstance(text, str):
        command = COMMAND_RE.match(text)
        if command:
            return Start(sender=sender) if command.group(1).lower() == "start" else Help(sender=sender)
        clean, flags = sanitise(text, max_text)
        if not clean:
            return Ignored(reason="empty_text", sender=sender, reply="unsupported")
        return Text(sender=sender, text=clean, length=len(text), flags=flags)
    if "location" in message or "venue" in message:
        return _place(sender, message)
    if "contact" in message:
        return _contact(sender, message["contact"])
    for kind in MEDIA_KINDS:
        if kind in message:
            return _media(sender, kind, message[kind], message.get("caption"), max_text)
    return Ignored(reason="unsupported", sender=sender, reply="unsupported")


def _place(sender: Sender, message: dict[str, Any]) -> Item:
    venue = message.get("venue")
    location = message.get("location")
    if location is None and isinstance(venue, dict):
        location = venue.get("location")
    if not isinstance(location, dict):
        return Ignored(reason="bad_location", sender=sender, reply="bad_location")
    lat, lon = location.get("latitude"), location.get("longitude")
    if not (_is_number(lat) and _is_number(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return Ignored(reason="bad_location", sender=sender, reply="bad_location")
    accuracy = location.get("horizontal_accuracy")
    address = ""
    if isinstance(venue, dict):
        parts = [venue.get("title"), venue.get("address")]
        address = sanitise(", ".join(p for p in parts if isinstance(p, str) and p), 300)[0].replace("\n", " ")
    return Place(sender=sender, lat=float(lat), lon=float(lon), address=address,
                 accuracy_m=float(accuracy) if _is_number(accuracy) and 0 <= accuracy <= MAX_ACCURACY_M else None)


def _contact(sender: Sender, contact: object) -> Item:
    phone = contact.get("phone_number") if isinstance(contact, dict) else None
    if not isinstance(contact, dict) or not isinstance(phone, str) or not phone.strip():
        return Ignored(reason="bad_contact", sender=sender, reply="unsupported")
    raw = "".join(ch for ch in phone if ch.isprintable())[:32]
    # Telegram fills user_id only for a contact that is a Telegram account; the request_contact
    # button sends the sender's own account, whose number Telegram has verified by SMS.
    own = contact.get("user_id") == sender.user_id and _is_int(contact.get("user_id"))
    number, flags = e164(raw)
    return Contact(sender=sender, raw=raw, number=number, own=own, flags=flags)


def _media(sender: Sender, kind: MediaKind, body: object, caption: object, max_text: int) -> Item:
    if kind == "photo" and isinstance(body, list):  # sizes of one photo; keep the largest
        sizes = [s for s in body if isinstance(s, dict) and _file_id(s)]
        body = max(sizes, key=lambda s: (_int_or(s.get("width"), 0) * _int_or(s.get("height"), 0),
                                         _int_or(s.get("file_size"), 0)), default=None)
    if not isinstance(body, dict) or not _file_id(body):
        return Ignored(reason="bad_media", sender=sender, reply="unsupported")
    mime = body.get("mime_type")
    return Media(sender=sender, media=kind, file_id=body["file_id"], file_unique_id=_short(body.get("file_unique_id")),
                 size=_count(body.get("file_size")), duration=_count(body.get("duration")),
                 width=_count(body.get("width")), height=_count(body.get("height")),
                 mime_type=_short(mime)[:100],
                 caption=sanitise(caption, max_text)[0] if isinstance(caption, str) else "")


def language_of(code: object) -> Language | None:
    """kk/ru/en from a Telegram ``language_code`` ("en-US" → en); anything else None."""
    if not isinstance(code, str):
        return None
    prefix = code.split("-")[0].lower()
    return next((lang for lang in LANGUAGES if lang == prefix), None)


def sanitise(text: str, limit: int) -> tuple[str, list[str]]:
    """Text safe to store and show, at most ``limit`` characters, and what was done to it."""
    flags: list[str] = []
    if len(text) > limit * 4 + 64:  # do no work on what we will throw away anyway
        text = text[: limit * 4 + 64]
    text = "".join(ch for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF)  # lone surrogates cannot be stored
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch == "\n":
            kept.append(ch)
        elif category in ("Zl", "Zp"):
            kept.append("\n")
        elif ch == "\t":
            kept.append(" ")
        elif category in ("Cc", "Cs", "Co", "Cn") or (category == "Cf" and ch not in KEEP_FORMAT):
            continue  # controls, bidi overrides, zero-width spaces, private use, unassigned
        else:
            kept.append(ch)
    cleaned = "".join(kept)
    if cleaned != text:
        flags.append("control_chars")
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in cleaned.split("\n"))).strip()
    if re.search(r"<[A-Za-z/!]|\]\(|[*_`]{2}", cleaned):
        flags.append("markup")  # kept as literal text: shown escaped, never parsed
    if len(cleaned) > limit:
        flags.append("truncated")
        cleaned = cleaned[: max(0, limit - 1)].rstrip() + "…"
    return cleaned, flags


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_or(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _count(value: object) -> int | None:
    return value if _is_int(value) and 0 <= value < 2**53 else None


def _short(value: object) -> str:
    return value if isinstance(value, str) and len(value) <= MAX_FILE_ID and value.isprintable() else ""


def _file_id(body: dict[str, Any]) -> bool:
    return bool(_short(body.get("file_id")))


# ---- state kept per chat ------------------------------------------------------------------------


class FloodGate:
    """At most ``limit`` messages per chat in any ``window_s``. ``admit`` answers "ok", "warn"
    (the first message over the limit: acknowledge it once) or "drop" (the rest, silently)."""

    def __init__(self, limit: int, window_s: float = 60.0, max_chats: int = 100_000) -> None:
        self.limit, self.window_s, self.max_chats = limit, window_s, max_chats
        self.dropped = 0
        self._seen: dict[int, deque[float]] = {}
        self._warned: set[int] = set()

    def admit(self, chat_id: int, now: float) -> Literal["ok", "warn", "drop"]:
        times = self._seen.pop(chat_id, None) or deque()
        self._seen[chat_id] = times  # most recently active last, so the oldest chat is evicted first
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(self._seen) > self.max_chats:
            oldest = next(iter(self._seen))
            del self._seen[oldest]
            self._warned.discard(oldest)
        if len(times) < self.limit:
            times.append(now)
            self._warned.discard(chat_id)
            return "ok"
        self.dropped += 1
        if chat_id in self._warned:
            return "drop"
        self._warned.add(chat_id)
        return "warn"


class Pacer:
    """At most one courtesy reply of a kind per chat per ``interval_s`` (a photo album is one ack)."""

    def __init__(self, interval_s: float, max_entries: int = 100_000) -> None:
        self.interval_s, self.max_entries = interval_s, max_entries
        self._last: dict[tuple[int, str], float] = {}

    def due(self, chat_id: int, kind: str, now: float) -> bool:
        key = (chat_id, kind)
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last.pop(key, None)
        self._last[key] = now
        if len(self._last) > self.max_entries:
            del self._last[next(iter(self._last))]
        return True


class ChatState(msgspec.Struct, kw_only=True):
    language: Language
    first_name: str = ""
    number: str = ""  # verified E.164 from the citizen's own contact
    raw_number: str = ""
    incident_id: str = ""
    last_wall: float = 0.0  # the citizen's last report item for that incident


class Chats:
    """What the bot remembers per chat, bounded (the least recently active chat is forgotten)."""

    def __init__(self, default_language: Language = "ru", max_chats: int = 100_000) -> None:
        self.default_language, self.max_chats = default_language, max_chats
        self._chats: dict[int, ChatState] = {}

    def seen(self, sender: Sender) -> ChatState:
        """The chat's state, updated with what this message says about the sender."""
        state = self._chats.pop(sender.chat_id, None) or ChatState(language=self.default_language)
        self._chats[sender.chat_id] = state
        if len(self._chats) > self.max_chats:
            del self._chats[next(iter(self._chats))]
        if sender.language is not None:
            state.language = sender.language
        if sender.first_name:
            state.first_name = sender.first_name
        return state

    def get(self, chat_id: int) -> ChatState | None:
        return self._chats.get(chat_id)

    def remember(self, chat_id: int, state: ChatState) -> None:
        self._chats.setdefault(chat_id, state)

    def __len__(self) -> int:
        return len(self._chats)


def reporter_of(chat_id: int) -> str:
    return f"tg:{chat_id}"


def chat_of(reporter: str) -> int | None:
    """The chat id in a ``tg:<chat>`` reporter, else None."""
    match = re.fullmatch(r"tg:(-?\d{1,20})", reporter)
    return int(match.group(1)) if match else None


# ---- what we say to citizens --------------------------------------------------------------------
# Only these fixed texts and a dispatcher's own words ever reach a citizen: no officer names, units,
# categories or other incidents. Everything is sent as plain text (no parse_mode).

TEXTS: dict[str, dict[Language, str]] = {
    "greeting": {
        "kk": "Сәлеметсіз бе! Бұл — 102 полиция боты. Не болғанын жазыңыз, фото, бейне, дауыстық хабарлама "
              "немесе орналасқан жеріңізді жіберіңіз. Сізге қайта қоңырау шалу үшін төмендегі батырмамен "
              "телефон нөміріңізді жіберіңіз. Өмірге қауіп төнсе, 102 немесе 112 нөміріне қоңырау шалыңыз.",
        "ru": "Здравствуйте! Это бот полиции 102. Опишите, что случилось: напишите сообщение, отправьте фото, "
              "видео, голосовое сообщение или место. Чтобы мы могли перезвонить, отправьте свой номер телефона "
              "кнопкой ниже. Если жизнь в опасности, звоните 102 или 112.",
        "en": "Hello! This is the police 102 bot. Tell us what happened: write a message, send a photo, video, "
              "voice note or your location. So that we can call you back, share your phone number with the "
              "button below. If a life is in danger, call 102 or 112.",
    },
    "help": {
        "kk": "Не болғанын жазыңыз немесе фото, бейне, дауыстық хабарлама, орналасқан жеріңізді жіберіңіз. "
              "Шұғыл жағдайда 102 немесе 112 нөміріне қоңырау шалыңыз.",
        "ru": "Напишите, что случилось, или отправьте фото, видео, голосовое сообщение, место. "
              "В срочном случае звоните 102 или 112.",
        "en": "Write what happened, or send a photo, video, voice note or location. "
              "In an emergency call 102 or 112.",
    },
    "share_phone": {"kk": "📞 Нөмірімді жіберу", "ru": "📞 Отправить мой номер", "en": "📞 Share my number"},
    "share_location": {"kk": "📍 Орналасқан жерімді жіберу", "ru": "📍 Отправить моё место",
                       "en": "📍 Share my location"},
    "registered": {
        "kk": "Хабарламаңыз қабылданды және 102 кезекшісіне жіберілді. Өтініш нөмірі: {ref}. "
              "Әрі қарай жіберген барлық нәрсе осы өтінішке қосылады.",
        "ru": "Ваше сообщение принято и передано дежурному 102. Номер обращения: {ref}. "
              "Всё, что вы отправите дальше, будет добавлено к нему.",
        "en": "Your report has been received and passed to the 102 duty officer. Report number: {ref}. "
              "Anything you send next will be added to it.",
    },
    "added": {"kk": "Өтінішіңізге қосылды.", "ru": "Добавлено к вашему обращению.", "en": "Added to your report."},
    "phone_saved": {
        "kk": "Рахмет, нөміріңіз сақталды: {number}.",
        "ru": "Спасибо, ваш номер сохранён: {number}.",
        "en": "Thank you, your number is saved: {number}.",
    },
    "phone_unusable": {
        "kk": "Нөміріңізді тани алмадық. Егер шұғыл болса, 102 нөміріне қоңырау шалыңыз.",
        "ru": "Не удалось распознать ваш номер. Если срочно, звоните 102.",
        "en": "We could not read your number. If it is urgent, call 102.",
    },
    "contact_refused": {
        "kk": "Тек өз нөміріңізді «Нөмірімді жіберу» батырмасымен жібере аласыз. Басқа адамның байланысы "
              "сіздің нөміріңіз ретінде қабылданбайды.",
        "ru": "Отправить можно только свой номер — кнопкой «Отправить мой номер». Чужой контакт не принят "
              "как ваш номер.",
        "en": "You can only share your own number, with the \"Share my number\" button. Someone else's "
              "contact is not taken as your number.",
    },
    "bad_location": {
        "kk": "Орналасқан жерді оқи алмадық. Төмендегі батырмамен қайта жіберіңіз.",
        "ru": "Не удалось прочитать местоположение. Отправьте его ещё раз кнопкой ниже.",
        "en": "We could not read that location. Please send it again with the button below.",
    },
    "unsupported": {
        "kk": "Мен мәтінді, фото, бейне, дауыстық хабарламаны, орналасқан жерді және өз нөміріңізді қабылдаймын.",
        "ru": "Я принимаю текст, фото, видео, голосовые сообщения, местоположение и ваш номер телефона.",
        "en": "I accept text, photos, videos, voice notes, locations and your own phone number.",
    },
    "edited": {
        "kk": "Өзгертілген хабарламалар өңделмейді — жаңасын жіберіңіз.",
        "ru": "Исправления сообщений не обрабатываются — отправьте новое сообщение.",
        "en": "Edited messages are not processed — please send a new message.",
    },
    "truncated": {
        "kk": "Хабарлама тым ұзын: тек алғашқы {limit} таңба қабылданды.",
        "ru": "Сообщение слишком длинное: принято только первые {limit} символов.",
        "en": "Your message was too long: only the first {limit} characters were kept.",
    },
    "flood": {
        "kk": "Хабарламалар тым көп. Бір минут күтіңіз — кейбір хабарламалар қабылданбады. "
              "Шұғыл болса, 102 нөміріне қоңырау шалыңыз.",
        "ru": "Слишком много сообщений. Подождите минуту — часть сообщений не принята. Если срочно, звоните 102.",
        "en": "Too many messages. Please wait a minute — some messages were not accepted. "
              "If it is urgent, call 102.",
    },
    "unavailable": {
        "kk": "Техникалық ақау салдарынан хабарламаңызды қабылдай алмадық. 102 нөміріне қоңырау шалыңыз.",
        "ru": "Не удалось принять сообщение из-за технической ошибки. Пожалуйста, позвоните 102.",
        "en": "We could not accept your message because of a technical fault. Please call 102.",
    },
    "status_assigned": {
        "kk": "Өтінішіңізге полиция жасағы тағайындалды.",
        "ru": "По вашему обращению назначен наряд полиции.",
        "en": "A police unit has been assigned to your report.",
    },
    "status_en_route": {
        "kk": "Полиция жасағы сізге шықты.",
        "ru": "Наряд полиции выехал к вам.",
        "en": "Police are on the way.",
    },
    "status_on_scene": {
        "kk": "Полиция жасағы оқиға орнына келді.",
        "ru": "Наряд полиции прибыл на место.",
        "en": "Police have arrived at the scene.",
    },
    "status_closed": {
        "kk": "Өтінішіңіз жабылды. Рахмет! Жаңа оқиға туралы хабарлау үшін осында жазыңыз.",
        "ru": "Ваше обращение закрыто. Спасибо! Чтобы сообщить о новом происшествии, просто напишите сюда.",
        "en": "Your report is closed. Thank you! To report something new, just write here.",
    },
    "dispatcher": {
        "kk": "102 кезекшісінің хабарламасы:\n{text}",
        "ru": "Сообщение от дежурного 102:\n{text}",
        "en": "Message from the 102 duty officer:\n{text}",
    },
}


def text(key: str, language: str, **values: str | int) -> str:
    """A citizen-facing text in ``language`` (Russian when we do not speak it)."""
    texts = TEXTS[key]
    chosen = texts.get(language, texts["ru"])  # type: ignore[call-overload]
    return chosen.format(**values) if values else chosen


def share_keyboard(language: str, *, phone: bool = True) -> dict[str, Any]:
    """The reply keyboard offering the citizen's own number (request_contact) and location."""
    rows = [[{"text": text("share_location", language), "request_location": True}]]
    if phone:
        rows.insert(0, [{"text": text("share_phone", language), "request_contact": True}])
    return {"keyboard": rows, "resize_keyboard": True, "is_persistent": True}


def notice(kind: str, data: dict[str, Any], language: str, max_text: int = 2000) -> str | None:
    """What to tell the citizen about one timeline event of their incident, or None.

    Only the new status and a dispatcher's reply text are used; every other field (actor, units,
    notes) stays inside the centre."""
    if kind == "status_changed" and data.get("status") in NOTICE_STATUSES:
        return text(f"status_{data['status']}", language)
    if kind == "citizen_replied" and isinstance(data.get("text"), str):
        body = _fit_utf16(sanitise(data["text"], max_text)[0], MAX_NOTICE_UTF16)
        return text("dispatcher", language, text=body) if body else None
    return None


def _fit_utf16(body: str, limit: int) -> str:
    """Cut ``body`` to ``limit`` UTF-16 units (how Telegram counts its 4096), marking the cut."""
    if len(body.encode("utf-16-le")) // 2 <= limit:
        return body
    while len(body.encode("utf-16-le")) // 2 > limit - 1:
        body = body[: len(body) - max(1, (len(body.encode("utf-16-le")) // 2 - limit) // 2)]
    return body.rstrip() + "…"
