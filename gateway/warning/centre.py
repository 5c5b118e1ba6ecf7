"""The warnings part of the gateway: opens every configured channel (actual and drill), runs the
delivery engine, and exposes the workflow to the HTTP API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from channels.base import Channel, Receipt
from gateway.errors import GatewayError, NotFound
from gateway.settings import project_path
from gateway.settings.channels import TelegramConfig
from gateway.settings.warnings import ChannelSet, WarningsConfig
from gateway.warning import zones as zone_file
from gateway.warning.engine import AsyncOutbox, Engine
from gateway.warning.nodes import LEASE_S
from gateway.warning.outbox import Outbox, Queries
from gateway.warning.policy import DRILL_PREFIX
from gateway.warning.recipients import Recipient
from gateway.warning.records import AlertRecord, ChannelProgress
from gateway.warning.render import Renderer
from gateway.warning.templates import load_catalogue
from gateway.warning.workflow import Workflow

log = logging.getLogger(__name__)
Opener = Callable[[Callable[[Receipt], None]], AbstractAsyncContextManager[Any]]


class Warnings:
    """Owns the outbox, the channels and the engine; ``workflow`` is what the API calls."""

    def __init__(self, cfg: WarningsConfig, *, sounds_dir: Path | None = None,
                 users: Mapping[str, list[str]] | None = None, store: Queries | None = None,
                 lease_s: float = LEASE_S) -> None:
        """``users``: who has which roles (the gateway's accounts); the config's officers by default.
        ``store``: the warnings store (``gateway.stores.open_warnings_store``; the SQLite file at
        ``store_path`` by default); ``lease_s``: a silent node's jobs are adopted after it (shared store)."""
        self.cfg = cfg
        self.sounds_dir = sounds_dir
        self.lease_s = lease_s
        self.outbox = AsyncOutbox(store if store is not None else Outbox(cfg.store_path))
        self.zones = zone_file.load(project_path(cfg.zones_file))
        catalogue = load_catalogue(project_path(cfg.templates_dir), max_sms_segments=cfg.max_sms_segments)
        self.renderer = Renderer(catalogue, self.zones)
        users = users if users is not None else {u.name: [str(r) for r in u.roles] for u in cfg.users}
        self.workflow = Workflow(self.outbox, self.renderer, self.zones, users, sender=cfg.sender,
                                 sender_names=cfg.sender_names)
        self.engine: Engine | None = None
        self.channel_errors: dict[str, str] = {}
        self._closed: dict[str, Opener] = {}  # channels whose provider was down at start
        self._watchers: list[trio.MemorySendChannel[tuple[str, str, dict[str, ChannelProgress]]]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open channels, recover the outbox, deliver until cancelled. Raises StoreError if the warnings store
        fails (the gateway runs it again: ``app.isolated``)."""
        self._closed.clear()  # a run again opens every channel again
        async with AsyncExitStack() as stack:
            channels = await self._open_all(stack)
            drill_tg = self.cfg.drill.telegram
            self.engine = Engine(self.outbox, channels, self.renderer, public_channel=self._public_channel(),
                                 drill_public_channel=drill_tg.public_channel if drill_tg else "",
                                 waiting=list(self._closed),
                                 lease_s=self.lease_s,
                                 sms_routes=[(r.prefix, r.driver) for r in self.cfg.sms_routes],
                                 on_progress=self._progress, on_state=self._finished)
            self.workflow.engine = self.engine
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.engine.run)
                for key, opener in self._closed.items():
                    nursery.start_soon(self._keep_opening, key, opener)
                if self.cfg.signup_bot and self.cfg.actual.telegram:
                    nursery.start_soon(self._signup_bot, self.cfg.actual.telegram)
                log.info("warnings ready: channels %s", ", ".join(sorted(channels)) or "none")
                task_status.started()

    def channel_states(self) -> dict[str, str]:
        """Each configured channel: "up", "down: why", or "not open: why"."""
        states = {key: f"not open: {error}" for key, error in self.channel_errors.items()}
        if self.engine is not None:
            for key, slot in self.engine.slots.items():
                down = slot.breaker.state == "down"
                states[key] = f"down: {slot.breaker.reason}" if down else ("up" if not slot.health.startswith(
                    "down") else slot.health)
        return states

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[trio.MemoryReceiveChannel[tuple[str, str, dict[str, ChannelProgress]]]]:
        """Progress of every sending alert, about once a second."""
        send, receive = trio.open_memory_channel[tuple[str, str, dict[str, ChannelProgress]]](16)
        self._watchers.append(send)
        try:
            yield receive
        finally:
            self._watchers.remove(send)

    async def _signup_bot(self, config: TelegramConfig) -> None:
        """Residents subscribe to their district in Telegram; they become warning recipients."""
        from channels.telegram_bot import run_signup_bot

        zones = {name: z.title for name, z in self.zones.zones.items()}
        try:
            await run_signup_bot(config, zones=zones, zone_of=self.zones.zone_of, on_subscribe=self._subscribe,
                                 on_unsubscribe=self._unsubscribe)
        except GatewayError as exc:  # a rejected token must not take the gateway down
            log.error("Telegram sign-up bot stopped: %s", exc)

    async def _subscribe(self, chat_id: int, zone: str | None, lat: float | None, lon: float | None,
                         language: str) -> None:
        resident = Recipient(ref=f"tg{chat_id}", telegram=str(chat_id), language=language,  # type: ignore[arg-type]
                             zones=[zone] if zone else self.zones.names(), channels=["telegram"])
        await self.outbox.call(self.outbox.sync.put_recipients, [resident])

    async def _unsubscribe(self, chat_id: int) -> None:
        try:
            await self.outbox.call(self.outbox.sync.delete_recipient, f"tg{chat_id}")
        except NotFound:
            pass

    def _progress(self, alert_id: str, state: str, channels: dict[str, ChannelProgress]) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait((alert_id, state, channels))
            except trio.WouldBlock:  # a slow reader misses a tick, never blocks delivery
                pass

    def _finished(self, record: AlertRecord) -> None:
        self._nursery.start_soon(self._mark_finished, record)

    async def _mark_finished(self, record: AlertRecord) -> None:
        try:
            await self.workflow.finished(record)
        except GatewayError as exc:  # a store hiccup must not take 112 intake down with it
            log.error("alert %s: could not record that it was sent: %s", record.id, exc)
        self._progress(record.id, "sent", {})

    def _public_channel(self) -> str:
        tg = self.cfg.actual.telegram
        return self.cfg.public_channel or (tg.public_channel if tg else "")

    def _late(self, key: str) -> Callable[[Receipt], None]:
        def push(receipt: Receipt) -> None:
            if self.engine is not None:
                self.engine.receipt_callback(key)(receipt)
        return push

    async def _open_all(self, stack: AsyncExitStack) -> dict[str, Channel]:
        channels: dict[str, Channel] = {}
        for prefix, channel_set in (("", self.cfg.actual), (DRILL_PREFIX, self.cfg.drill)):
            for name, opener in self._openers(channel_set).items():
                key = prefix + name
                try:  # no cancel scope around this: the driver's nursery outlives the call
                    channels[key] = await stack.enter_async_context(opener(self._late(key)))
                except GatewayError as exc:
                    # A provider down at start must not stop the gateway: the officer sees it,
                    # and the channel is opened as soon as the provider answers.
                    self.channel_errors[key] = str(exc) or type(exc).__name__
                    self._closed[key] = opener
                    log.error("channel %s not opened: %s", key, self.channel_errors[key])
        return channels

    async def _keep_opening(self, key: str, opener: Opener, first_wait_s: float = 2.0) -> None:
        """Retry a channel that could not be opened at start; this task then owns it."""
        wait = first_wait_s
        while True:
            await trio.sleep(wait)
            try:
                async with opener(self._late(key)) as channel:
                    assert self.engine is not None
                    await self.engine.add_channel(key, channel)
                    self.channel_errors.pop(key, None)
                    log.info("channel %s opened", key)
                    await trio.sleep_forever()
            except GatewayError as exc:
                self.channel_errors[key] = str(exc) or type(exc).__name__
                wait = min(wait * 2, 60.0)

    def _openers(self, cs: ChannelSet) -> dict[str, Opener]:
        from channels.email import open_email
        from channels.sirens import SirenConfig, SirenTarget, open_sirens
        from channels.smpp import open_smpp
        from channels.telegram import open_telegram
        from channels.twilio_sms import open_twilio
        from channels.voice import open_voice

        out: dict[str, Opener] = {}
        if cs.smpp:
            out["smpp"] = _with(open_smpp, cs.smpp)
        if cs.twilio:
            out["twilio"] = _with(open_twilio, cs.twilio)
        if cs.email:
            out["email"] = _with(open_email, cs.email)
        if cs.telegram:
            out["telegram"] = _with(open_telegram, cs.telegram)
        if cs.voice and self.sounds_dir is not None:
            out["voice"] = _with(open_voice, cs.voice, sounds_dir=self.sounds_dir)
        if cs.siren_lines:
            zones = {name: [SirenTarget(line=g.line, unit=g.unit, coils=g.coils) for g in (*z.sirens, *z.boards)]
                     for name, z in self.zones.zones.items() if z.sirens or z.boards}
            lines = {line.name for line in cs.siren_lines}
            zones = {n: [t for t in ts if t.line in lines] for n, ts in zones.items()}
            siren = SirenConfig(lines=cs.siren_lines, zones={n: ts for n, ts in zones.items() if ts})
            out["siren"] = _with(open_sirens, siren)
        return out


def _with(opener: Callable[..., AbstractAsyncContextManager[Any]], config: object, **extra: Any) -> Opener:
    def open_with(callback: Callable[[Receipt], None]) -> AbstractAsyncContextManager[Any]:
        return opener(config, on_update=callback, **extra)
    return open_with
