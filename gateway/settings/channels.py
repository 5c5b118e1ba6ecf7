"""Delivery channels' settings: one SMSC account, Twilio, Telegram, e-mail, voice call-out, siren lines.

The same Structs configure the public warnings (``[warnings.actual]``, ``[warnings.drill]``) and the
responders' channels (``[escalation.channels]``); the drivers in ``channels/`` take them as given.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from gateway.settings.base import Base

TWILIO_API = "https://api.twilio.com"
_Octet = Annotated[int, msgspec.Meta(ge=0, le=255)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]


class SmppConfig(Base, frozen=True):
    """One SMSC account. ``source_addr_ton`` 5 is alphanumeric, 1 international, 0 unknown."""

    system_id: Annotated[str, msgspec.Meta(max_length=15)]
    password: Annotated[str, msgspec.Meta(max_length=8)]
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2775
    system_type: Annotated[str, msgspec.Meta(max_length=12)] = ""
    source_addr: Annotated[str, msgspec.Meta(max_length=20)] = ""
    source_addr_ton: _Octet = 0
    source_addr_npi: _Octet = 0
    dest_addr_ton: _Octet = 1
    dest_addr_npi: _Octet = 1
    window: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 64
    max_per_second: Annotated[float, msgspec.Meta(gt=0, le=100000)] = 1000.0
    max_batch: Annotated[int, msgspec.Meta(ge=1)] = 500
    enquire_link_s: _Seconds = 30.0
    response_timeout_s: _Seconds = 10.0
    connect_timeout_s: _Seconds = 10.0
    reconnect_min_s: _Seconds = 0.2
    reconnect_max_s: _Seconds = 30.0
    throttle_retry_after_s: _Seconds = 1.0
    registered_delivery: bool = True
    long_messages: Literal["udh", "payload"] = "udh"  # concatenated parts, or one submit_sm with message_payload
    # Message ids awaiting a delivery receipt, oldest dropped first: ~300 bytes each (30 MB at the
    # default), 100 s of receipts at the default contracted 1,000/s.
    receipt_memory: Annotated[int, msgspec.Meta(ge=1)] = 100_000


class TwilioConfig(Base, frozen=True):
    """``[channels.twilio]``: credentials, sender and pacing. Exactly one of ``from_number`` and
    ``messaging_service_sid`` names the sender."""

    account_sid: str
    auth_token: str
    from_number: str = ""
    messaging_service_sid: str = ""
    api_base_url: str = TWILIO_API
    status_callback_url: str = ""
    max_per_second: float = 10.0
    concurrency: int = 10
    max_batch: int = 100
    timeout_s: float = 15.0
    retry_after_s: float = 1.0  # after a 429 without Retry-After
    lookup_window_s: float = 86400.0  # how far back lookup() searches by default

    def __post_init__(self) -> None:
        if bool(self.from_number) == bool(self.messaging_service_sid):
            raise ValueError("twilio: set exactly one of from_number and messaging_service_sid")
        if not self.max_per_second > 0 or self.concurrency < 1 or self.max_batch < 1 or not self.timeout_s > 0:
            raise ValueError("twilio: max_per_second and timeout_s must be > 0, concurrency and max_batch >= 1")
        if urlsplit(self.api_base_url).scheme not in ("http", "https"):
            raise ValueError(f"twilio: api_base_url must be an http(s) URL, not {self.api_base_url!r}")


class TelegramConfig(Base, frozen=True):
    """``[channels.telegram]``: the bot, where its API lives, and Telegram's flood limits."""

    bot_token: str
    api_base_url: str = "https://api.telegram.org/bot"
    public_channel: Annotated[str, msgspec.Meta(pattern=r"^(@[A-Za-z][A-Za-z0-9_]{3,31})?$")] = ""
    max_per_second: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 30.0
    per_chat_interval_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    parse_mode: Literal["HTML", ""] = "HTML"
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 100
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0


class EmailConfig(Base, frozen=True):
    """``[channels.email]``: the relay, the sender and how hard to push."""

    from_address: str
    from_name: str = ""
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 25
    username: str = ""
    password: str = ""
    starttls: bool = False  # upgrade with STARTTLS after connecting (submission port 587)
    use_tls: bool = False  # TLS from the first byte (port 465)
    helo_name: str = ""  # EHLO name; empty: this host's FQDN
    connections: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4
    max_per_second: Annotated[float, msgspec.Meta(ge=0)] = 50.0  # recipients per second; 0: not paced
    max_batch: Annotated[int, msgspec.Meta(ge=1)] = 200
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # one transaction, connecting included
    recipients_per_transaction: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    idle_check_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0


class VoiceConfig(Base, frozen=True):
    """The voice call-out channel. ARI credentials are the gateway's (``[asterisk]``); the app is
    the call-out's own. ``trunk_uri`` is where calls go (the operator's SIP gateway); the number
    becomes its user part."""

    ari_port: int = 8088
    ari_user: str = "ecgw"
    ari_password: str = "change-me-ari"
    app: str = "ecgw-callout"
    endpoint: str = "ecgw-callout"  # the PJSIP endpoint in dialplans/pjsip.conf
    trunk_uri: str = "sip:127.0.0.1:5080"
    caller_id: str = ""  # e.g. '"Civil defence" <1410>'; empty: the endpoint's default
    ring_timeout_s: float = 30.0
    max_concurrent_calls: int = 10
    max_calls_per_second: float = 5.0
    repeats: int = 2
    pause_s: float = 1.0  # between repetitions


def voice_problems(cfg: VoiceConfig, where: str = "voice") -> list[str]:
    """Every problem with a voice config (file/section prefix ``where``), or an empty list."""
    p: list[str] = []
    if not 1 <= cfg.ari_port <= 65535:
        p.append(f"{where}.ari_port: expected a port number 1-65535, got {cfg.ari_port}")
    for key in ("app", "endpoint"):
        if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", getattr(cfg, key)):
            p.append(f"{where}.{key}: expected lower-case letters, digits, - or _, got {getattr(cfg, key)!r}")
    if not re.match(r"^sips?:[A-Za-z0-9.\-\[\]:]+(;[A-Za-z0-9=_.\-]+)*$", cfg.trunk_uri):
        p.append(f"{where}.trunk_uri: expected a SIP URI without user part like sip:10.0.0.5:5060, "
                 f"got {cfg.trunk_uri!r}")
    if any(ch in cfg.caller_id for ch in "\r\n\0,"):
        p.append(f"{where}.caller_id: expected one line without commas")
    if not 1 <= cfg.ring_timeout_s <= 300:
        p.append(f"{where}.ring_timeout_s: expected 1-300 seconds")
    if not 1 <= cfg.max_concurrent_calls <= 1000:
        p.append(f"{where}.max_concurrent_calls: expected 1-1000")
    if cfg.max_calls_per_second <= 0:
        p.append(f"{where}.max_calls_per_second: expected a positive number")
    if not 1 <= cfg.repeats <= 5:
        p.append(f"{where}.repeats: expected 1-5")
    if not 0 <= cfg.pause_s <= 10:
        p.append(f"{where}.pause_s: expected 0-10 seconds")
    return p


class SirenLine(Base, frozen=True):
    """One RS-485 line: a serial port and the framing its boards are set to."""

    name: str
    port: str
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "E"  # Modbus's default framing is 8E1
    stopbits: Literal[1, 2] = 1
    response_timeout_s: float = 0.2  # from the end of the request to the end of the answer
    retries: int = 2  # further tries after a timeout or a damaged answer
