"""How calls, texts and alarms come in: services, dispatcher positions, the IVR, ANI rules, the
Telegram 102 bot, SMS to 112 and school alarm panels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from gateway.settings.base import NAME_RE, Base

_Seconds = Annotated[float, msgspec.Meta(gt=0)]
# The non-emergency police line (1402): its own positions, queue and menu, below every 102/112 call.
LINE_1402 = "1402"
PositionGroup = Literal["emergency", "1402"]
_Path = Annotated[str, msgspec.Meta(pattern=r"^/[A-Za-z0-9/_.\-]*$")]


class Service(Base, frozen=True):
    """An emergency service number and the dialled forms that reach it."""

    name: str
    dialled: list[str]


class Position(Base, frozen=True):
    """A dispatcher position: a SIP phone reached at ``contact``. ``group``: the 102/112 positions
    ("emergency", the default) or the 1402 line's ("1402")."""

    name: str
    contact: str
    group: PositionGroup = "emergency"


class DispatchConfig(Base, frozen=True):
    positions: list[Position]
    backup: str = ""
    fallback_positions: list[str] = []
    ring_timeout_s: float = 20.0
    overflow_after_s: float = 60.0
    announce_every_s: float = 15.0
    # A 102/112 caller may be handed to a free 1402 position when no 102/112 position is free.
    emergency_may_use_1402: bool = True
    # A 1402 caller may be handed to a free 102/112 position, only while no 102/112 caller waits.
    emergency_positions_take_1402: bool = False


class Category(Base, frozen=True):
    digit: str
    name: str
    priority: int


class Menu1402(Base, frozen=True):
    """``[ivr.menu_1402]``: the 1402 line's category menu (its own prompt, ``category_1402``)."""

    categories: list[Category] = []
    default_priority: Annotated[int, msgspec.Meta(ge=0, le=9)] = 0


class IvrConfig(Base, frozen=True):
    enabled: bool = True
    language_prompt: bool = True
    digit_timeout_s: float = 5.0
    max_s: float = 20.0  # the whole menu; past this the caller goes to a dispatcher regardless
    languages: dict[str, Literal["kk", "ru", "en"]] = msgspec.field(
        default_factory=lambda: {"1": "kk", "2": "ru", "3": "en"}
    )
    categories: list[Category] = []
    default_priority: int = 1
    prompts_dir: str = ""
    # In the 102 category menu: this key moves a non-emergency caller to the 1402 line ("": not offered).
    offer_1402_digit: str = ""
    menu_1402: Menu1402 = Menu1402()


class CorrelationConfig(Base, frozen=True):
    window_s: float = 86400.0
    same_address_radius_m: float = 50.0


class LocationConfig(Base, frozen=True):
    """``[location]``: where a location sent by reference (RFC 6442 ``Geolocation: <https://…>``) may be
    fetched from. Only URLs starting with one of ``dereference`` are fetched: the operators' location
    servers; a reference anywhere else is noted on the incident, never followed (an INVITE must not make
    the gateway connect where its sender likes)."""

    dereference: list[str] = []
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=30)] = 3.0
    max_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 20)] = 65536


class AniConfig(Base, frozen=True):
    country_code: str = "7"
    trunk_prefix: str = "8"
    national_length: int = 10


class Report102Config(Base, frozen=True):
    """``[reports.telegram102]``: the citizens' 102 bot (its own token, not the warnings bot's)."""

    enabled: bool = False
    bot_token: str = ""
    base_url: str = "https://api.telegram.org/bot"  # the Bot API; the stand-in's api_base_url in drills
    service: str = "102"
    default_language: Literal["kk", "ru", "en"] = "ru"
    max_text: Annotated[int, msgspec.Meta(ge=100, le=4000)] = 2000  # characters kept per message
    accept_media: bool = True  # photos, voice notes, videos: kept as Telegram file ids, never downloaded
    reopen_window_s: Annotated[float, msgspec.Meta(ge=0)] = 3600.0  # later items join the open incident
    max_per_minute: Annotated[int, msgspec.Meta(ge=1, le=600)] = 20  # per chat; beyond it: dropped
    ack_interval_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0  # one "added" ack per chat per interval
    replies_per_second: Annotated[float, msgspec.Meta(gt=0, le=30)] = 20.0
    send_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    store_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    poll_timeout_s: Annotated[float, msgspec.Meta(ge=1, le=50)] = 25.0
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8


