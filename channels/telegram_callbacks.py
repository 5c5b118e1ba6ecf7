"""Acknowledgement buttons: receive presses of the inline button the Telegram channel attaches
(``ack_button``/``ack_label`` options), let the caller decide, answer the press and remove the button.

Theory of operation: ``poll_callbacks`` long-polls ``getUpdates`` for ``callback_query`` updates
only, with the offset one past the last update seen (so Telegram drops what we fetched: an update
that breaks handling is never fetched again). Presses are handled one at a time, in order:

1. ``parse_press`` (pure) reads the query; a malformed one (no sender, no data, data over 64
   bytes) is answered with a neutral text and logged, and ``on_press`` never sees it.
2. ``on_press(data, from_user_id, from_username)`` returns the text to show. It raises
   ``AckRejected`` for data it does not recognise (forged, expired): the resident gets the neutral
   text and the button stays. Any other ``GatewayError`` (the store is down) gets "try again
   later", and the button stays so they can. Other exceptions propagate: they are bugs.
3. ``answerCallbackQuery`` with that text (the button stops spinning), then
   ``editMessageReplyMarkup`` without a markup removes the keyboard, so it cannot be pressed again.
   A press that raced the removal (a double tap) is answered with the first press's text without
   calling ``on_press`` again.

Bot API outages are retried with exponential backoff (or Telegram's ``retry_after``), a rejected
token too (at the longest interval, loudly): acknowledgements must come back by themselves once an
operator fixes the configuration, and never take the gateway down. The Bot API is spoken over
httpx in Trio through ``channels.telegram_bot.BotApi``, like the sign-up bot.

One token has one ``getUpdates`` consumer: Telegram ends the older long poll with 409 Conflict.
Run this poller or the sign-up bot on a token, not both (or let one forward callback queries to
``CallbackHandler.handle``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import trio

from channels.telegram import CALLBACK_DATA_LIMIT
from channels.telegram_bot import BotApi, BotApiError
from gateway.errors import GatewayError
from gateway.settings.channels import TelegramConfig

log = logging.getLogger(__name__)

PressCallback = Callable[[str, int, str], Awaitable[str]]
ANSWER_LIMIT = 200  # characters Telegram shows in a callback answer
ANSWER_ATTEMPTS = 3
REMEMBERED = 10_000  # answered presses kept to answer a double tap without a second on_press
MAX_BACKOFF_S = 30.0
NEUTRAL = {"kk": "Бұл батырма енді жарамсыз.", "ru": "Эта кнопка больше не действует.",
           "en": "This button is no longer valid."}
TRY_LATER = {"kk": "Қазір жазу мүмкін емес. Кейінірек қайталап көріңіз.",
             "ru": "Не удалось записать ответ. Попробуйте ещё раз позже.",
             "en": "Your answer could not be recorded. Please try again later."}


class AckRejected(GatewayError):
    """``on_press`` does not recognise the callback data (forged, expired, already closed)."""


class Press(msgspec.Struct, frozen=True, kw_only=True):
    """One button press, as much as we need of Telegram's CallbackQuery."""

    query_id: str
    data: str
    user_id: int
    username: str = ""
    language: str = ""
    chat_id: int | None = None  # with message_id: the message that carried the button
    message_id: int | None = None
    inline_message_id: str = ""


class Malformed(msgspec.Struct, frozen=True, kw_only=True):
    """A callback query we cannot act on; answered with the neutral text when it has an id."""

    query_id: str
    problem: str
    language: str = ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_press(query: object) -> Press | Malformed:
    """A ``callback_query`` object (decoded JSON) as a Press, or what is wrong with it."""
    if not isinstance(query, dict):
        return Malformed(query_id="", problem="callback_query is not an object")
    query_id = query.get("id")
    if not isinstance(query_id, str) or not query_id:
        return Malformed(query_id="", problem="callback_query without an id")
    sender = _dict(query.get("from"))
    language = _str(sender.get("language_code"))
    user_id = _int(sender.get("id"))
    if user_id is None:
        return Malformed(query_id=query_id, problem="no sender", language=language)
    data = query.get("data")
    if not isinstance(data, str) or not data:
        return Malformed(query_id=query_id, problem="no callback data", language=language)
    if len(data.encode("utf-8")) > CALLBACK_DATA_LIMIT:
        return Malformed(query_id=query_id, problem=f"callback data over {CALLBACK_DATA_LIMIT} bytes",
                         language=language)
    message = _dict(query.get("message"))
    return Press(query_id=query_id, data=data, user_id=user_id, username=_str(sender.get("username")),
                 language=language, chat_id=_int(_dict(message.get("chat")).get("id")),
                 message_id=_int(message.get("message_id")), inline_message_id=_str(query.get("inline_message_id")))


def text_for(texts: dict[str, str], language: str) -> str:
    """The text in the resident's app language: Kazakh, English, else Russian."""
    return texts.get(language[:2].lower(), texts["ru"])


def answer_params(query_id: str, text: str) -> dict[str, Any]:
    return {"callback_query_id": query_id, "text": text[:ANSWER_LIMIT]}


