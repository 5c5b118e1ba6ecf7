"""Telegram push: python-telegram-bot's ``Bot`` hosted in Trio through trio-asyncio.

Theory of operation: ``open_telegram`` owns an asyncio loop (trio-asyncio) and one HTTP
connection pool; ``deliver`` may be called from any Trio task and runs each Bot API call on that
loop through the reference it keeps, never through a context variable of another task.

Pacing is ours, in Trio: Telegram lets a bot send about 30 messages per second in all and about
one per second to one chat, and answers 429 with ``retry_after`` beyond that — for the whole bot,
not for the one chat. So every send takes the next slot of a driver-wide schedule spaced
``1 / max_per_second`` apart (no burst: the provider counts any one-second window), after the
chat's own slot ``per_chat_interval_s`` after its previous message. A 429 pauses the schedule
for ``retry_after``; messages that come up while paused return at once as retryable with the
time left, so the engine can reschedule or fail over instead of holding a batch open.

Long messages: Telegram takes at most 4096 characters after entity parsing (counted in UTF-16
units). A longer warning is split — at a paragraph, line or word break where possible — into
parts marked ``[k/n]`` and sent in order; a warning is never cut short. If a later part fails,
the receipt is that failure, so a retry sends the earlier parts again: a resident may see a part
twice but never misses one.

Acknowledgement button: a message whose ``options`` carry ``ack_button`` (the callback data, 1-64
bytes) and ``ack_label`` (the button's text) gets an inline keyboard with that one button on its
first part; ``channels.telegram_callbacks`` receives the presses. One without the other, or data
over 64 bytes, fails the message (not retryable) rather than sending a warning nobody can confirm.

Telegram reports no delivery receipts to bots: "sent" is final and ``on_update`` is never called.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import logging
import re
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import trio
import trio_asyncio
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from channels.base import ChannelHealth, Message, Receipt, UpdateCallback, failed
from gateway.errors import ChannelError
from gateway.settings.channels import TelegramConfig

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, and a Bot API URL contains the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)
# PTB 22 warns, from inside RetryAfter itself, that retry_after will become a timedelta; we take both.
warnings.filterwarnings("ignore", message=r".*`retry_after` will be of type", category=PTBDeprecationWarning)

TEXT_LIMIT = 4096
CHAT_ID_RE = re.compile(r"^-?\d{1,20}$")
USERNAME_RE = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{3,31}$")
PART_MARK_RESERVE = 12  # room for "\n[99/99]" and a little slack
CALLBACK_DATA_LIMIT = 64  # bytes, Telegram's limit for a button's callback_data
T = TypeVar("T")
ChatTarget = int | str


# ---- pure helpers ------------------------------------------------------------------------------


def parse_address(address: str) -> ChatTarget | None:
    """A chat id (``"123"``, ``"-100…"``) as int, an ``@channel`` as str, anything else None."""
    address = address.strip()
    if CHAT_ID_RE.match(address):
        return int(address)
    if USERNAME_RE.match(address):
        return address
    return None


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, budget: int) -> int:
    """The longest prefix (in code points) of ``text`` that is at most ``budget`` UTF-16 units."""
    units = 0
    for i, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > budget:
            return i
    return len(text)


def _split(text: str, first_budget: int, budget: int) -> list[str]:
    chunks: list[str] = []
    while utf16_len(text) > (budget if chunks else first_budget):
        cut = _fit(text, budget if chunks else first_budget)
        window = text[:cut]
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at > cut // 2:  # a break in the second half; otherwise a hard cut wastes less
                chunks.append(text[:at].rstrip())
                text = text[at + len(sep):].lstrip()
                break
        else:
            chunks.append(window)
            text = text[cut:]
    chunks.append(text)
    return chunks


def render_parts(subject: str, body: str, *, parse_mode: str = "HTML", limit: int = TEXT_LIMIT,
                 body_is_html: bool = False) -> list[str]:
    """The texts to send for one message, in order: one if it fits, else parts marked ``[k/n]``.

    The subject (bold in HTML mode) heads the first part. Text is escaped for HTML parse mode
    unless ``body_is_html`` (a template already rendered it with escaped values); lengths are
    counted on the text as Telegram sees it after entity parsing.
    """
    subject, body = subject.strip(), body.strip()
    plain = parse_mode != "HTML" or body_is_html
    escape = (lambda s: s) if plain else (lambda s: html.escape(s, quote=False))
    head = (f"<b>{escape(subject)}</b>" if parse_mode == "HTML" else subject) if subject else ""
    head_len = utf16_len(subject) + 2 if subject else 0
    if not body:
        return [head] if head else []
    if head_len + utf16_len(body) <= limit:
        return [f"{head}\n\n{escape(body)}" if head else escape(body)]
    budget = limit - PART_MARK_RESERVE
    chunks = _split(body, max(budget // 2, budget - head_len), budget)
    if head_len > budget // 2:  # an absurdly long subject travels as a part of its own
        chunks = [*_split(subject, budget, budget), *chunks]
        head = ""
    parts = [escape(chunk) for chunk in chunks]
    if head:
        parts[0] = f"{head}\n\n{parts[0]}"
    return [f"{part}\n[{k}/{len(parts)}]" for k, part in enumerate(parts, 1)]


def ack_button(options: Mapping[str, str]) -> tuple[str, str] | None:
    """``(callback data, label)`` of the acknowledgement button a message asks for, or None;
    raises ValueError saying what is wrong with ``ack_button``/``ack_label``."""
    data, label = options.get("ack_button", ""), options.get("ack_label", "").strip()
    if not data and not label:
        return None
    if not data or not label:
        raise ValueError("ack_button and ack_label go together")
    if len(data.encode("utf-8")) > CALLBACK_DATA_LIMIT:
        raise ValueError(f"ack_button: at most {CALLBACK_DATA_LIMIT} bytes of callback data")
    return data, label


def _keyboard(button: tuple[str, str] | None) -> InlineKeyboardMarkup | None:
    if button is None:
        return None
    data, label = button
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)]])


def _retry_after_s(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def classify(exc: TelegramError) -> tuple[str, bool]:
    """``(error, retryable)`` for a Bot API failure other than 429 (the one place that maps them)."""
    if isinstance(exc, ChatMigrated):
        return f"chat migrated to supergroup {exc.new_chat_id}", False
    if isinstance(exc, Forbidden):  # blocked by the user, kicked from the group, not in the channel
        return exc.message, False
    if isinstance(exc, InvalidToken):  # every message fails until an operator fixes the token
        return f"bot token rejected: {exc.message}", True
    if isinstance(exc, BadRequest):  # before NetworkError: BadRequest subclasses it
        return exc.message, False
    if isinstance(exc, TimedOut):  # the message may have gone out: a retry may duplicate it
        return f"timed out: {exc.message}", True
    if isinstance(exc, NetworkError):
        return f"network: {exc.message}", True
    return exc.message, True


# ---- the driver --------------------------------------------------------------------------------


class TelegramChannel:
    """The ``telegram`` channel; made by ``open_telegram``, which owns its connections."""

    name = "telegram"

    def __init__(self, config: TelegramConfig, bot: Bot, loop: trio_asyncio.TrioEventLoop) -> None:
        self.max_per_second = config.max_per_second
        self.max_batch = config.max_batch
        self.public_channel = config.public_channel
        self._config, self._bot, self._loop = config, bot, loop
        self._limiter = trio.CapacityLimiter(config.concurrency)
        self._interval = 1.0 / config.max_per_second
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._chat_next: dict[ChatTarget, float] = {}

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        """One receipt per message, in order; never raises for a delivery failure."""
        receipts: list[Receipt | None] = [None] * len(messages)
        async with trio.open_nursery() as nursery:
            for i, message in enumerate(messages):
                target = parse_address(message.address)
                if target is None:
                    receipts[i] = failed(message, f"not a chat id or @channel: {message.address!r}", retryable=False)
                    continue
                parts = render_parts(message.subject, message.body, parse_mode=self._config.parse_mode,
                                     body_is_html=message.options.get("format") == "html")
                if not parts:
                    receipts[i] = failed(message, "empty message", retryable=False)
                    continue
                try:
                    keyboard = _keyboard(ack_button(message.options))
                except ValueError as exc:
                    log.error("telegram: %s not sent: %s", message.idempotency_key, exc)
                    receipts[i] = failed(message, str(exc), retryable=False)
                    continue
                # Chat slots are taken here, in batch order, so one chat's messages keep their order.
                nursery.start_soon(self._send, message, target, parts, self._chat_slots(target, len(parts)),
                                   receipts, i, keyboard)
        self._forget_idle_chats()
        return [receipt for receipt in receipts if receipt is not None]

    async def health(self) -> ChannelHealth:
        """``getMe``: up if Telegram accepts the token."""
        try:
            me = await self._call(self._bot.get_me())
        except TelegramError as exc:
            error, _ = classify(exc)
            return ChannelHealth(up=False, detail=self._redact(error))
        paused = self._paused_until - trio.current_time()
        return ChannelHealth(up=True, detail=f"@{me.username}" + (f"; flood wait {paused:.0f} s" if paused > 0 else ""))

    async def _send(self, message: Message, target: ChatTarget, parts: list[str], slots: list[float],
                    receipts: list[Receipt | None], index: int, keyboard: InlineKeyboardMarkup | None) -> None:
        ids: list[str] = []
        chat_id: ChatTarget = target
        for k, (text, slot) in enumerate(zip(parts, slots, strict=True), 1):
            where = f"part {k}/{len(parts)}: " if len(parts) > 1 else ""
            await trio.sleep_until(slot)
            async with self._limiter:
                if (wait := await self._take_slot()) is not None:
                    receipts[index] = failed(message, f"{where}flood control: bot paused", retryable=True,
                                             retry_after_s=wait)
                    return
                try:
                    sent = await self._call(self._bot.send_message(
                        chat_id=target, text=text, parse_mode=self._config.parse_mode or None,
                        reply_markup=keyboard if k == 1 else None))
                except RetryAfter as exc:
                    seconds = _retry_after_s(exc)
                    self._pause(seconds)
                    receipts[index] = failed(message, f"{where}429 too many requests", retryable=True,
                                             retry_after_s=seconds)
                    return
                except TelegramError as exc:
                    error, retryable = classify(exc)
                    receipts[index] = failed(message, self._redact(where + error), retryable=retryable)
                    return
            chat_id = sent.chat.id
            ids.append(str(sent.message_id))
        receipts[index] = Receipt(idempotency_key=message.idempotency_key, state="sent",
                                  provider_id=f"{chat_id}:{','.join(ids)}")

    async def _call(self, coro: Awaitable[T]) -> T:
        return await self._loop.run_aio_coroutine(coro)  # type: ignore[no-any-return]

    def _chat_slots(self, target: ChatTarget, n: int) -> list[float]:
        now = trio.current_time()
        slots = []
        for _ in range(n):
            slot = max(now, self._chat_next.get(target, now))
            self._chat_next[target] = slot + self._config.per_chat_interval_s
            slots.append(slot)
        return slots

    async def _take_slot(self) -> float | None:
        """Wait for this send's place in the bot-wide schedule; the pause left if flood-waiting."""
        now = trio.current_time()
        if self._paused_until > now:
            return self._paused_until - now
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        await trio.sleep_until(slot)
        now = trio.current_time()
        return self._paused_until - now if self._paused_until > now else None

    def _pause(self, seconds: float) -> None:
        until = trio.current_time() + seconds
        if until > self._paused_until:
            log.warning("telegram: 429 flood control, pausing all sends for %.1f s", seconds)
            self._paused_until = until
        self._next_slot = max(self._next_slot, self._paused_until)

    def _forget_idle_chats(self) -> None:
        if len(self._chat_next) > 1000:
            now = trio.current_time()
            self._chat_next = {chat: t for chat, t in self._chat_next.items() if t > now}

    def _redact(self, text: str) -> str:
        return text.replace(self._config.bot_token, "<token>") if self._config.bot_token else text


