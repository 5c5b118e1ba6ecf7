"""The residents' sign-up bot, run: long-poll ``getUpdates``, feed ``SignupBot``, apply, reply.

Theory of operation: one Trio task polls ``getUpdates`` with the offset one past the last update
seen (which tells Telegram to drop everything before it) and a long-poll timeout. The offset moves
before an update is handled, so an update that somehow breaks handling is never fetched again.
Each batch is handled concurrently across chats and in order within a chat. For each update the
pure ``SignupBot`` decides; subscription changes go to the store callbacks first, and only then is
the resident told "subscribed" — if the store fails, they are told to try later instead.

The Bot API is spoken directly over httpx (the HTTP library python-telegram-bot itself uses), in
Trio: updates reach the pure core as the JSON dicts Telegram sent, with no round trip through
library objects that could reject a field they do not know.

The bot shares its token's flood limit (about 30 messages/s) with the warnings driver, so its
messages are paced at ``replies_per_second`` (default 5): run the driver at 25/s alongside it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import trio

from gateway.errors import ChannelError, GatewayError
from gateway.protocols.telegram_signup import (
    TEXTS,
    Answer,
    Change,
    Language,
    Reply,
    Send,
    SignupBot,
    Subscribe,
    api_call,
    bot_commands,
)
from gateway.settings.channels import TelegramConfig

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
MAX_BACKOFF_S = 30.0
REPLY_ATTEMPTS = 3
SubscribeCallback = Callable[[int, str | None, float | None, float | None, Language], Awaitable[None] | None]
UnsubscribeCallback = Callable[[int], Awaitable[None] | None]


class BotApiError(ChannelError):
    """A Bot API call failed: ``code`` is Telegram's error_code (0 for no answer at all)."""

    def __init__(self, method: str, code: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(f"telegram {method}: {code} {description}")
        self.code, self.description, self.retry_after = code, description, retry_after

    @property
    def fatal(self) -> bool:
        """The token is wrong: nothing will work until an operator fixes the configuration."""
        return self.code in (401, 404)

    @property
    def transient(self) -> bool:
        return self.code in (0, 429) or self.code >= 500


class BotApi:
    """A minimal Bot API client over one httpx client (owned by the caller)."""

    def __init__(self, client: httpx.AsyncClient, config: TelegramConfig) -> None:
        self._client, self._token = client, config.bot_token
        self._base = f"{config.api_base_url}{config.bot_token}/"

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *,
                   read_timeout_s: float | None = None) -> Any:
        """The ``result`` of one call; raises ``BotApiError`` for any failure."""
        timeout = httpx.Timeout(10.0, read=read_timeout_s) if read_timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        try:
            response = await self._client.post(self._base + method, json=dict(params or {}), timeout=timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            detail = f"{type(exc).__name__}: {exc}".replace(self._token, "<token>")
            raise BotApiError(method, 0, detail) from exc
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        body = body if isinstance(body, dict) else {}
        parameters = body.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        raise BotApiError(method, int(body.get("error_code") or response.status_code), str(body.get("description")),
                          float(retry_after) if isinstance(retry_after, int | float) else None)


async def run_signup_bot(config: TelegramConfig, *, zones: Mapping[str, Mapping[str, str]],
                         zone_of: Callable[[float, float], str | None], on_subscribe: SubscribeCallback,
                         on_unsubscribe: UnsubscribeCallback, default_language: Language = "ru",
                         subscriptions: Mapping[int, Subscribe] | None = None, poll_timeout_s: float = 25.0,
                         replies_per_second: float = 5.0, concurrency: int = 8,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the sign-up bot until cancelled.

    ``zones`` maps zone name → {language: title} (keyboard order); ``zone_of`` maps a shared
    location to a zone or None. ``on_subscribe(chat_id, zone, lat, lon, language)`` (zone None:
    every district; lat/lon None unless the resident shared a location) replaces the chat's
    subscription; ``on_unsubscribe(chat_id)`` removes it. Both may be sync or async; a
    ``GatewayError`` from them is reported to the resident as "try later", anything else propagates.
    ``subscriptions`` seeds what /zones shows. ``started()`` once Telegram accepted the token
    (network failures before that are retried). Raises ``ChannelError`` if the token is rejected.
    """
    signup = SignupBot(zones, zone_of, default_language=default_language, subscriptions=subscriptions)
    limits = httpx.Limits(max_connections=concurrency + 1)
    async with httpx.AsyncClient(timeout=config.request_timeout_s, limits=limits) as client:
        runner = _Runner(BotApi(client, config), signup, on_subscribe, on_unsubscribe, replies_per_second,
                         concurrency)
        await runner.start()
        task_status.started()
        await runner.poll(poll_timeout_s)


class _Runner:
    def __init__(self, api: BotApi, signup: SignupBot, on_subscribe: SubscribeCallback,
                 on_unsubscribe: UnsubscribeCallback, replies_per_second: float, concurrency: int) -> None:
        self.api, self.signup = api, signup
        self.on_subscribe, self.on_unsubscribe = on_subscribe, on_unsubscribe
        self.interval = 1.0 / replies_per_second
        self.next_slot = 0.0
        self.limiter = trio.CapacityLimiter(concurrency)

    async def start(self) -> None:
        backoff = _Backoff()
        while True:
            try:
                me = await self.api.call("getMe")
                # getUpdates answers 409 while a webhook is set; this bot owns its token.
                await self.api.call("deleteWebhook", {"drop_pending_updates": False})
                for language, commands in bot_commands():
                    params: dict[str, Any] = {"commands": commands}
                    if language:
                        params["language_code"] = language
                    await self.api.call("setMyCommands", params)
                break
            except BotApiError as exc:
                if exc.fatal:
                    raise
                log.warning("telegram bot: cannot start yet: %s", exc)
                await trio.sleep(backoff.next(exc.retry_after))
        self.signup.bot_username = str(me.get("username", "")) if isinstance(me, dict) else ""
        log.info("telegram bot @%s: polling for residents", self.signup.bot_username)

    async def poll(self, poll_timeout_s: float) -> None:
        offset = 0
        poll_s = max(1, round(poll_timeout_s))  # 0 would turn long polling into a busy loop
        backoff = _Backoff()
        while True:
            try:
                updates = await self.api.call(
                    "getUpdates", {"offset": offset, "timeout": poll_s, "allowed_updates": ALLOWED_UPDATES},
                    read_timeout_s=poll_timeout_s + 10)
            except BotApiError as exc:
                if exc.fatal:
                    raise
                if exc.code == 409:
                    log.warning("telegram bot: another getUpdates consumer is running on this token")
                else:
                    log.warning("telegram bot: getUpdates failed: %s", exc)
                await trio.sleep(backoff.next(exc.retry_after))
                continue
            backoff.reset()
            by_chat: dict[object, list[dict[str, Any]]] = {}
            for update in updates if isinstance(updates, list) else []:
                if isinstance(update, dict) and isinstance(update.get("update_id"), int):
                    offset = max(offset, update["update_id"] + 1)
                    by_chat.setdefault(_chat_key(update), []).append(update)
            async with trio.open_nursery() as nursery:
                for chat_updates in by_chat.values():
                    nursery.start_soon(self.handle_in_order, chat_updates)

    async def handle_in_order(self, updates: list[dict[str, Any]]) -> None:
        async with self.limiter:
            for update in updates:
                await self.handle(update)

    async def handle(self, update: dict[str, Any]) -> None:
        outcome = self.signup.handle(update, now=trio.current_time())
        replies: list[Reply] = outcome.replies
        if not await self.apply(outcome.changes):
            # Still answer the button (it spins until answered), but promise nothing.
            replies = [r for r in replies if isinstance(r, Answer)]
            change = outcome.changes[0]
            language = change.language if isinstance(change, Subscribe) else self.signup.default_language
            replies.append(Send(chat_id=change.chat_id, text=TEXTS["unavailable"][language]))
        for reply in replies:
            await self.reply(reply)

    async def apply(self, changes: list[Change]) -> bool:
        for change in changes:
            try:
                if isinstance(change, Subscribe):
                    result = self.on_subscribe(change.chat_id, change.zone, change.lat, change.lon, change.language)
                else:
                    result = self.on_unsubscribe(change.chat_id)
                if inspect.isawaitable(result):
                    await result
            except GatewayError as exc:
                log.error("telegram bot: could not record %s: %s", change, exc)
                return False
            self.signup.applied(change)
        return True

    async def reply(self, reply: Reply) -> None:
        method, params = api_call(reply)
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            if not isinstance(reply, Answer):  # messages count against the bot's flood limit; answers do not
                await self.take_slot()
            try:
                await self.api.call(method, params)
                return
            except BotApiError as exc:
                if exc.fatal:
                    raise
                if not exc.transient or attempt == REPLY_ATTEMPTS:
                    log.info("telegram bot: %s dropped: %s", method, exc)
                    return
                await trio.sleep(exc.retry_after if exc.retry_after is not None else attempt)

    async def take_slot(self) -> None:
        slot = max(trio.current_time(), self.next_slot)
        self.next_slot = slot + self.interval
        await trio.sleep_until(slot)


class _Backoff:
    def __init__(self) -> None:
        self.delay = 0.5

    def next(self, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return retry_after
        self.delay = min(MAX_BACKOFF_S, self.delay * 2)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.5


def _chat_key(update: dict[str, Any]) -> object:
    """The chat an update belongs to, for ordering; malformed updates each get their own key."""
    for kind in ("message", "edited_message", "my_chat_member"):
        body = update.get(kind)
        if isinstance(body, dict) and isinstance(body.get("chat"), dict):
            return body["chat"].get("id")
    query = update.get("callback_query")
    if isinstance(query, dict):
        message, sender = query.get("message"), query.get("from")
        chat = message.get("chat") if isinstance(message, dict) else sender
        if isinstance(chat, dict):
            return chat.get("id")
    return ("update", update.get("update_id"))
