"""The whole config file (``config/gateway.toml``): its sections, loading, and the checks of its values.

Every problem is reported with the file, the key and what was expected, so an operator fixing a
config at 3 a.m. sees all mistakes at once rather than one per restart. Files the config points at
(scenarios, templates, zones, rosters, sites) are checked by ``gateway.check_config``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from gateway.errors import ConfigError
from gateway.settings.asterisk import AsteriskConfig, asterisk_problems
from gateway.settings.base import PROJECT, Base
from gateway.settings.callbacks import CallbackConfig, SilenceConfig, callback_problems
from gateway.settings.cluster import ClusterConfig, cluster_problems
from gateway.settings.escalation import EscalationConfig, escalation_problems
from gateway.settings.intake import (
    AlarmConfig,
    AniConfig,
    CorrelationConfig,
    DispatchConfig,
    IvrConfig,
    LocationConfig,
    ReportsConfig,
    Service,
    alarm_problems,
    dispatch_problems,
    ivr_problems,
    line_1402_problems,
    location_problems,
)
from gateway.settings.recordings import RecordingsConfig, recordings_problems
from gateway.settings.units import UnitsConfig, units_problems
from gateway.settings.warnings import WarningsConfig, warnings_problems

DEFAULT_PATH = PROJECT / "config" / "gateway.toml"


class StoreConfig(Base, frozen=True):
    """Where incidents are kept: ``backend = "sqlite"`` in the file ``path``, or ``"postgresql"`` at ``dsn``
    (a libpq URI, e.g. ``postgresql://ecgw:PASSWORD@db1:5432,db2:5432/ecgw?target_session_attrs=read-write``;
    its schema made by ``gateway db migrate``). ``path`` is needed either way: on PostgreSQL this node's spool
    and the drills stay in SQLite files beside it. ``commit_wait_s``: how long an incident's COMMIT waits for
    PostgreSQL's synchronous standby before going on with the write on the primary only (``/health`` then
    degraded; ``gateway.incident.sync_wait``). ``commit_window_s``: while several calls write at once, how long
    a write may wait for others to share its transaction (one commit and fsync for all; a new incident never
    waits and takes every write waiting with it, a lone writer never waits; 0: never; ``gateway.threads.Batches``).
    20 ms, more than the time between calls at 50 calls/s: ~1 transaction per call instead of 3.5."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    path: str = "var/gateway.sqlite3"
    dsn: str = ""
    commit_wait_s: float = 1.0
    commit_window_s: float = 0.02


class HttpConfig(Base, frozen=True):
    """Where the API and console listen. ``certfile``/``keyfile`` (PEM) serve HTTPS; without them only
    loopback is sensible (session cookies and passwords would cross the network in the clear)."""

    host: str = "127.0.0.1"
    port: int = 8080
    certfile: str = ""
    keyfile: str = ""
    tile_url: str = ""  # the centre's own map tiles, e.g. "https://tiles.centre.kz/{z}/{x}/{y}.png"; none: zones
    pmtiles: str = ""  # or a raster PMTiles file the gateway serves itself (path like other paths); none: zones


class PeopleConfig(Base, frozen=True):
    """Accounts (``gateway users``): a session ends after ``idle_timeout_s`` without a request;
    ``lockout_after`` wrong passwords in a row lock an account for ``lockout_s``."""

    idle_timeout_s: float = 900.0
    lockout_after: int = 5
    lockout_s: float = 900.0


class GatewayConfig(Base, frozen=True):
    services: list[Service]
    dispatch: DispatchConfig
    asterisk: AsteriskConfig = AsteriskConfig()
    ivr: IvrConfig = IvrConfig()
    store: StoreConfig = StoreConfig()
    http: HttpConfig = HttpConfig()
    people: PeopleConfig = PeopleConfig()
    ani: AniConfig = AniConfig()
    location: LocationConfig = LocationConfig()
    correlation: CorrelationConfig = CorrelationConfig()
    warnings: WarningsConfig = WarningsConfig()
    escalation: EscalationConfig = EscalationConfig()
    units: UnitsConfig = UnitsConfig()
    alarm: AlarmConfig = AlarmConfig()
    reports: ReportsConfig = ReportsConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    callback: CallbackConfig = CallbackConfig()
    silence: SilenceConfig = SilenceConfig()
    cluster: ClusterConfig = ClusterConfig()


Check = Callable[[GatewayConfig, str], list[str]]


