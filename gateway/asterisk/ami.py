"""Asterisk health over AMI (panoramisk, hosted in Trio through trio-asyncio).

Used for what ARI does not tell: whether Asterisk is fully booted and how many channels it
carries in total (including calls that never reached the gateway: the fallback dialplan).

One short session per poll (log in, read FullyBooted and CoreStatus, close), not a session kept
open: while any AMI session is connected, Asterisk turns every event of every channel into AMI text
for it, whatever events that session asked for (``manager.c``: it only checks that some session
exists). Measured with the bench's minimal Stasis app at 50 calls/s, one idle session kept open cost
Asterisk ~2.4 ms of CPU per call; a session for a few milliseconds every ``every_s`` costs nothing
measurable. The price: a stopped Asterisk shows on /health at the next poll, not at once (ARI's
websocket tells the gateway itself at once).

``monitor`` is the one retry loop. panoramisk's Manager reconnects by itself too: a failed
connect (``connection_made``) and a dropped connection (``connection_lost``) each log and
``loop.call_later(reconnect_timeout, self.connect)``, and ``close()`` cancels neither. Every Manager
we gave up on kept retrying every second on its own, one more per retry of ours: with Asterisk
away, one more "Not able to reconnect" a second every ten seconds. ``_Manager`` takes that out.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import trio
import trio_asyncio
from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from gateway.errors import AmiError
from gateway.metrics import Metrics
from gateway.settings import AsteriskConfig

log = logging.getLogger(__name__)

# Asterisk restarted by systemd is back within seconds: the first retries find it soon. The cap
# keeps /health at most ~10 s behind an Asterisk that came back; one loopback connect per 10 s costs
# nothing. Each delay is drawn from its upper half so the AMI and ARI loops do not retry in step.
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 10.0
REMIND_EVERY_S = 300.0  # while AMI stays away, a reminder line this often (else one line per outage)
BOOT_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0


class AsteriskHealth:
    """Latest AMI view of Asterisk, for /health and /metrics."""

    def __init__(self) -> None:
        self.connected = False  # the last poll succeeded
        self.channels: int | None = None
        self.version = ""
        self.error = ""

    @property
    def fully_booted(self) -> bool:
        """A poll succeeds only once Asterisk has said FullyBooted in it."""
        return self.connected


class Retries:
    """When to try AMI again and what to say about it: no I/O, the caller passes the time.

    Delays run 0.5 s doubling to 10 s (each drawn from its upper half) and start over once AMI is
    up. One warning when AMI is lost, one line when it is back, a reminder every ``remind_s`` between.
    """

    def __init__(self, first_s: float = FIRST_RETRY_S, cap_s: float = MAX_RETRY_S,
                 remind_s: float = REMIND_EVERY_S, *, what: str = "AMI", logger: logging.Logger = log) -> None:
        self.first_s, self.cap_s, self.remind_s = first_s, cap_s, remind_s
        self.what, self.log = what, logger  # ARI's reconnect loop (gateway.app) says the same, of ARI
        self.delay_s = first_s
        self.down_since: float | None = None
        self.reminded_at = 0.0

    def failed(self, exc: BaseException, now: float) -> float:
        """Log if this is news (or a reminder is due); return how long to wait before the next try."""
        if self.down_since is None:
            self.down_since = self.reminded_at = now
            self.log.warning("%s unavailable (%r); retrying every %.1f-%.0f s, quietly", self.what, exc, self.first_s,
                             self.cap_s)
        elif now - self.reminded_at >= self.remind_s:
            self.reminded_at = now
            self.log.warning("%s still unavailable after %.0f s (%r)", self.what, now - self.down_since, exc)
        wait = random.uniform(self.delay_s / 2, self.delay_s)
        self.delay_s = min(self.delay_s * 2, self.cap_s)
        return wait

    def up(self, now: float) -> None:
        if self.down_since is not None:
            self.log.warning("%s back after %.0f s", self.what, now - self.down_since)
        else:
            self.log.info("%s connected", self.what)
        self.down_since, self.delay_s = None, self.first_s


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """AMIProtocol that may lose its connection before the Manager adopts it: the Manager learns of
    the connection in a done-callback, and a peer that closes at once beats it. AMIProtocol then calls
    ``None.connection_lost``, and trio-asyncio raises that out of the loop (it crashed the monitor)."""

    lost_early = False

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.factory is None:
            self.closed = self.lost_early = True
            return
        super().connection_lost(exc)


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager without its own reconnecting (module docstring): errors reach the awaiter,
    a lost connection sets ``lost`` and fails the actions still waiting for a reply."""

    pinger: asyncio.TimerHandle | None

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.lost = asyncio.Event()

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # whoever awaits ``connect()`` gets the error; panoramisk would call_later(connect) here
        super().connection_made(f)
        if self.protocol.lost_early:
            self.connection_lost(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self.lost.set()
        # The protocol parks unanswered actions here to resend after a reconnect that will not come.
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(AmiError(f"AMI connection lost ({exc!r})"))


async def _core_status(manager: _Manager) -> dict[str, Any]:
    if manager.lost.is_set():
        raise AmiError("AMI connection lost")
    reply = await manager.send_action({"Action": "CoreStatus"})
    message = reply[0] if isinstance(reply, list) else reply
    if message.get("Response") != "Success":
        raise AmiError(f"CoreStatus refused: {message.get('Message')}")
    return dict(message)


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _open(cfg: AsteriskConfig) -> _Manager:
    """A logged-in Manager once Asterisk says FullyBooted (it does right after the login when it is);
    closed again on any failure."""
    booted = asyncio.Event()
    manager = _Manager(host="127.0.0.1", port=cfg.ami_port, username=cfg.ami_user, secret=cfg.ami_password,
                       events="system", ping_delay=BOOT_TIMEOUT_S + REPLY_TIMEOUT_S, protocol_factory=_Protocol,
                       loop=asyncio.get_running_loop())  # no ping: a session lasts milliseconds
    manager.register_event("FullyBooted", lambda _manager, _event: booted.set())
    try:
        await manager.connect()
        await asyncio.wait_for(_first_of(booted, manager.lost), timeout=BOOT_TIMEOUT_S)
        if manager.lost.is_set():  # Asterisk closes the session after a refused login
            raise AmiError("AMI closed the connection before FullyBooted (login refused, or Asterisk stopping)")
    except BaseException:
        manager.close()
        raise
    return manager


async def _status(cfg: AsteriskConfig) -> dict[str, Any]:
    """One session: log in, wait for FullyBooted, CoreStatus, close."""
    manager = await _open(cfg)
    try:
        return await _core_status(manager)
    finally:
        manager.close()


async def _check(cfg: AsteriskConfig, health: AsteriskHealth, metrics: Metrics, retries: Retries) -> None:
    """One poll; raises what made it fail."""
    with trio.fail_after(BOOT_TIMEOUT_S + REPLY_TIMEOUT_S):  # a stopped (not dead) Asterisk never answers
        status = await trio_asyncio.aio_as_trio(_status)(cfg)
    health.channels = int(status.get("CoreCurrentCalls", 0))
    metrics.asterisk_channels.set(health.channels)
    metrics.asterisk_up.set(1)
    if not health.connected:
        health.connected, health.error = True, ""
        retries.up(trio.current_time())


async def monitor(cfg: AsteriskConfig, health: AsteriskHealth, metrics: Metrics, every_s: float = 2.0,
                  *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Poll Asterisk every ``every_s`` forever, backing off while it is away (``Retries``). Never raises for
    Asterisk being away."""
    task_status.started()
    retries = Retries()
    try:
        async with trio_asyncio.open_loop():
            while True:
                try:
                    await _check(cfg, health, metrics, retries)
                except (TimeoutError, trio.TooSlowError, OSError, AmiError, KeyError, ValueError) as exc:
                    _down(health, metrics, repr(exc))
                    await trio.sleep(retries.failed(exc, trio.current_time()))
                    continue
                await trio.sleep(every_s)
    finally:  # cancelled, or crashed and about to be restarted (``app.isolated``): /health must not say "up"
        _down(health, metrics, "AMI monitor not running")


def _down(health: AsteriskHealth, metrics: Metrics, error: str) -> None:
    health.connected, health.error = False, error
    metrics.asterisk_up.set(0)
