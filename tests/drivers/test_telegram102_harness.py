"""Shared set-up for the 102 bot's Trio tests: the Bot API stand-in, a real SQLite store, the desk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.text.telegram102 import Telegram102
from gateway.settings import Report102Config
from sim.telegram import SentMessage, TelegramSim, open_telegram_sim

TOKEN = "102102:CITIZEN-token"


class Lab:
    def __init__(self, sim: TelegramSim, store: AsyncStore, recorder: Recorder, desk: Desk, bot: Telegram102,
                 nursery: trio.Nursery) -> None:
        self.sim, self.store, self.recorder, self.desk, self.bot, self.nursery = (
            sim, store, recorder, desk, bot, nursery)

    async def replies(self, chat_id: int, count: int) -> list[SentMessage]:
        """Wait for the bot's ``count``-th message to the chat."""
        while len(self.sim.messages_to(chat_id)) < count:
            await trio.sleep(0.01)
        return self.sim.messages_to(chat_id)

    async def incident_of(self, chat_id: int) -> Incident:
        """The chat's incident (stored copy, as written), once the bot has opened it."""
        while True:
            state = self.bot.chats.get(chat_id)
            if state is not None and state.incident_id:
                return await self.store.get(state.incident_id)
            await trio.sleep(0.01)

    async def until(self, condition: Callable[[], object]) -> None:
        while not condition():
            await trio.sleep(0.01)

    async def stored_until(self, incident_id: str, condition: Callable[[Incident], bool]) -> Incident:
        while True:
            incident = await self.store.get(incident_id)
            if condition(incident):
                return incident
            await trio.sleep(0.01)

    async def telegram_incidents(self) -> list[str]:
        return [s.id for s in await self.store.recent(limit=100) if s.source == "telegram"]


def config(sim: TelegramSim, **kwargs: Any) -> Report102Config:
    fields: dict[str, Any] = {"enabled": True, "bot_token": TOKEN, "base_url": sim.api_base_url,
                              "poll_timeout_s": 1, "request_timeout_s": 3, "replies_per_second": 30,
                              "ack_interval_s": 0}
    return Report102Config(**(fields | kwargs))


@asynccontextmanager
async def lab(tmp_path: Path, *, sim_token: str = TOKEN, store: AsyncStore | None = None,
              **cfg: Any) -> AsyncIterator[Lab]:
    """Everything running on loopback; torn down when the block exits."""
    async with open_telegram_sim(sim_token, rate_per_s=1000, burst=1000) as sim, trio.open_nursery() as nursery:
        if store is None:
            store = AsyncStore(SqliteStore(tmp_path / "s.db"))
        recorder = Recorder(store, Bus())
        desk = Desk(store, recorder)
        bot = Telegram102(config(sim, **cfg), desk, recorder)
        await nursery.start(bot.run)
        try:
            yield Lab(sim, store, recorder, desk, bot, nursery)
        finally:
            nursery.cancel_scope.cancel()
