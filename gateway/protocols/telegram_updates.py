"""The "102" Telegram bot's citizen side as pure code: an update in, a typed report item out.

Theory of operation: ``parse_update(update, max_text)`` takes one update exactly as ``getUpdates``
returns it (a dict decoded from JSON, trusted for nothing) and returns one item: a command
(``Start``, ``Help``), a report item (``Text``, ``Place``, ``Media``), a shared ``Contact``, or
``Ignored`` with a reason code and, when the sender can safely be answered, the key of a polite
reply. It never raises. Text is sanitised for storage and display (NFC, no control or bidi
characters, no lone surrogates, bounded length); markup is kept as literal text because nothing
we send to a citizen is ever parsed as HTML or Markdown.

What the bot keeps per chat (``FloodGate``, ``Pacer``, ``Chats``) is in ``telegram_chats``; what it
says to citizens (``TEXTS``, ``text``, ``notice``) is in ``telegram_replies``.

Forged updates are never answered: a private message whose sender is not the chat (or is a bot)
could point our replies at someone else's chat.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, TypeGuard

import msgspec

from gateway.protocols.ani import e164
from gateway.protocols.text import repair

Language = Literal["kk", "ru", "en"]
LANGUAGES: tuple[Language, ...] = ("kk", "ru", "en")
MediaKind = Literal["photo", "voice", "video", "video_note", "audio", "animation", "document"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("photo", "voice", "video", "video_note", "audio", "animation", "document")
COMMAND_RE = re.compile(r"^/(start|help)(?:@[A-Za-z0-9_]{1,64})?(?:\s|$)", re.IGNORECASE)
MAX_FILE_ID = 256
MAX_NAME = 64
MAX_ACCURACY_M = 1500.0  # Telegram's range for horizontal_accuracy


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
    """Text safe to store and show (``text.repair``), at most ``limit`` characters, and what was done to it."""
    if len(text) > limit * 4 + 64:  # do no work on what we will throw away anyway
        text = text[: limit * 4 + 64]
    cleaned, flags = repair(text, lines=True)
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
