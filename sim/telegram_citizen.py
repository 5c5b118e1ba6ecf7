"""Scripted citizens for the 102 bot: the Bot API updates a real Telegram app sends, fed to the stand-in.

``Citizen`` builds updates (a message, the ``request_contact`` button's own contact, someone else's
contact card, a location, a photo, a voice note) with the shapes and fields Telegram uses; nothing
is downloaded, so media are file ids only. ``play(script, inject)`` drives a list of ``Step``s
through any injector: ``TelegramSim.inject`` in-process, or ``http_injector(client, control_url)``
for a stand-in run as ``python -m sim.telegram`` (its ``/sim/updates`` endpoint).
``typical_report`` is the drill's standard citizen: /start, own number, text, location, photo, voice.
"""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
import msgspec
import trio

from sim.telegram import SentMessage, TelegramSim

Inject = Callable[[dict[str, Any]], Awaitable[object] | object]
_message_ids = itertools.count(1)
_file_ids = itertools.count(1)


class Citizen:
    """One citizen in a private chat with the bot (in private chats the chat id is the user id)."""

    def __init__(self, chat_id: int, *, first_name: str = "Айгерим", language_code: str | None = "ru") -> None:
        self.chat_id, self.first_name, self.language_code = chat_id, first_name, language_code

    def user(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.chat_id, "is_bot": False, "first_name": self.first_name}
        if self.language_code is not None:
            user["language_code"] = self.language_code
        return user

    def message(self, **content: Any) -> dict[str, Any]:
        """A ``message`` update with any content fields."""
        return {"message": {"message_id": next(_message_ids), "from": self.user(),
                            "chat": {"id": self.chat_id, "first_name": self.first_name, "type": "private"},
                            "date": int(time.time()), **content}}

    def text(self, body: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": body}
        if body.startswith("/"):
            length = len(body.split()[0].encode("utf-16-le")) // 2 if body.split() else 1
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self.message(**content)

    def own_contact(self, phone: str) -> dict[str, Any]:
        """What the ``request_contact`` button sends: the citizen's own, verified account."""
        return self.message(contact={"phone_number": phone, "first_name": self.first_name, "user_id": self.chat_id})

    def foreign_contact(self, phone: str, user_id: int | None = None) -> dict[str, Any]:
        """A contact card of someone else (``user_id`` only when that person uses Telegram)."""
        contact: dict[str, Any] = {"phone_number": phone, "first_name": "Сосед"}
        if user_id is not None:
            contact["user_id"] = user_id
        return self.message(contact=contact)

    def location(self, lat: float, lon: float, accuracy_m: float | None = None) -> dict[str, Any]:
        location: dict[str, Any] = {"latitude": lat, "longitude": lon}
        if accuracy_m is not None:
            location["horizontal_accuracy"] = accuracy_m
        return self.message(location=location)

    def photo(self, *, caption: str = "", size: int = 182_044) -> dict[str, Any]:
        """A photo as Telegram delivers it: several sizes of one picture, largest last."""
        n = next(_file_ids)
        sizes = [{"file_id": f"AgACAgIAAxkBAAIB{n}{w}", "file_unique_id": f"AQAD{n}{w}", "width": w,
                  "height": w * 3 // 4, "file_size": size * w // 1280} for w in (90, 320, 800, 1280)]
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
        return self.message(**content)

    def voice(self, *, duration: int = 7, size: int = 24_310) -> dict[str, Any]:
        n = next(_file_ids)
        return self.message(voice={"file_id": f"AwACAgIAAxkBAAIC{n}", "file_unique_id": f"AgAD{n}",
                                   "duration": duration, "mime_type": "audio/ogg", "file_size": size})


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a scripted citizen does, ``after_s`` seconds after the previous step."""

    chat_id: int
    kind: Literal["start", "text", "own_contact", "foreign_contact", "location", "photo", "voice"]
    text: str = ""
    phone: str = ""
    lat: float = 0.0
    lon: float = 0.0
    language_code: str = "ru"
    after_s: float = 0.0


def update_for(step: Step) -> dict[str, Any]:
    citizen = Citizen(step.chat_id, language_code=step.language_code)
    match step.kind:
        case "start":
            return citizen.text("/start")
        case "text":
            return citizen.text(step.text)
        case "own_contact":
            return citizen.own_contact(step.phone)
        case "foreign_contact":
            return citizen.foreign_contact(step.phone)
        case "location":
            return citizen.location(step.lat, step.lon)
        case "photo":
            return citizen.photo(caption=step.text)
        case "voice":
            return citizen.voice()
    raise AssertionError(step.kind)


def typical_report(chat_id: int, *, phone: str = "+77011234567", lat: float = 43.2381, lon: float = 76.9456,
                   text: str = "У подъезда драка, один человек лежит", language_code: str = "ru") -> list[Step]:
    """The drill's standard citizen: greets, shares their number, writes, shares location, photo, voice."""
    kinds: list[tuple[Any, dict[str, Any]]] = [
        ("start", {}), ("own_contact", {"phone": phone}), ("text", {"text": text}),
        ("location", {"lat": lat, "lon": lon}), ("photo", {}), ("voice", {})]
    return [Step(chat_id=chat_id, kind=kind, language_code=language_code, after_s=0.2, **fields)
            for kind, fields in kinds]


async def play(script: list[Step], inject: Inject) -> list[dict[str, Any]]:
    """Send each step's update through ``inject`` (sync or async) after its pause; the updates sent."""
    sent = []
    for step in script:
        await trio.sleep(step.after_s)
        update = update_for(step)
        result = inject(update)
        if inspect.isawaitable(result):
            await result
        sent.append(update)
    return sent


def http_injector(client: httpx.AsyncClient, control_url: str) -> Inject:
    """Inject through a separately running stand-in's control API (``{control_url}/updates``)."""
    async def inject(update: dict[str, Any]) -> object:
        response = await client.post(f"{control_url.rstrip('/')}/updates", json=update)
        response.raise_for_status()
        return response.json()
    return inject


async def wait_for_messages(sim: TelegramSim, chat_id: int, count: int) -> list[SentMessage]:
    """Wait until the bot has sent ``count`` messages to ``chat_id`` (bound it with a cancel scope)."""
    while len(sim.messages_to(chat_id)) < count:
        await trio.sleep(0.01)
    return sim.messages_to(chat_id)
