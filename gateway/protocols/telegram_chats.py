"""Per-chat state of the "102" Telegram bot, pure and with ``now`` passed in (tests need no clock).

``FloodGate`` (per-chat sliding-window limit), ``Pacer`` (at most one courtesy reply per interval)
and ``Chats`` (what we remember per chat: language, verified number, open incident), plus the
``tg:<chat>`` reporter names that tie an incident back to its chat.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Literal

import msgspec

from gateway.protocols.telegram_updates import Language, Sender


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