class Sms112Config(Base, frozen=True):
    """``[sms112]``. The Twilio webhook is refused (403) while ``twilio_auth_token`` is empty and
    the AML endpoint (401) while ``aml_token_sha256`` is; ``twilio_public_url`` is the URL Twilio
    signs (as configured on the number), needed behind a reverse proxy."""

    enabled: bool = False
    service: str = "112"
    reopen_window_s: _Seconds = 3600.0
    twilio_path: _Path = "/webhooks/twilio/sms112"
    twilio_auth_token: str = ""
    twilio_public_url: str = ""
    aml_path: _Path = "/aml/v1"
    aml_token_sha256: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""
    match_window_s: _Seconds = 600.0
    max_pending_aml: Annotated[int, msgspec.Meta(ge=1)] = 1000
    max_text_chars: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 2000
    reply_language: Literal["kk", "ru"] = "kk"
    send_timeout_s: _Seconds = 15.0


class ReportsConfig(Base, frozen=True):
    """Incidents reported by text: the citizens' Telegram 102 bot and SMS to 112 (with AML)."""

    telegram102: Report102Config = Report102Config()
    sms112: Sms112Config = Sms112Config()


class AlarmConfig(Base, frozen=True):
    """``[alarm]``: school alarm panels (Asterisk AlarmReceiver and the panel HTTP API)."""

    enabled: bool = True
    sites_file: str = "config/alarm_sites.toml"
    # Under the Asterisk instance's spool directory; dialplans/alarmreceiver.conf writes there.
    spool_subdir: str = "alarm"
    dedupe_window_s: float = 600.0  # a new alarm this soon after the last one joins its incident
    restore_window_s: float = 86400.0  # how old an open incident a restore may still close out
    category: str = "school_alarm"
    priority: int = 9
    service: str = "102"
    poll_s: float = 0.5
    settle_s: float = 0.25  # AlarmReceiver writes a file in one go; untouched this long, it is complete
    # Contact ID categories that call for police; arming, trouble and bypass reports do not.
    incident_categories: list[str] = msgspec.field(
        default_factory=lambda: ["panic", "duress", "medical", "fire", "burglary", "hazard", "tamper"])


def dispatch_problems(d: DispatchConfig, source: str) -> list[str]:
    p: list[str] = []
    if not d.positions:
        p.append(f"{source}: dispatch.positions: expected at least one dispatcher position")
    names = [pos.name for pos in d.positions]
    for i, pos in enumerate(d.positions):
        if not re.match(NAME_RE, pos.name):
            p.append(f"{source}: dispatch.positions[{i}].name: expected a name matching {NAME_RE}, got {pos.name!r}")
        if names.count(pos.name) > 1:
            p.append(f"{source}: dispatch.positions[{i}].name: duplicate position {pos.name!r}")
        if not re.match(r"^sips?:[^\s;,]+$", pos.contact):
            p.append(f"{source}: dispatch.positions[{i}].contact: expected a SIP URI like sip:pos1@127.0.0.1:5071")
    if d.backup and not re.match(r"^sips?:[^\s;,]+$", d.backup):
        p.append(f"{source}: dispatch.backup: expected a SIP URI of the backup centre or empty")
    for name in d.fallback_positions:
        if name not in names:
            p.append(f"{source}: dispatch.fallback_positions: unknown position {name!r}")
    for key in ("ring_timeout_s", "overflow_after_s", "announce_every_s"):
        if getattr(d, key) <= 0:
            p.append(f"{source}: dispatch.{key}: expected a positive number of seconds")
    return p