def remove_keyboard_params(press: Press) -> dict[str, Any] | None:
    """``editMessageReplyMarkup`` without a markup (which removes it), or None if the press names no
    message we can edit (too old: Telegram sends it as inaccessible)."""
    if press.chat_id is not None and press.message_id is not None:
        return {"chat_id": press.chat_id, "message_id": press.message_id}
    if press.inline_message_id:
        return {"inline_message_id": press.inline_message_id}
    return None


class CallbackHandler:
    """Handles callback queries one at a time (see the module doc); ``handle`` takes one update."""

    def __init__(self, api: BotApi, on_press: PressCallback) -> None:
        self._api, self._on_press = api, on_press
        self._answered: OrderedDict[tuple[object, ...], str] = OrderedDict()

    async def handle(self, update: dict[str, Any]) -> None:
        press = parse_press(update.get("callback_query"))
        if isinstance(press, Malformed):
            log.warning("telegram acks: update %s: %s", update.get("update_id"), press.problem)
            if press.query_id:
                await self._answer(press.query_id, text_for(NEUTRAL, press.language))
            return
        key = (press.chat_id, press.message_id, press.inline_message_id, press.data)
        known = self._answered.get(key) if press.chat_id is not None or press.inline_message_id else None
        if known is not None:  # a second tap before the button went away
            await self._answer(press.query_id, known)
            return
        try:
            text = await self._on_press(press.data, press.user_id, press.username)
        except AckRejected as exc:
            log.warning("telegram acks: press by user %s with data %r rejected: %s", press.user_id, press.data, exc)
            await self._answer(press.query_id, text_for(NEUTRAL, press.language))
            return
        except GatewayError as exc:
            log.error("telegram acks: could not record the press by user %s: %s", press.user_id, exc)
            await self._answer(press.query_id, text_for(TRY_LATER, press.language))
            return
        self._remember(key, text)
        await self._answer(press.query_id, text)
        params = remove_keyboard_params(press)
        if params is not None:
            await self._call("editMessageReplyMarkup", params)

    def _remember(self, key: tuple[object, ...], text: str) -> None:
        self._answered[key] = text
        while len(self._answered) > REMEMBERED:
            self._answered.popitem(last=False)

    async def _answer(self, query_id: str, text: str) -> None:
        await self._call("answerCallbackQuery", answer_params(query_id, text))

    async def _call(self, method: str, params: dict[str, Any]) -> None:
        """A few attempts for transient failures; a refusal (stale query, keyboard already gone) is logged."""
        for attempt in range(1, ANSWER_ATTEMPTS + 1):
            try:
                await self._api.call(method, params)
                return
            except BotApiError as exc:
                if not exc.transient or attempt == ANSWER_ATTEMPTS:
                    log.info("telegram acks: %s not done: %s", method, exc)
                    return
                await trio.sleep(exc.retry_after if exc.retry_after is not None else 0.5 * attempt)


class _Backoff:
    def __init__(self, first_s: float = 0.2) -> None:
        self.first_s = self.delay = first_s

    def next(self, exc: BotApiError) -> float:
        if exc.retry_after is not None:
            return exc.retry_after
        self.delay = MAX_BACKOFF_S if exc.fatal else min(MAX_BACKOFF_S, self.delay * 2)
        return self.delay

    def reset(self) -> None:
        self.delay = self.first_s


async def poll_callbacks(config: TelegramConfig, on_press: PressCallback, *, poll_timeout_s: float = 25.0,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Receive acknowledgement-button presses until cancelled (see the module doc).

    ``on_press(data, from_user_id, from_username)`` returns the text shown to the resident; it
    raises ``AckRejected`` for unknown data and another ``GatewayError`` when it cannot record the
    press now. ``started()`` after the first attempt to reach Telegram, reached or not. Never
    raises for Telegram's failures; owns its HTTP client.
    """
    async with httpx.AsyncClient(timeout=config.request_timeout_s) as client:
        api = BotApi(client, config)
        handler = CallbackHandler(api, on_press)
        backoff = _Backoff()
        try:
            await api.call("deleteWebhook", {"drop_pending_updates": False})  # getUpdates answers 409 while set
        except BotApiError as exc:
            log.warning("telegram acks: deleteWebhook failed: %s", exc)
        task_status.started()
        offset = 0
        poll_s = max(1, round(poll_timeout_s))  # 0 would make long polling a busy loop
        while True:
            try:
                updates = await api.call("getUpdates", {"offset": offset, "timeout": poll_s,
                                                        "allowed_updates": ["callback_query"]},
                                         read_timeout_s=poll_timeout_s + 10)
            except BotApiError as exc:
                level = logging.ERROR if exc.fatal else logging.WARNING
                why = "another getUpdates consumer on this token" if exc.code == 409 else str(exc)
                log.log(level, "telegram acks: getUpdates failed (%s); retrying", why)
                await trio.sleep(backoff.next(exc))
                continue
            backoff.reset()
            for update in updates if isinstance(updates, list) else []:
                if isinstance(update, dict) and _int(update.get("update_id")) is not None:
                    offset = max(offset, update["update_id"] + 1)
                    await handler.handle(update)
                else:
                    log.warning("telegram acks: malformed update skipped: %.200r", update)


__all__ = ["AckRejected", "CallbackHandler", "Malformed", "Press", "PressCallback", "parse_press", "poll_callbacks"]
