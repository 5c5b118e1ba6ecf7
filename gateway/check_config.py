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
from gateway.asterisk.dialplan import is_loopback, listen_addresses, render_all
from gateway.errors import ConfigError, GatewayError
from gateway.intake.alarm.sites import load_sites
from gateway.kamailio.render import render as render_kamailio
from gateway.protocols.pmtiles import HEADER_BYTES, PmtilesError, raster_problem, read_header
from gateway.scenario.catalogue import check_files, load_catalogue
from gateway.settings import GatewayConfig, project_path
from gateway.settings.cluster import cluster_problems
from gateway.settings.credentials import secret_path, shipped_defaults, with_secrets
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
    return findings(path)[0]


def findings(path: str | Path) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a config file: a problem stops ``gateway run``, a warning does not."""
    try:
        cfg = load(path)
    except ConfigError as exc:
        return exc.problems, []
    return [], secret_warnings(cfg, str(path))


def secret_warnings(cfg: GatewayConfig, source: str = "<config>") -> list[str]:
    """Shipped default secrets on services listening on loopback only: a random secret replaces each."""
    exposed = _exposed(cfg)
    return [f"{source}: {key}: {value!r} is a shipped default; {service.upper()} listens on loopback only, so a "
            f"random secret is generated on first use and kept in {secret_path(cfg, service)} (mode 0600)"
            for key, value, service in shipped_defaults(cfg) if not exposed.get(service)]


def file_problems(cfg: GatewayConfig, source: str = "<config>") -> list[str]:
    """Problems of the files a valid config names, each with its file and key."""
    p = _warning_files(cfg, source)
    if cfg.units.enabled:
        p += _loads(lambda: load_roster(project_path(cfg.units.roster_file)), f"{source}: units: ")
    if cfg.alarm.enabled:
        p += _loads(lambda: load_sites(project_path(cfg.alarm.sites_file)), f"{source}: alarm.sites_file: ")
    p += [f"{source}: escalation: {problem}" for problem in
          check_files(cfg.escalation, unit_kinds=_unit_kinds(cfg), warning_events=_warning_events(cfg))]
    p += _kamailio_problems(cfg, source)
    return p + _ivr_category_problems(cfg, source) + _secret_problems(cfg, source) + _pmtiles_problems(cfg, source)


def _kamailio_problems(cfg: GatewayConfig, source: str) -> list[str]:
    """With ``[cluster]`` on, Kamailio's template (dialplans/kamailio/) must render from it (bad values of
    the section itself are reported once, by ``gateway.settings``)."""
    if not cfg.cluster.enabled or cluster_problems(cfg.cluster):
        return []
    try:
        render_kamailio(cfg.cluster, "/srv/ecgw/kamailio-check")
    except ConfigError as exc:
        return [f"{source}: dialplans/kamailio: {problem}" for problem in exc.problems]
    except OSError as exc:
        return [f"{source}: dialplans/kamailio: cannot read the template: {exc.strerror or exc}"]
    return []


def _pmtiles_problems(cfg: GatewayConfig, source: str) -> list[str]:
    """``[http] pmtiles`` must be a readable PMTiles v3 archive of raster tiles (the console has no style
    for vector ones)."""
    if not cfg.http.pmtiles:
        return []
    path = project_path(cfg.http.pmtiles)
    try:
        with path.open("rb") as file:
            header = read_header(file.read(HEADER_BYTES))
    except OSError as exc:
        return [f"{source}: http.pmtiles: cannot read {path}: {exc.strerror or exc}"]
    except PmtilesError as exc:
        return [f"{source}: http.pmtiles: {path}: {exc}"]
    problem = raster_problem(header)
    return [f"{source}: http.pmtiles: {path}: {problem}"] if problem else []


def _secret_problems(cfg: GatewayConfig, source: str) -> list[str]:
    """A shipped default secret on a service reachable from beyond this host is refused: anyone who has
    read the source would hold it until the generated one replaced it."""
    try:
        exposed = _exposed(cfg)
    except ConfigError as exc:
        return [f"{source}: dialplans: {problem}" for problem in exc.problems]
    return [f"{source}: {key}: {value!r} is a shipped default and {service.upper()} listens on "
            f"{', '.join(exposed[service])} (dialplans/): set a secret of your own"
            for key, value, service in shipped_defaults(cfg) if exposed.get(service)]


def _exposed(cfg: GatewayConfig) -> dict[str, list[str]]:
    """The addresses beyond loopback ARI and AMI listen on, as the rendered configs say. Raises
    ConfigError for a template that does not render."""
    files = render_all(with_secrets(cfg, lambda service: "checked"), "/srv/ecgw/check", "/modules", "/data")
    return {service: [a for a in addresses if not is_loopback(a)]
            for service, addresses in listen_addresses(files).items()}


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
    menus = (("ivr.categories", cfg.ivr.categories), ("ivr.menu_1402.categories", cfg.ivr.menu_1402.categories))
    return [f"{source}: {key}[{i}].name: {c.name!r} is not in {cfg.escalation.categories_file}"
            for key, categories in menus for i, c in enumerate(categories) if c.name not in known]