def _bind_anyio_to_trio_asyncio() -> None:
    """Let httpx (through anyio) find the trio-asyncio loop.

    trio-asyncio teaches ``asyncio.get_running_loop`` about its loop when it is imported, but
    anyio's asyncio backend binds the function at its own import: if that came first (pytest's
    anyio plugin does it), every request fails with "no running event loop". Point it at the
    taught function, which behaves exactly as the original outside trio-asyncio.
    """
    backend = sys.modules.get("anyio._backends._asyncio")
    if backend is not None and backend.get_running_loop is not asyncio.get_running_loop:
        backend.get_running_loop = asyncio.get_running_loop  # type: ignore[attr-defined]


@asynccontextmanager
async def open_telegram(config: TelegramConfig, *, on_update: UpdateCallback | None = None
                        ) -> AsyncIterator[TelegramChannel]:
    """Open the Telegram channel: an asyncio loop inside Trio and a connection pool, closed on exit.

    Does not contact Telegram (``health`` does), so a bad token or an unreachable API does not
    stop the gateway from starting. Raises ``ChannelError`` if the token is empty.
    ``on_update`` is accepted for the common interface; Telegram has no delivery reports.
    """
    del on_update
    _bind_anyio_to_trio_asyncio()
    timeout = config.request_timeout_s
    request = HTTPXRequest(connection_pool_size=config.concurrency, read_timeout=timeout, write_timeout=timeout,
                           connect_timeout=timeout, pool_timeout=timeout)
    try:
        bot = Bot(config.bot_token, base_url=config.api_base_url, request=request, get_updates_request=request)
    except InvalidToken as exc:
        raise ChannelError("telegram: bot_token is empty") from exc
    async with trio_asyncio.open_loop() as loop:
        await loop.run_aio_coroutine(request.initialize())
        try:
            yield TelegramChannel(config, bot, loop)
        finally:
            with trio.CancelScope(shield=True):
                await loop.run_aio_coroutine(request.shutdown())


__all__ = ["TelegramChannel", "TelegramConfig", "ack_button", "classify", "open_telegram", "parse_address",
           "render_parts"]
