"""Asterisk health over AMI (panoramisk, hosted in Trio through trio-asyncio).

Used for what ARI does not tell: whether Asterisk is fully booted and how many channels it
carries in total (including calls that never reached the gateway: the fallback dialplan).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import trio
import trio_asyncio
from panoramisk import Manager

from gateway.errors import AmiError
from gateway.metrics import Metrics
from gateway.settings import AsteriskConfig

log = logging.getLogger(__name__)


class AsteriskHealth:
    """Latest AMI view of Asterisk, for /health and /metrics."""

    def __init__(self) -> None:
        self.connected = False
        self.fully_booted = False
        self.channels: int | None = None
        self.version = ""
        self.error = ""


async def _core_status(manager: Manager) -> dict[str, Any]:
    reply = await manager.send_action({"Action": "CoreStatus"})
    message = reply[0] if isinstance(reply, list) else reply
    if message.get("Response") != "Success":
        raise AmiError(f"CoreStatus refused: {message.get('Message')}")
    return dict(message)


async def _open(cfg: AsteriskConfig, health: AsteriskHealth) -> Manager:
    booted = asyncio.Event()

    def on_booted(_manager: Manager, _event: Any) -> None:
        health.fully_booted = True
        booted.set()

    def on_shutdown(_manager: Manager, _event: Any) -> None:
        health.fully_booted = False

    manager = Manager(host="127.0.0.1", port=cfg.ami_port, username=cfg.ami_user, secret=cfg.ami_password,
                      events="system", ping_delay=5, reconnect_timeout=1, loop=asyncio.get_running_loop())
    manager.register_event("FullyBooted", on_booted)
    manager.register_event("Shutdown", on_shutdown)
    await manager.connect()
    await asyncio.wait_for(booted.wait(), timeout=10)
    return manager


async def monitor(cfg: AsteriskConfig, health: AsteriskHealth, metrics: Metrics, every_s: float = 2.0,
                  *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Poll CoreStatus forever, reconnecting with backoff. Never raises for Asterisk being away."""
    task_status.started()
    backoff = 0.5
    async with trio_asyncio.open_loop():
        while True:
            manager = None
            try:
                manager = await trio_asyncio.aio_as_trio(_open)(cfg, health)
                health.connected, health.error, backoff = True, "", 0.5
                while True:
                    status = await trio_asyncio.aio_as_trio(_core_status)(manager)
                    health.channels = int(status.get("CoreCurrentCalls", 0))
                    metrics.asterisk_channels.set(health.channels)
                    metrics.asterisk_up.set(1 if health.fully_booted else 0)
                    await trio.sleep(every_s)
            except (TimeoutError, OSError, AmiError, KeyError, ValueError) as exc:
                health.connected, health.fully_booted, health.error = False, False, repr(exc)
                metrics.asterisk_up.set(0)
                log.warning("AMI unavailable (%r); retrying in %.1f s", exc, backoff)
            finally:
                if manager is not None:
                    manager.close()
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
