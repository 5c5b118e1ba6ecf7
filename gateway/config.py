"""Gateway configuration: msgspec Structs that reject unknown keys, loaded from TOML.

Every problem is reported with the file, the key and what was expected, so an operator
fixing a config at 3 a.m. sees all mistakes at once rather than one per restart.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from gateway.alarm.service import AlarmConfig, alarm_problems
from gateway.ani import AniConfig
from gateway.errors import ConfigError
from gateway.escalation.config import EscalationConfig
from gateway.escalation.config import problems as escalation_config_problems
from gateway.reports.sms112 import Sms112Config
from gateway.reports.telegram102 import Report102Config
from gateway.schema import Base
from gateway.unit_board import UnitsConfig
from gateway.unit_board import config_problems as units_problems
from gateway.warning.config import WarningsConfig
from gateway.warning.config import problems as warnings_problems

NAME_RE = r"^[a-z][a-z0-9_-]{0,31}$"


class AsteriskConfig(Base, frozen=True):
    mode: Literal["auto", "system", "sandbox"] = "auto"
    sandbox_dir: str = "/var/lib/ecgw/asterisk-sid"
    instance: str = "default"
    sip_port: int = 5060
    http_port: int = 8088
    ami_port: int = 5038
    rtp_start: int = 10000
    rtp_end: int = 20000
    app: str = "ecgw"
    ari_user: str = "ecgw"
    ari_password: str = "change-me-ari"
    ami_user: str = "ecgw"
    ami_password: str = "change-me-ami"
    operator_match: str = "127.0.0.1"
    boot_timeout_s: float = 60.0
    default_language: Literal["kk", "ru", "en"] = "ru"


class Service(Base, frozen=True):
    """An emergency service number and the dialled forms that reach it."""

    name: str
    dialled: list[str]


class Position(Base, frozen=True):
    """A dispatcher position: a SIP phone reached at ``contact``."""

    name: str
    contact: str


class DispatchConfig(Base, frozen=True):
    positions: list[Position]
    backup: str = ""
    fallback_positions: list[str] = []
    ring_timeout_s: float = 20.0
    overflow_after_s: float = 60.0
    announce_every_s: float = 15.0


class Category(Base, frozen=True):
    digit: str
    name: str
    priority: int


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


class StoreConfig(Base, frozen=True):
    backend: Literal["sqlite"] = "sqlite"
    path: str = "var/gateway.sqlite3"


class HttpConfig(Base, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080


class CorrelationConfig(Base, frozen=True):
    window_s: float = 86400.0
    same_address_radius_m: float = 50.0


class ReportsConfig(Base, frozen=True):
    """Incidents reported by text: the citizens' Telegram 102 bot and SMS to 112 (with AML)."""

    telegram102: Report102Config = Report102Config()
    sms112: Sms112Config = Sms112Config()


class GatewayConfig(Base, frozen=True):
    services: list[Service]
    dispatch: DispatchConfig
    asterisk: AsteriskConfig = AsteriskConfig()
    ivr: IvrConfig = IvrConfig()
    store: StoreConfig = StoreConfig()
    http: HttpConfig = HttpConfig()
    ani: AniConfig = AniConfig()
    correlation: CorrelationConfig = CorrelationConfig()
    warnings: WarningsConfig = WarningsConfig()
    escalation: EscalationConfig = EscalationConfig()
    units: UnitsConfig = UnitsConfig()
    alarm: AlarmConfig = AlarmConfig()
    reports: ReportsConfig = ReportsConfig()


DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "gateway.toml"


