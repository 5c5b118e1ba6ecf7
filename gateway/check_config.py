"""``gateway check-config``: the config file and every file it points at, with every problem at once.

``gateway.settings`` checks the values of the config file itself; this module also loads what those
values name (zones, alert templates, the units roster, alarm sites, the responders' directory and
texts, categories and scenarios) with each feature's own pure loader, and checks that they agree
with each other (an IVR category must be in the catalogue, a scenario's unit kind in the roster).
``gateway run`` starts only from a config that passes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway import settings
from gateway.errors import ConfigError, GatewayError
from gateway.intake.alarm.sites import load_sites
from gateway.scenario.catalogue import check_files, load_catalogue
from gateway.settings import GatewayConfig, project_path
from gateway.units.model import load_roster
from gateway.warning import zones
from gateway.warning.templates import load_catalogue as load_templates


def load(path: str | Path = settings.DEFAULT_PATH) -> GatewayConfig:
    """Read a config file and check it with everything it names. Raises ConfigError listing every problem."""
    return settings.load(path, also=file_problems)


def parse(raw: dict[str, object], source: str = "<config>") -> GatewayConfig:
    """``load`` for an already-decoded TOML document."""
    return settings.parse(raw, source, also=file_problems)


def problems_in(path: str | Path) -> list[str]:
    """Every problem in a config file and the files it names, or an empty list."""
    try:
        load(path)
    except ConfigError as exc:
        return exc.problems
    return []


def file_problems(cfg: GatewayConfig, source: str = "<config>") -> list[str]:
    """Problems of the files a valid config names, each with its file and key."""
    p = _warning_files(cfg, source)
    if cfg.units.enabled:
        p += _loads(lambda: load_roster(project_path(cfg.units.roster_file)), f"{source}: units: ")
    if cfg.alarm.enabled:
        p += _loads(lambda: load_sites(project_path(cfg.alarm.sites_file)), f"{source}: alarm.sites_file: ")
    p += [f"{source}: escalation: {problem}" for problem in
          check_files(cfg.escalation, unit_kinds=_unit_kinds(cfg), warning_events=_warning_events(cfg))]
    return p + _ivr_category_problems(cfg, source)


def _loads(load_file: Callable[[], object], prefix: str) -> list[str]:
    try:
        load_file()
    except ConfigError as exc:
        return [prefix + problem for problem in exc.problems]
    return []


def _warning_files(cfg: GatewayConfig, source: str) -> list[str]:
    """The zones and templates files ``[warnings]`` names must load."""
    found: list[str] = []
    w = cfg.warnings
    for load_file in (lambda: zones.load(project_path(w.zones_file)),
                      lambda: load_templates(project_path(w.templates_dir), max_sms_segments=w.max_sms_segments)):
        try:
            load_file()
        except GatewayError as exc:
            found.append(f"{source}: warnings: {exc}")
    return found


def _warning_events(cfg: GatewayConfig) -> frozenset[str]:
    try:
        return frozenset(load_templates(project_path(cfg.warnings.templates_dir)).events())
    except GatewayError:
        return frozenset()  # the warnings check reports the templates themselves


def _unit_kinds(cfg: GatewayConfig) -> frozenset[str]:
    try:
        return frozenset(load_roster(project_path(cfg.units.roster_file)).kinds)
    except GatewayError:
        return frozenset()  # reported by the units check


def _ivr_category_problems(cfg: GatewayConfig, source: str) -> list[str]:
    try:
        known = load_catalogue(cfg.escalation).categories
    except GatewayError:
        return []  # the catalogue's own problems are reported above
    return [f"{source}: ivr.categories[{i}].name: {c.name!r} is not in {cfg.escalation.categories_file}"
            for i, c in enumerate(cfg.ivr.categories) if c.name not in known]