def ivr_problems(ivr: IvrConfig, source: str) -> list[str]:
    p: list[str] = []
    if ivr.digit_timeout_s <= 0:
        p.append(f"{source}: ivr.digit_timeout_s: expected a positive number of seconds")
    if not 0 < ivr.max_s <= 120:
        p.append(f"{source}: ivr.max_s: expected 0-120 seconds (a caller must reach a human quickly)")
    for digit in ivr.languages:
        if digit not in "123456789" or len(digit) != 1:
            p.append(f"{source}: ivr.languages: key {digit!r}: expected a single digit 1-9")
    p += _menu_problems(ivr.categories, "ivr.categories", source)
    p += _menu_problems(ivr.menu_1402.categories, "ivr.menu_1402.categories", source)
    offer = ivr.offer_1402_digit
    if offer and (len(offer) != 1 or offer not in "123456789"):
        p.append(f"{source}: ivr.offer_1402_digit: expected a single digit 1-9 (0 is the dispatcher) or \"\", "
                 f"got {offer!r}")
    elif offer in {c.digit for c in ivr.categories}:
        p.append(f"{source}: ivr.offer_1402_digit: digit {offer} is already a category of the 102/112 menu")
    return p


def _menu_problems(categories: list[Category], key: str, source: str) -> list[str]:
    p: list[str] = []
    digits = [c.digit for c in categories]
    for i, cat in enumerate(categories):
        if len(cat.digit) != 1 or cat.digit not in "123456789":
            p.append(f"{source}: {key}[{i}].digit: expected a single digit 1-9 (0 is the dispatcher)")
        elif digits.count(cat.digit) > 1:
            p.append(f"{source}: {key}[{i}].digit: digit {cat.digit} used twice")
        if not re.match(NAME_RE, cat.name):
            p.append(f"{source}: {key}[{i}].name: expected a name matching {NAME_RE}")
        if not 0 <= cat.priority <= 9:
            p.append(f"{source}: {key}[{i}].priority: expected 0-9, got {cat.priority}")
    return p


def line_1402_problems(services: list[Service], d: DispatchConfig, ivr: IvrConfig, source: str) -> list[str]:
    """The 1402 line hangs together: its calls have positions to go to, 102/112 keep positions of their
    own, and the 102 menu offers 1402 only when there is a 1402 line."""
    p: list[str] = []
    has_line = any(s.name == LINE_1402 for s in services)
    groups = {pos.group for pos in d.positions}
    if d.positions and "emergency" not in groups:
        p.append(f"{source}: dispatch.positions: expected at least one 102/112 position (group = \"emergency\"): "
                 "102 and 112 calls need positions of their own")
    if has_line and "1402" not in groups and not d.emergency_positions_take_1402:
        p.append(f"{source}: dispatch.positions: service 1402 is configured but no position has group = \"1402\" "
                 "(or set dispatch.emergency_positions_take_1402 = true): its calls would never be answered")
    if not has_line and "1402" in groups:
        names = ", ".join(pos.name for pos in d.positions if pos.group == "1402")
        p.append(f"{source}: dispatch.positions: {names} in group \"1402\" but no [[services]] named 1402")
    if ivr.offer_1402_digit and not has_line:
        p.append(f"{source}: ivr.offer_1402_digit: offers 1402 but no [[services]] named 1402")
    return p


def alarm_problems(cfg: AlarmConfig, source: str) -> list[str]:
    """Cross-field checks of ``[alarm]`` (the site registry is checked by ``gateway.check_config``)."""
    problems = []
    if cfg.dedupe_window_s < 0 or cfg.restore_window_s < 0:
        problems.append(f"{source}: alarm: dedupe_window_s and restore_window_s must not be negative")
    if cfg.poll_s <= 0 or cfg.settle_s < 0:
        problems.append(f"{source}: alarm: poll_s must be positive and settle_s not negative")
    if not cfg.spool_subdir or Path(cfg.spool_subdir).is_absolute() or ".." in Path(cfg.spool_subdir).parts:
        problems.append(f"{source}: alarm.spool_subdir: expected a directory name inside the instance spool, "
                        f"got {cfg.spool_subdir!r}")
    return problems


def location_problems(cfg: LocationConfig, source: str) -> list[str]:
    """Each dereference prefix must be an http(s) URL with a host (a bare scheme would allow any server)."""
    return [f"{source}: location.dereference[{i}]: expected an http(s) URL prefix with a host, got {prefix!r}"
            for i, prefix in enumerate(cfg.dereference)
            if not re.match(r"^https?://[^/\s]+", prefix)]
