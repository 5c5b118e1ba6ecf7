"""``gateway-sim providers``: every provider stand-in a config's drill channels point at, on the
ports the config names, so Exercise alerts of a drill land somewhere that counts them.

Only loopback destinations are served: a drill config aiming at another host is refused.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio

from gateway.errors import DrillError
from gateway.settings import GatewayConfig
from gateway.settings.warnings import ChannelSet
from sim.smsc_server import Smsc, open_smsc
from sim.smtp import open_smtp_sim
from sim.telegram import TelegramSim, open_telegram_sim
from sim.twilio import open_twilio_sim

LOOPBACK = ("127.0.0.1", "localhost")
Counter = Callable[[], dict[str, Any]]


def _loopback_port(where: str, host: str | None, port: int | None) -> int:
    if host not in LOOPBACK or not port:
        raise DrillError(f"{where}: stand-ins serve 127.0.0.1 only, with an explicit port (got {host}:{port})")
    return port


@asynccontextmanager
async def open_providers(channels: ChannelSet) -> AsyncIterator[dict[str, Counter]]:
    """Start a stand-in for each configured channel; yields name → a function giving its counts."""
    counters: dict[str, Counter] = {}
    async with AsyncExitStack() as stack:
        if channels.smpp:
            c = channels.smpp
            smsc = await stack.enter_async_context(open_smsc(
                system_id=c.system_id, password=c.password, port=_loopback_port("smpp", c.host, c.port)))
            counters["smpp"] = smsc.stats
        if channels.email:
            smtp = await stack.enter_async_context(open_smtp_sim(
                port=_loopback_port("email", channels.email.host, channels.email.port)))
            counters["email"] = lambda: {"accepted": smtp.accepted}
        if channels.telegram:
            c2 = channels.telegram
            url = urlsplit(c2.api_base_url)
            tg = await stack.enter_async_context(open_telegram_sim(
                c2.bot_token, port=_loopback_port("telegram", url.hostname, url.port),
                channels=[c2.public_channel] if c2.public_channel else []))
            counters["telegram"] = tg.stats
        if channels.twilio:
            c3 = channels.twilio
            url = urlsplit(c3.api_base_url)
            twilio = await stack.enter_async_context(open_twilio_sim(
                account_sid=c3.account_sid, auth_token=c3.auth_token,
                port=_loopback_port("twilio", url.hostname, url.port), mps=c3.max_per_second))
            counters["twilio"] = lambda: {"accepted": len(twilio.messages)}
        yield counters


async def serve(channels: ChannelSet) -> int:
    """Run until Ctrl-C or SIGTERM, then print what each stand-in received."""
    if channels.siren_lines:
        print("sirens: start `python -m sim.relayboard --port PTY` for each drill line yourself (a pty pair "
              "cannot be bound to a configured path from here)")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd narrates every command at INFO
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_providers(channels) as counters:
            print(json.dumps({"serving": sorted(counters)}), flush=True)
            async for _ in signals:
                break
            for name, count in sorted(counters.items()):
                print(f"{name}: {json.dumps(count(), ensure_ascii=False)}")
    return 0


@dataclass
class EscalationProviders:
    """The stand-ins an escalation drill talks to (None where the config has no such channel)."""

    smsc: Smsc | None = None  # the responders' SMS (SMPP): their replies and texts to 112 come in as MO
    responders_bot: TelegramSim | None = None  # the responders' bot: acknowledge buttons
    reports_bot: TelegramSim | None = None  # the citizens' 102 bot

    def connected(self) -> dict[str, bool]:
        """Whether the gateway has reached each stand-in yet (bound, polling)."""
        out: dict[str, bool] = {}
        if self.smsc is not None:
            out["smpp"] = self.smsc.binds > 0
        for name, bot in (("responders_bot", self.responders_bot), ("reports_bot", self.reports_bot)):
            if bot is not None:
                out[name] = bot.requests.get("getUpdates", 0) > 0
        return out


@asynccontextmanager
async def open_escalation_providers(cfg: GatewayConfig) -> AsyncIterator[EscalationProviders]:
    """Stand-ins where ``[escalation.channels]`` (SMPP, Telegram) and ``[reports.telegram102]`` point;
    loopback with explicit ports only (DrillError otherwise). Twilio and e-mail responders are not
    served: drills script SMS over SMPP."""
    found = EscalationProviders()
    channels = cfg.escalation.channels
    async with AsyncExitStack() as stack:
        if channels.smpp:
            c = channels.smpp
            found.smsc = await stack.enter_async_context(open_smsc(
                system_id=c.system_id, password=c.password, port=_loopback_port("escalation.channels.smpp", c.host,
                                                                                c.port)))
        if channels.telegram:
            url = urlsplit(channels.telegram.api_base_url)
            found.responders_bot = await stack.enter_async_context(open_telegram_sim(
                channels.telegram.bot_token, port=_loopback_port("escalation.channels.telegram", url.hostname,
                                                                 url.port), bot_username="ecgw_responders_bot"))
        report = cfg.reports.telegram102
        if report.enabled:
            url = urlsplit(report.base_url)
            found.reports_bot = await stack.enter_async_context(open_telegram_sim(
                report.bot_token, port=_loopback_port("reports.telegram102", url.hostname, url.port),
                bot_username="ecgw_102_bot"))
        yield found
