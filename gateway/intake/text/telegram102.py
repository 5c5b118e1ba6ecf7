"""The "102" Telegram bot: citizens report an incident in a private chat; dispatchers answer them.

Theory of operation: one Trio task long-polls ``getUpdates`` (the Bot API over httpx, exactly as
the residents' sign-up bot in channels/telegram_bot.py does; this bot needs its own token, since
a token has one ``getUpdates`` consumer). Each batch is handled concurrently across chats and in
order within a chat. The pure ``protocols.telegram_updates.parse_update`` turns an update into one item; the
per-chat ``FloodGate`` admits it or drops it (the first drop is acknowledged once); then:

  /start, /help   greeting in the citizen's language with a reply keyboard offering their own
                  number (request_contact) and their location (request_location)
  own contact     the chat's verified number becomes the incident's ANI (E.164)
  other contact   refused as ANI, noted on the open incident as ``telegram_contact_refused``
  text, location, the first one opens an incident (``desk.open``, kind ``telegram_report``);
  photo, voice... later ones, while it is open and within ``reopen_window_s`` of the last
                  one, become ``telegram_message`` / ``location_added`` / ``telegram_media``
                  events (media are kept as Telegram file ids, never downloaded)

Replays: ``getUpdates`` confirms a batch only when the next one is asked for, so a bot that stopped
after handling updates gets them again. Each update's replay key (the bot's id and ``update_id``,
``protocols.replay``) is written with the event it caused; an update already taken is counted
(``replayed``), logged once and otherwise ignored: no event, no second "registered" to the citizen.

Every change reaches ``recorder.listeners``; ours queues a plain-text notice to the citizen for
``status_changed`` and ``citizen_replied`` events of incidents whose reporter is ``tg:<chat>``, and
a second task sends them (retried with back-off; a notice that cannot be delivered is recorded on
the incident). Nothing is ever sent with a parse mode, so citizen or dispatcher text is never
interpreted as markup. A Bot API outage (or a rejected token) is retried with back-off and never
stops the gateway; a store failure is retried, then the citizen is told to call 102.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import trio

from channels.telegram_bot import BotApi, BotApiError
from gateway.errors import ConfigError, GatewayError, NotFound, StoreError
from gateway.incident.desk import Desk, DeskError
from gateway.incident.recorder import Recorder
from gateway.incident.records import Caller, Incident, Location, TimelineEvent
from gateway.protocols import replay
from gateway.protocols.ani import sanitise_name
from gateway.protocols.telegram_chats import Chats, ChatState, FloodGate, Pacer, chat_of, reporter_of
from gateway.protocols.telegram_replies import notice, share_keyboard, text
from gateway.protocols.telegram_updates import (
    Contact,
    Help,
    Ignored,
    Item,
    Media,
    Place,
    Start,
    Text,
    language_of,
    parse_update,
    sanitise,
)
from gateway.settings import Report102Config
from gateway.settings.channels import TelegramConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

ALLOWED_UPDATES = ["message", "edited_message"]
MAX_BACKOFF_S = 60.0
NOTICE_KINDS = ("status_changed", "citizen_replied")
QUIET_REASONS = {"unknown_update", "live_location", "not_private"}  # normal Telegram traffic, not attacks


class Telegram102:
    """The 102 bot. ``run`` owns its HTTP client and tasks; ``reply`` may be called from any task."""

    def __init__(self, cfg: Report102Config, desk: Desk, recorder: Recorder) -> None:
        if cfg.enabled and not cfg.bot_token:
            raise ConfigError(["reports.telegram102.bot_token: required when enabled"])
        self.cfg, self.desk, self.recorder = cfg, desk, recorder
        self.chats = Chats(cfg.default_language)
        self.flood = FloodGate(cfg.max_per_minute, 60.0)
        self.pacer = Pacer(cfg.ack_interval_s)
        self.counts: Counter[str] = Counter()
        self.connected = False
        self._api: BotApi | None = None
        self._next_slot = 0.0
        self._notices_in, self._notices_out = trio.open_memory_channel[tuple[str, int, str, str]](1000)

    def statistics(self) -> dict[str, int]:
        return {**self.counts, "flood_dropped": self.flood.dropped, "chats": len(self.chats),
                "connected": int(self.connected)}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll and notify until cancelled. ``started()`` at once (after re-reading open Telegram
        incidents): a Bot API outage must not hold up the gateway, so connecting is retried inside."""
        if not self.cfg.enabled:
            task_status.started()
            return
        await self._recover()
        limits = httpx.Limits(max_connections=self.cfg.concurrency + 2)
        async with httpx.AsyncClient(timeout=self.cfg.request_timeout_s, limits=limits) as client:
            self._api = BotApi(client, TelegramConfig(bot_token=self.cfg.bot_token, api_base_url=self.cfg.base_url,
                                                      request_timeout_s=self.cfg.request_timeout_s))
            self.recorder.listeners.append(self._on_change)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._notify_loop)
                    task_status.started()
                    await self._poll()
            finally:
                self.recorder.listeners.remove(self._on_change)
                self._api = None

    async def reply(self, incident_id: str, body: str, actor: str) -> Incident:
        """Record a dispatcher's answer to the citizen (``citizen_replied``); it is sent from there.

        Raises DeskError when the bot is disabled, for an empty text or an incident not reported
        through this bot, NotFound
        for an unknown incident, StoreError if it cannot be recorded."""
        if not self.cfg.enabled:
            raise DeskError("the Telegram 102 bot is not enabled")
        clean = sanitise(body, self.cfg.max_text)[0]
        if not clean:
            raise DeskError("reply: the text is empty")
        incident = await self.desk.get(incident_id)
        if incident.source != "telegram" or chat_of(incident.reporter) is None:
            raise DeskError(f"incident {incident_id} was not reported through the Telegram 102 bot")
        return await self.desk.record(incident_id, "citizen_replied", actor=actor, text=clean)

    # ---- updates ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        backoff = _Backoff()
        while True:
            try:
                me = await self._call("getMe")
                await self._call("deleteWebhook", {"drop_pending_updates": False})
                break
            except BotApiError as exc:
                level = logging.ERROR if exc.fatal else logging.WARNING
                log.log(level, "telegram 102: cannot reach the Bot API yet: %s", exc)
                await trio.sleep(backoff.next(exc.retry_after, fatal=exc.fatal))
        self.connected = True
        name = me.get("username", "") if isinstance(me, dict) else ""
        log.info("telegram 102 @%s: polling for citizens' reports", name)

    async def _poll(self) -> None:
        await self._connect()
        offset, backoff = 0, _Backoff()
        poll_s = round(self.cfg.poll_timeout_s)
        while True:
            try:
                updates = await self._call("getUpdates", {"offset": offset, "timeout": poll_s,
                                                          "allowed_updates": ALLOWED_UPDATES},
                                           read_timeout_s=self.cfg.poll_timeout_s + 10)
            except BotApiError as exc:
                self.connected = False
                self.counts["poll_failures"] += 1
                log.warning("telegram 102: getUpdates failed: %s", exc)
                await trio.sleep(backoff.next(exc.retry_after, fatal=exc.fatal))
                continue
            self.connected = True
            backoff.reset()
            by_chat: dict[object, list[object]] = {}
            for update in updates if isinstance(updates, list) else []:
                update_id = update.get("update_id") if isinstance(update, dict) else None
                if isinstance(update_id, int) and not isinstance(update_id, bool):
                    offset = max(offset, update_id + 1)  # moves first: a bad update is never fetched again
                by_chat.setdefault(_chat_key(update), []).append(update)
            limiter = trio.CapacityLimiter(self.cfg.concurrency)
            async with trio.open_nursery() as nursery:
                for chat_updates in by_chat.values():
                    nursery.start_soon(self._handle_in_order, chat_updates, limiter)

    async def _handle_in_order(self, updates: list[object], limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            for update in updates:
                await self.handle(update)

    async def handle(self, update: object) -> None:
        """Handle one raw update; a store or Bot API failure is logged and told, never raised."""
        self.counts["updates"] += 1
        item = parse_update(update, self.cfg.max_text)
        sender = item.sender
        key = replay.telegram_update(self.cfg.bot_token, update)
        try:
            if await self._replayed(key, sender.chat_id if sender else None):
                return
            if sender is not None and not await self._admitted(sender.chat_id, sender.language):
                return
            await self._dispatch(item, key)
        except GatewayError as exc:
            self.counts["failed"] += 1
            log.error("telegram 102: could not take %s from chat %s: %s", type(item).__name__,
                      sender.chat_id if sender else "?", exc)
            if sender is not None:
                await self._send(sender.chat_id, text("unavailable", self.chats.seen(sender).language))

    async def _replayed(self, key: str, chat: int | None) -> bool:
        if not await self.desk.seen(key):
            return False
        self.counts["replayed"] += 1
        log.info("telegram 102: update %s from chat %s was already taken; ignored", key, chat)
        return True

    async def _admitted(self, chat_id: int, language: str | None) -> bool:
        verdict = self.flood.admit(chat_id, trio.current_time())
        if verdict == "ok":
            return True
        if verdict == "warn" or self.flood.dropped % 50 == 1:
            log.warning("telegram 102: chat %s over %d messages a minute: dropped (%d dropped in all)",
                        chat_id, self.cfg.max_per_minute, self.flood.dropped)
        if verdict == "warn":
            known = self.chats.get(chat_id)
            await self._send(chat_id, text("flood", language or (known.language if known else
                                                                 self.cfg.default_language)))
        return False

    async def _dispatch(self, item: Item, key: str) -> None:
        if isinstance(item, Ignored):
            await self._ignored(item)
            return
        self.counts[type(item).__name__.lower()] += 1
        state = self.chats.seen(item.sender)
        chat = item.sender.chat_id
        match item:
            case Start():
                await self._send(chat, text("greeting", state.language),
                                 share_keyboard(state.language, phone=not state.number))
            case Help():
                await self._send(chat, text("help", state.language))
            case Contact():
                await self._contact(item, state, key)
            case Media() if not self.cfg.accept_media:
                await self._ignored(Ignored(reason="media_refused", sender=item.sender, reply="unsupported"))
            case Text() | Place() | Media():
                await self._report(item, state, key)

    async def _ignored(self, item: Ignored) -> None:
        self.counts[f"ignored_{item.reason}"] += 1
        chat = item.sender.chat_id if item.sender else None
        level = logging.INFO if item.reason in QUIET_REASONS else logging.WARNING
        log.log(level, "telegram 102: ignored an update (%s) from chat %s", item.reason, chat)
        if item.sender is not None and item.reply and self.pacer.due(item.sender.chat_id, item.reply,
                                                                      trio.current_time()):
            language = self.chats.seen(item.sender).language
            markup = share_keyboard(language) if item.reply == "bad_location" else None
            await self._send(item.sender.chat_id, text(item.reply, language), markup)

    async def _contact(self, item: Contact, state: ChatState, key: str) -> None:
        chat = item.sender.chat_id
        incident_id = self._open_incident(state)
        if not item.own:
            self.counts["contact_refused"] += 1
            log.warning("telegram 102: chat %s shared someone else's contact: not used as the caller number", chat)
            if incident_id:
                await self._durably(lambda: self.desk.record_report(
                    incident_id, "telegram_contact_refused", seen_key=key, actor=reporter_of(chat),
                    other_number=item.number or item.raw, reason="not the sender's own account"))
            await self._send(chat, text("contact_refused", state.language), share_keyboard(state.language))
            return
        if not item.number:
            log.warning("telegram 102: chat %s shared its own number %r, which is not usable", chat, item.raw)
            await self._send(chat, text("phone_unusable", state.language))
            return
        state.number, state.raw_number = item.number, item.raw
        if incident_id:
            caller = self._caller(state)
            await self._durably(lambda: self.desk.record_report(
                incident_id, "telegram_contact", seen_key=key, actor=reporter_of(chat), changes={"caller": caller},
                number=caller.number, verified=True))
        await self._send(chat, text("phone_saved", state.language, number=item.number),
                         share_keyboard(state.language, phone=False))

    async def _report(self, item: Text | Place | Media, state: ChatState, key: str) -> None:
        chat = item.sender.chat_id
        incident_id = self._open_incident(state)
        added = False
        if incident_id:
            try:
                await self._durably(lambda: self._add(incident_id, item, key))
                added = True
            except NotFound:
                log.warning("telegram 102: incident %s of chat %s is gone; opening a new one", incident_id, chat)
        state.last_wall = time.time()
        if added:
            self.counts["items_added"] += 1
            if self.pacer.due(chat, "added", trio.current_time()):
                await self._send(chat, text("added", state.language))
        else:
            incident = await self._durably(lambda: self._open(item, state, key))
            state.incident_id = incident.id
            self.counts["incidents_opened"] += 1
            log.info("telegram 102: chat %s reported incident %s", chat, incident.id)
            await self._send(chat, text("registered", state.language, ref=incident.id),
                             share_keyboard(state.language, phone=not state.number))
        if isinstance(item, Text) and "truncated" in item.flags:
            await self._send(chat, text("truncated", state.language, limit=self.cfg.max_text))

    def _open_incident(self, state: ChatState) -> str:
        """The chat's incident if still open and the citizen wrote within the reopen window."""
        if state.incident_id and time.time() - state.last_wall <= self.cfg.reopen_window_s:
            return state.incident_id
        state.incident_id = ""
        return ""

    async def _open(self, item: Text | Place | Media, state: ChatState, key: str) -> Incident:
        chat = item.sender.chat_id
        return await self.desk.open(
            service=self.cfg.service, source="telegram", caller=self._caller(state), kind="telegram_report",
            actor=reporter_of(chat), language=state.language, reporter=reporter_of(chat),
            locations=[_location(item)] if isinstance(item, Place) else (), seen_key=key,
            **_fields(item))  # type: ignore[arg-type]

    async def _add(self, incident_id: str, item: Text | Place | Media, key: str) -> Incident:
        actor = reporter_of(item.sender.chat_id)
        if isinstance(item, Place):
            return await self.desk.attach_location(incident_id, _location(item), actor=actor, seen_key=key,
                                                   via="telegram")
        kind = "telegram_message" if isinstance(item, Text) else "telegram_media"
        return await self.desk.record_report(incident_id, kind, seen_key=key, actor=actor,
                                             **_fields(item))  # type: ignore[arg-type]

    def _caller(self, state: ChatState) -> Caller:
        name = sanitise_name(state.first_name)[0]
        flags = ["telegram"] if state.number else ["telegram", "no_number"]
        return Caller(raw_number=state.raw_number, number=state.number, display_name=name, withheld=False,
                      flags=flags)

    async def _durably(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run a desk write, retrying store failures (not NotFound) a few times with back-off."""
        for attempt in range(1, self.cfg.store_attempts + 1):
            try:
                return await write()
            except NotFound:
                raise
            except StoreError as exc:
                if attempt == self.cfg.store_attempts:
                    raise
                log.warning("telegram 102: store write failed (attempt %d): %s", attempt, exc)
                await trio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def _recover(self) -> None:
        """Re-learn which chats have an open incident (after a restart their next message joins it)."""
        try:
            since = time.time() - self.cfg.reopen_window_s
            for summary in await self.desk.store.recent(limit=1000, since_wall=since):
                if summary.source != "telegram" or summary.status == "closed":
                    continue
                incident = await self.desk.get(summary.id)
                chat = chat_of(incident.reporter)
                if chat is not None:  # newest first: setdefault keeps a chat's newest incident
                    self.chats.remember(chat, ChatState(
                        language=language_of(incident.language) or self.cfg.default_language,
                        incident_id=incident.id,
                        number=incident.caller.number, raw_number=incident.caller.raw_number,
                        first_name=incident.caller.display_name, last_wall=incident.updated_wall))
        except GatewayError as exc:
            log.error("telegram 102: could not re-read open Telegram incidents: %s", exc)

    # ---- notices to citizens ----------------------------------------------------------------

    def _on_change(self, incident: Incident, last: TimelineEvent) -> None:
        """Recorder listener (sync, must not block): queue what the citizen should hear."""
        if last.kind not in NOTICE_KINDS:
            return
        chat = chat_of(incident.reporter)
        if chat is None or incident.source != "telegram":
            return
        if last.kind == "status_changed" and last.data.get("status") == "closed":
            state = self.chats.get(chat)
            if state is not None and state.incident_id == incident.id:
                state.incident_id = ""  # the next message is a new report
        message = notice(last.kind, last.data, incident.language or self.cfg.default_language, self.cfg.max_text)
        if message is None:
            return
        try:
            self._notices_in.send_nowait((incident.id, chat, message, last.kind))
        except trio.WouldBlock:
            self.counts["notices_dropped"] += 1
            log.error("telegram 102: notice queue full; incident %s: %s not sent to the citizen",
                      incident.id, last.kind)

    async def _notify_loop(self) -> None:
        async for incident_id, chat, message, kind in self._notices_out:
            if await self._send(chat, message):
                self.counts["notices_sent"] += 1
                continue
            self.counts["notices_failed"] += 1
            try:
                await self.desk.record(incident_id, "telegram_notice_failed", actor="gateway", notice=kind)
            except GatewayError as exc:
                log.error("telegram 102: could not record a failed notice on %s: %s", incident_id, exc)

    # ---- the Bot API ------------------------------------------------------------------------

    async def _call(self, method: str, params: dict[str, Any] | None = None, *,
                    read_timeout_s: float | None = None) -> Any:
        if self._api is None:
            raise BotApiError(method, 0, "the bot is not running")
        return await self._api.call(method, params, read_timeout_s=read_timeout_s)

    async def _send(self, chat_id: int, body: str, markup: dict[str, Any] | None = None) -> bool:
        """Send plain text (never a parse mode); retries transient failures. False if not delivered."""
        params: dict[str, Any] = {"chat_id": chat_id, "text": body}
        if markup is not None:
            params["reply_markup"] = markup
        backoff = _Backoff()
        for attempt in range(1, self.cfg.send_attempts + 1):
            await self._take_slot()
            try:
                await self._call("sendMessage", params)
                self.counts["sent"] += 1
                return True
            except BotApiError as exc:
                if not exc.transient or attempt == self.cfg.send_attempts:
                    self.counts["send_failed"] += 1
                    log.warning("telegram 102: message to chat %s not delivered: %s", chat_id, exc)
                    return False
                await trio.sleep(backoff.next(exc.retry_after))
        return False

    async def _take_slot(self) -> None:
        slot = max(trio.current_time(), self._next_slot)
        self._next_slot = slot + 1.0 / self.cfg.replies_per_second
        await trio.sleep_until(slot)


class _Backoff:
    def __init__(self) -> None:
        self.delay = 0.25

    def next(self, retry_after: float | None = None, *, fatal: bool = False) -> float:
        if retry_after is not None:
            return retry_after
        if fatal:  # a rejected token only changes when an operator fixes it: retry rarely
            return MAX_BACKOFF_S
        self.delay = min(MAX_BACKOFF_S, self.delay * 2)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.25


def _location(item: Place) -> Location:
    # No Telegram source in records.LocationSource: a citizen-shared point is "manual", method "telegram".
    return Location(source="manual", shape="circle" if item.accuracy_m else "point", lat=item.lat, lon=item.lon,
                    radius_m=item.accuracy_m, address=item.address, method="telegram")


def _fields(item: Text | Place | Media) -> dict[str, str | int | float | bool | None]:
    """Timeline data for one report item."""
    if isinstance(item, Text):
        return {"item": "text", "text": item.text, "length": item.length, "flags": ",".join(item.flags)}
    if isinstance(item, Place):
        return {"item": "location", "lat": item.lat, "lon": item.lon, "radius_m": item.accuracy_m,
                "address": item.address}
    return {"item": item.media, "media": item.media, "file_id": item.file_id, "file_unique_id": item.file_unique_id,
            "size": item.size, "duration": item.duration, "width": item.width, "height": item.height,
            "mime_type": item.mime_type, "caption": item.caption}


def _chat_key(update: object) -> object:
    """The chat an update belongs to, for ordering; malformed updates each get their own key."""
    if isinstance(update, dict):
        for kind in ("message", "edited_message"):
            body = update.get(kind)
            if isinstance(body, dict) and isinstance(body.get("chat"), dict):
                chat_id = body["chat"].get("id")
                if isinstance(chat_id, int | str):
                    return chat_id
    return ("update", id(update))
