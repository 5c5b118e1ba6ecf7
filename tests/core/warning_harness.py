"""A warnings engine wired to real stand-ins on loopback, for the engine's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from channels.base import Channel
from gateway.warning import zones
from gateway.warning.engine import AsyncOutbox, Engine
from gateway.warning.nodes import LEASE_S
from gateway.warning.outbox import Outbox, Queries
from gateway.warning.recipients import Recipient
from gateway.warning.records import AlertRecord
from gateway.warning.render import Renderer
from gateway.warning.templates import load_catalogue
from gateway.warning.workflow import DraftSpec, Workflow

ROOT = Path(__file__).resolve().parents[2]
USERS = {"aigerim": ["civil-defence"], "daniyar": ["civil-defence"], "erlan": ["dispatcher"]}


@dataclass
class Harness:
    workflow: Workflow
    engine: Engine
    outbox: AsyncOutbox

    async def add(self, recipients: list[Recipient]) -> None:
        await self.outbox.call(self.outbox.sync.put_recipients, recipients)

    async def send(self, spec: DraftSpec) -> AlertRecord:
        draft = await self.workflow.draft(spec, "aigerim")
        return await self.workflow.approve(draft.id, "daniyar", send=True)

    async def wait_state(self, alert_id: str, state: str, timeout: float = 20) -> AlertRecord:
        with trio.fail_after(timeout):
            while (record := await self.workflow.get(alert_id)).state != state:
                await trio.sleep(0.05)
        return record


@asynccontextmanager
async def harness(path: Path, channels: dict[str, Channel], *, public_channel: str = "",
                  sms_routes: tuple[tuple[str, str], ...] = (("+", "smpp"),), store: Queries | None = None,
                  lease_s: float = LEASE_S) -> AsyncIterator[Harness]:
    """``store``: the warnings store (a SQLite file at ``path`` by default); it is closed at the end."""
    outbox = AsyncOutbox(store if store is not None else Outbox(path, synchronous="NORMAL"))
    zone_set = zones.load(ROOT / "config" / "zones.toml")
    renderer = Renderer(load_catalogue(ROOT / "alert_templates"), zone_set)
    engine = Engine(outbox, channels, renderer, sms_routes=sms_routes, public_channel=public_channel, lease_s=lease_s)
    workflow = Workflow(outbox, renderer, zone_set, USERS, sender="civil-defence.almaty@ecgw.kz", engine=engine)
    try:
        async with trio.open_nursery() as nursery:
            engine.on_state = lambda record: nursery.start_soon(workflow.finished, record)
            await nursery.start(engine.run)
            try:
                yield Harness(workflow, engine, outbox)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        outbox.sync.close()  # once the nursery is done: a worker thread may still be writing until then


def people(n: int, *, zone: str = "medeu", channels: str = "email", start: int = 0) -> list[Recipient]:
    kinds = channels.split(";")
    return [Recipient(ref=f"r{i}", name=f"Resident {i}", phone=f"+7701{i:07d}", email=f"r{i}@example.kz",
                      telegram=str(100000 + i), language=("kk", "ru", "en")[i % 3], zones=[zone],
                      channels=kinds)  # type: ignore[arg-type]
            for i in range(start, start + n)]