def load(path: str | Path = DEFAULT_PATH) -> GatewayConfig:
    """Read and validate a config file. Raises ConfigError listing every problem found."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}): save the file as UTF-8"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return parse(raw, str(path))


def parse(raw: dict[str, object], source: str = "<config>") -> GatewayConfig:
    """Validate an already-decoded TOML document."""
    problems = _schema_problems(raw, source)
    if problems:
        raise ConfigError(problems)
    cfg = msgspec.convert(raw, GatewayConfig)
    problems = semantic_problems(cfg, source)
    if problems:
        raise ConfigError(problems)
    return cfg


def _schema_problems(raw: dict[str, object], source: str) -> list[str]:
    # msgspec stops at the first error; walk each section separately so one typo does not hide the next.
    problems: list[str] = []
    fields = {f.encode_name: f.type for f in msgspec.structs.fields(GatewayConfig)}
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"{source}: unknown section or key '{key}' (expected one of: {', '.join(sorted(fields))})")
            continue
        try:
            msgspec.convert(value, fields[key])
        except msgspec.ValidationError as exc:
            problems.append(f"{source}: {_where(key, exc)}")
    for f in msgspec.structs.fields(GatewayConfig):
        if f.required and f.encode_name not in raw:
            problems.append(f"{source}: missing required section '{f.encode_name}'")
    return problems


def _where(section: str, exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.positions[0].nmae`"; rewrite the path from the section's root.
    text = str(exc)
    match = re.search(r" - at `\$(.*)`$", text)
    if not match:
        return f"[{section}]: {text}"
    return f"{section}{match.group(1)}: {text[: match.start()]}"


def semantic_problems(cfg: GatewayConfig, source: str = "<config>") -> list[str]:
    """Cross-field checks the schema cannot express."""
    p: list[str] = []
    name_re = re.compile(NAME_RE)
    a = cfg.asterisk
    for key in ("sip_port", "http_port", "ami_port", "rtp_start", "rtp_end"):
        if not 1 <= getattr(a, key) <= 65535:
            p.append(f"{source}: asterisk.{key}: expected a port number 1-65535, got {getattr(a, key)}")
    if a.rtp_start >= a.rtp_end:
        p.append(f"{source}: asterisk.rtp_start: expected below asterisk.rtp_end")
    if len({a.sip_port, a.http_port, a.ami_port, cfg.http.port}) < 4:
        p.append(f"{source}: asterisk ports and http.port must all differ")
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,40}$", a.instance):
        p.append(f"{source}: asterisk.instance: expected lower-case letters, digits, - or _, got {a.instance!r}")
    if not a.sandbox_dir.startswith("/") or any(ch in a.sandbox_dir for ch in "\n\r\0") or ".." in a.sandbox_dir:
        p.append(f"{source}: asterisk.sandbox_dir: expected an absolute path without '..', got {a.sandbox_dir!r}")
    for match in a.operator_match.split(","):
        try:
            ipaddress.ip_network(match.strip(), strict=False)
        except ValueError:
            p.append(f"{source}: asterisk.operator_match: expected IP addresses or networks, got {match!r}")
    if not name_re.match(a.app):
        p.append(f"{source}: asterisk.app: expected a name matching {NAME_RE}, got {a.app!r}")
    for key in ("ari_password", "ami_password", "ari_user", "ami_user"):
        value = getattr(a, key)
        if not value or not re.match(r"^[A-Za-z0-9_.@+-]+$", value):
            p.append(f"{source}: asterisk.{key}: expected letters, digits or _.@+- only")
    if not cfg.services:
        p.append(f"{source}: services: expected at least one emergency service")
    seen: dict[str, str] = {}
    for i, svc in enumerate(cfg.services):
        if not re.match(r"^[0-9]{2,4}$", svc.name):
            p.append(f"{source}: services[{i}].name: expected a short service number like 112, got {svc.name!r}")
        for number in svc.dialled:
            if not re.match(r"^\+?[0-9]{2,15}$", number):
                p.append(f"{source}: services[{i}].dialled: expected digits with optional leading +, got {number!r}")
            elif number in seen:
                p.append(f"{source}: services[{i}].dialled: {number} already routes to service {seen[number]}")
            else:
                seen[number] = svc.name
    p.extend(_dispatch_problems(cfg.dispatch, source))
    p.extend(_ivr_problems(cfg.ivr, source))
    p.extend(warnings_problems(cfg.warnings, source))
    p.extend(_escalation_problems(cfg, source))
    return p


def _escalation_problems(cfg: GatewayConfig, source: str) -> list[str]:
    from gateway.errors import GatewayError
    from gateway.escalation.service import check
    from gateway.unit_board import load_roster, project_path
    from gateway.warning.templates import load_catalogue

    p = escalation_config_problems(cfg.escalation, source) + units_problems(cfg.units, source)
    p += alarm_problems(cfg.alarm, source)
    try:
        events = frozenset(load_catalogue(project_path(cfg.warnings.templates_dir)).events())
    except GatewayError:
        events = frozenset()  # the warnings check reports the templates themselves
    try:
        kinds = frozenset(load_roster(project_path(cfg.units.roster_file)).kinds)
    except GatewayError:
        kinds = frozenset()  # reported by the units check
    p += [f"{source}: escalation: {problem}" for problem in check(cfg.escalation, unit_kinds=kinds,
                                                                   warning_events=events)]
    return p + _ivr_category_problems(cfg, source) + _bot_problems(cfg, source)


def _bot_problems(cfg: GatewayConfig, source: str) -> list[str]:
    """Telegram gives a bot's updates to one reader: two of our pollers on one token steal each other's."""
    pollers: dict[str, list[str]] = {}
    tg = cfg.warnings.actual.telegram
    if cfg.warnings.signup_bot and tg is not None:
        pollers.setdefault(tg.bot_token, []).append("warnings sign-up bot")
    if cfg.escalation.enabled and cfg.escalation.channels.telegram is not None:
        pollers.setdefault(cfg.escalation.channels.telegram.bot_token, []).append("escalation.channels.telegram")
    if cfg.reports.telegram102.enabled:
        pollers.setdefault(cfg.reports.telegram102.bot_token, []).append("reports.telegram102")
    return [f"{source}: {' and '.join(users)} use the same bot token: give each its own bot"
            for users in pollers.values() if len(users) > 1]


def _ivr_category_problems(cfg: GatewayConfig, source: str) -> list[str]:
    from gateway.errors import GatewayError
    from gateway.escalation.service import load_catalogue

    try:
        known = load_catalogue(cfg.escalation).categories
    except GatewayError:
        return []  # the catalogue's own problems are reported above
    return [f"{source}: ivr.categories[{i}].name: {c.name!r} is not in {cfg.escalation.categories_file}"
            for i, c in enumerate(cfg.ivr.categories) if c.name not in known]


def _dispatch_problems(d: DispatchConfig, source: str) -> list[str]:
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


def _ivr_problems(ivr: IvrConfig, source: str) -> list[str]:
    p: list[str] = []
    if ivr.digit_timeout_s <= 0:
        p.append(f"{source}: ivr.digit_timeout_s: expected a positive number of seconds")
    if not 0 < ivr.max_s <= 120:
        p.append(f"{source}: ivr.max_s: expected 0-120 seconds (a caller must reach a human quickly)")
    for digit in ivr.languages:
        if digit not in "123456789" or len(digit) != 1:
            p.append(f"{source}: ivr.languages: key {digit!r}: expected a single digit 1-9")
    digits = [c.digit for c in ivr.categories]
    for i, cat in enumerate(ivr.categories):
        if len(cat.digit) != 1 or cat.digit not in "123456789":
            p.append(f"{source}: ivr.categories[{i}].digit: expected a single digit 1-9 (0 is the dispatcher)")
        elif digits.count(cat.digit) > 1:
            p.append(f"{source}: ivr.categories[{i}].digit: digit {cat.digit} used twice")
        if not re.match(NAME_RE, cat.name):
            p.append(f"{source}: ivr.categories[{i}].name: expected a name matching {NAME_RE}")
    return p


def problems_in(path: str | Path) -> list[str]:
    """Every problem in a config file, or an empty list (for `gateway check-config`)."""
    try:
        load(path)
    except ConfigError as exc:
        return exc.problems
    return []
