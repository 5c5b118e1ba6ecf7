"""[warnings] checks: exercises can never reach an actual provider; users and sender are sane."""

from __future__ import annotations

import msgspec

from gateway.settings.warnings import WarningsConfig
from gateway.settings.warnings import warnings_problems as problems


def config(**raw: object) -> WarningsConfig:
    return msgspec.convert(raw, WarningsConfig)


def test_a_drill_channel_on_an_actual_destination_is_refused() -> None:
    cfg = config(actual={"email": {"from_address": "a@b.kz", "port": 25},
                         "telegram": {"bot_token": "1:real", "api_base_url": "https://api.telegram.org/bot"}},
                 drill={"email": {"from_address": "d@b.kz", "port": 25},
                        "telegram": {"bot_token": "1:real", "api_base_url": "https://api.telegram.org/bot/"}})
    found = "\n".join(problems(cfg))
    assert "warnings.drill.email" in found and "warnings.drill.telegram" in found
    assert "never reach a real provider" in found


def test_separate_drill_destinations_pass() -> None:
    cfg = config(actual={"email": {"from_address": "a@b.kz", "port": 25}},
                 drill={"email": {"from_address": "d@b.kz", "port": 12525}})
    assert problems(cfg) == []


def test_users_sender_and_bot_settings_are_checked() -> None:
    cfg = config(users=[{"name": "Aigerim", "roles": ["civil-defence"], "token_sha256": "xyz"},
                        {"name": "Aigerim", "roles": ["civil-defence"]}],
                 sender="civil defence, Almaty", signup_bot=True, max_sms_segments=0)
    found = "\n".join(problems(cfg))
    for expected in ("lower-case login", "duplicate user", "64 lower-case hex", "CAP forbids",
                     "signup_bot: needs", "max_sms_segments"):
        assert expected in found