def load(path: str | Path = DEFAULT_PATH, also: Check | None = None) -> GatewayConfig:
    """Read and validate a config file. Raises ConfigError listing every problem found, those of
    ``also(cfg, source)`` (checks of the files it names) included."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}): save the file as UTF-8"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return parse(raw, str(path), also)


def parse(raw: dict[str, object], source: str = "<config>", also: Check | None = None) -> GatewayConfig:
    """Validate an already-decoded TOML document (see ``load``)."""
    problems = _schema_problems(raw, source)
    if problems:
        raise ConfigError(problems)
    cfg = msgspec.convert(raw, GatewayConfig)
    problems = semantic_problems(cfg, source) + (also(cfg, source) if also is not None else [])
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
    p = asterisk_problems(cfg.asterisk, cfg.http.port, source)
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
    p += dispatch_problems(cfg.dispatch, source)
    p += ivr_problems(cfg.ivr, source)
    p += line_1402_problems(cfg.services, cfg.dispatch, cfg.ivr, source)
    p += location_problems(cfg.location, source)
    p += warnings_problems(cfg.warnings, source)
    p += escalation_problems(cfg.escalation, source)
    p += units_problems(cfg.units, source)
    p += alarm_problems(cfg.alarm, source)
    p += recordings_problems(cfg.recordings, source)
    p += callback_problems(cfg.callback, cfg.silence, source)
    p += cluster_problems(cfg.cluster, source, cfg.asterisk.sip_port)
    p += store_problems(cfg.store, source)
    return p + bot_problems(cfg, source) + http_problems(cfg, source)


def store_problems(store: StoreConfig, source: str) -> list[str]:
    """A DSN for PostgreSQL (and only there); a path always (the SQLite files beside it)."""
    p = [] if store.path.strip() else [f"{source}: store.path: expected a file path (the SQLite store, and the"
                                       " accounts and unit board beside it on either backend)"]
    dsn = store.dsn.strip()
    if store.backend == "postgresql" and not dsn:
        p.append(f"{source}: store.dsn: backend \"postgresql\" needs a libpq URI, e.g."
                 " postgresql://ecgw:PASSWORD@host:5432/ecgw?target_session_attrs=read-write")
    elif store.backend == "postgresql" and not re.match(r"^postgres(ql)?://", dsn) and "=" not in dsn:
        p.append(f"{source}: store.dsn: expected a libpq URI (postgresql://user:password@host:port/database)"
                 " or key=value pairs")
    elif store.backend != "postgresql" and dsn:
        p.append(f"{source}: store.dsn: only used with backend = \"postgresql\" (backend is {store.backend!r})")
    if not 0.1 <= store.commit_wait_s <= 30.0:
        p.append(f"{source}: store.commit_wait_s: expected 0.1-30 seconds, got {store.commit_wait_s:g}")
    if not 0.0 <= store.commit_window_s <= 0.05:
        p.append(f"{source}: store.commit_window_s: expected 0-0.05 seconds (it delays writes), got"
                 f" {store.commit_window_s:g}")
    return p


def http_problems(cfg: GatewayConfig, source: str) -> list[str]:
    h, people = cfg.http, cfg.people
    if h.tile_url and not re.match(r"^https?://[^/\s]+/\S*\{z\}\S*\{x\}\S*\{y\}", h.tile_url):
        problems = [f"{source}: http.tile_url: expected http(s)://host/...{{z}}...{{x}}...{{y}}..., got {h.tile_url!r}"]
    else:
        problems = []
    if h.tile_url and h.pmtiles:
        problems.append(f"{source}: http: give tile_url or pmtiles, not both (the map has one base layer)")
    p = problems + [f"{source}: http.{key}: give both certfile and keyfile, or neither"
         for key, value, other in (("certfile", h.certfile, h.keyfile), ("keyfile", h.keyfile, h.certfile))
         if value and not other]
    if people.idle_timeout_s < 60 or people.idle_timeout_s > 86_400:
        p.append(f"{source}: people.idle_timeout_s: expected 60-86400 seconds, got {people.idle_timeout_s}")
    if not 3 <= people.lockout_after <= 20:
        p.append(f"{source}: people.lockout_after: expected 3-20 wrong passwords, got {people.lockout_after}")
    if people.lockout_s < 60:
        p.append(f"{source}: people.lockout_s: expected at least 60 seconds, got {people.lockout_s}")
    return p


def bot_problems(cfg: GatewayConfig, source: str) -> list[str]:
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
