"""``[warnings]``: officers, zones, templates, SMS routing, and two sets of channels.

``actual`` channels reach the public; ``drill`` channels are the destinations of Exercise and
Test alerts. An Exercise is routed only to ``drill`` instances, and check-config refuses a drill
channel that points at the same provider endpoint as an actual one, so an exercise can never
reach a real provider by a copy-paste slip.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from gateway.settings.base import Base
from gateway.settings.channels import EmailConfig, SirenLine, SmppConfig, TelegramConfig, TwilioConfig, VoiceConfig

ROLES = ("civil-defence", "dispatcher", "supervisor")


class User(Base, frozen=True):
    """An officer. ``token_sha256`` is the SHA-256 (hex) of their API bearer token."""

    name: str
    roles: list[Literal["civil-defence", "dispatcher", "supervisor"]]
    token_sha256: str = ""


class SmsRoute(Base, frozen=True):
    """Numbers starting with ``prefix`` go through ``driver``; the first usable match wins."""

    prefix: str
    driver: Literal["smpp", "twilio"]


class ChannelSet(Base, frozen=True):
    smpp: SmppConfig | None = None
    twilio: TwilioConfig | None = None
    email: EmailConfig | None = None
    telegram: TelegramConfig | None = None
    voice: VoiceConfig | None = None
    siren_lines: list[SirenLine] = []

    def endpoints(self) -> dict[str, str]:
        """Where each configured channel sends, to compare actual with drill."""
        out: dict[str, str] = {}
        if self.smpp:
            out["smpp"] = f"{self.smpp.host}:{self.smpp.port}"
        if self.twilio:
            out["twilio"] = self.twilio.account_sid  # the same account is the same provider, whatever URL
        if self.email:
            out["email"] = f"{self.email.host}:{self.email.port}"
        if self.telegram:
            out["telegram"] = self.telegram.bot_token  # the same bot reaches the same public
        if self.voice:
            out["voice"] = self.voice.trunk_uri
        for line in self.siren_lines:
            out[f"siren:{line.name}"] = line.port
        return out


class WarningsConfig(Base, frozen=True):
    enabled: bool = True
    store_path: str = "var/warnings.sqlite3"
    zones_file: str = "config/zones.toml"
    templates_dir: str = "alert_templates"
    sender: str = "civil-defence.almaty@ecgw.kz"
    sender_names: dict[str, str] = msgspec.field(default_factory=lambda: {
        "kk": "Алматы қ. ТЖД", "ru": "ДЧС г. Алматы", "en": "Almaty Emergency Department"})
    public_channel: str = ""
    signup_bot: bool = False  # run the Telegram sign-up bot on the actual bot's token
    max_sms_segments: int = 4
    users: list[User] = []
    sms_routes: list[SmsRoute] = msgspec.field(default_factory=lambda: [
        SmsRoute(prefix="+7", driver="smpp"), SmsRoute(prefix="+", driver="twilio")])
    actual: ChannelSet = ChannelSet()
    drill: ChannelSet = ChannelSet()


def warnings_problems(cfg: WarningsConfig, source: str = "<config>") -> list[str]:
    """Cross-field checks: users, tokens, and the exercise/actual separation."""
    p: list[str] = []
    names = [u.name for u in cfg.users]
    for i, user in enumerate(cfg.users):
        if not re.match(r"^[a-z][a-z0-9._-]{0,31}$", user.name):
            p.append(f"{source}: warnings.users[{i}].name: expected a lower-case login name")
        if names.count(user.name) > 1:
            p.append(f"{source}: warnings.users[{i}].name: duplicate user {user.name!r}")
        if user.token_sha256 and not re.match(r"^[0-9a-f]{64}$", user.token_sha256):
            p.append(f"{source}: warnings.users[{i}].token_sha256: expected 64 lower-case hex digits")
    if not 1 <= cfg.max_sms_segments <= 10:
        p.append(f"{source}: warnings.max_sms_segments: expected 1-10")
    if cfg.signup_bot and cfg.actual.telegram is None:
        p.append(f"{source}: warnings.signup_bot: needs [warnings.actual.telegram]")
    if not re.match(r"^[^\s,<&]+$", cfg.sender):
        p.append(f"{source}: warnings.sender: CAP forbids spaces, commas, '<' and '&' in a sender")
    actual = cfg.actual.endpoints()
    for key, where in cfg.drill.endpoints().items():
        if actual.get(key) == where:
            p.append(f"{source}: warnings.drill.{key.split(':')[0]}: points at the same destination as the actual "
                     f"channel ({where}); exercises must never reach a real provider")
    for i, route in enumerate(cfg.sms_routes):
        if not re.match(r"^\+\d*$", route.prefix):
            p.append(f"{source}: warnings.sms_routes[{i}].prefix: expected '+' and digits")
    return p
