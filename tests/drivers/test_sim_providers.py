"""``gateway-sim providers``: stand-ins on the ports a drill config names, loopback only."""

from __future__ import annotations

import socket

import pytest

from gateway.errors import DrillError
from gateway.settings.channels import EmailConfig, SmppConfig, TelegramConfig
from gateway.settings.warnings import ChannelSet
from sim.lab import free_port
from sim.providers import open_providers


async def test_stand_ins_listen_where_the_drill_config_points() -> None:
    smpp, smtp, tg = (free_port(socket.SOCK_STREAM) for _ in range(3))
    channels = ChannelSet(smpp=SmppConfig(system_id="drill", password="drill", port=smpp),
                          email=EmailConfig(from_address="drill@ecgw.kz", port=smtp),
                          telegram=TelegramConfig(bot_token="1:x", api_base_url=f"http://127.0.0.1:{tg}/bot"))
    async with open_providers(channels) as counters:
        assert sorted(counters) == ["email", "smpp", "telegram"]
        for port in (smpp, smtp, tg):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        assert counters["email"]() == {"accepted": 0}


async def test_a_drill_destination_off_loopback_is_refused() -> None:
    channels = ChannelSet(email=EmailConfig(from_address="drill@ecgw.kz", host="10.0.0.5", port=25))
    with pytest.raises(DrillError, match="127.0.0.1 only"):
        async with open_providers(channels):
            pass
