"""The category catalogue (``config/categories.toml``) and its scenarios (``config/scenarios/``).

``load`` reads both and reports every problem at once: a category naming a missing scenario, a
scenario no category uses, and each scenario's own problems (see ``model.check``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec

from gateway.errors import ConfigError
from gateway.scenario import people as people_file
from gateway.scenario import texts as texts_file
from gateway.scenario.model import Known, Scenario, check
from gateway.scenario.model import load as load_scenario
from gateway.settings.base import Base, project_path
from gateway.settings.escalation import EscalationConfig

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class Category(Base, frozen=True):
    name: str
    title: dict[str, str]  # kk, ru, en
    priority: int  # 0 lowest .. 9 highest
    scenario: str
    warning_event: str = ""  # the public-warning template a scenario may draft


class CategoriesFile(Base, frozen=True):
    categories: list[Category]


class Catalogue(msgspec.Struct, frozen=True, kw_only=True):
    categories: dict[str, Category]
    scenarios: dict[str, Scenario]

    def scenario_for(self, category: str) -> Scenario:
        """The scenario of a category; an unknown category gets the "unclassified" one."""
        found = self.categories.get(category) or self.categories["unclassified"]
        return self.scenarios[found.scenario]


def load(categories_path: str | Path, scenarios_dir: str | Path, known: Known | None = None,
         also_used: frozenset[str] = frozenset()) -> Catalogue:
    """Read and check the catalogue; raises ConfigError listing every problem. ``also_used`` names
    scenarios run by something other than a category (the answer-time SLA)."""
    known = known or Known()
    categories_path, scenarios_dir = Path(categories_path), Path(scenarios_dir)
    problems: list[str] = []
    categories = _categories(categories_path, problems)
    scenarios: dict[str, Scenario] = {}
    for path in sorted(scenarios_dir.glob("*.toml")):
        try:
            scenario = load_scenario(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        scenarios[scenario.name] = scenario
        problems.extend(check(scenario, known, where=str(path)))
    problems.extend(_cross_problems(categories_path, categories, scenarios, also_used))
    if problems:
        raise ConfigError(problems)
    return Catalogue(categories={c.name: c for c in categories}, scenarios=scenarios)


def _categories(path: Path, problems: list[str]) -> list[Category]:
    try:
        parsed = msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), CategoriesFile)
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror}")
        return []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, msgspec.ValidationError) as exc:
        problems.append(f"{path}: {exc}")
        return []
    return parsed.categories


def _cross_problems(path: Path, categories: list[Category], scenarios: dict[str, Scenario],
                    also_used: frozenset[str]) -> list[str]:
    p: list[str] = []
    names = [c.name for c in categories]
    for i, c in enumerate(categories):
        where = f"{path}: categories[{i}] ({c.name})"
        if not NAME_RE.match(c.name):
            p.append(f"{where}: name: expected lower-case letters, digits or _")
        if names.count(c.name) > 1:
            p.append(f"{where}: duplicate category")
        missing = [lang for lang in ("kk", "ru", "en") if not c.title.get(lang)]
        if missing:
            p.append(f"{where}: title: missing {', '.join(missing)}")
        if not 0 <= c.priority <= 9:
            p.append(f"{where}: priority: expected 0-9")
        if c.scenario not in scenarios:
            p.append(f"{where}: scenario {c.scenario!r} has no file in the scenarios directory")
    if categories and "unclassified" not in names:
        p.append(f"{path}: a category named 'unclassified' is required (calls nobody classified)")
    used = {c.scenario for c in categories} | also_used
    p.extend(f"scenario {name}: named in the configuration but has no file"
             for name in sorted(also_used - set(scenarios)))
    p.extend(f"scenario {name}: no category uses it" for name in sorted(set(scenarios) - used))
    return p


def load_catalogue(cfg: EscalationConfig, known: Known | None = None) -> Catalogue:
    """The categories and scenarios ``[escalation]`` names; raises ConfigError listing every problem."""
    return load(project_path(cfg.categories_file), project_path(cfg.scenarios_dir), known,
                also_used=frozenset({cfg.sla_scenario}))


def known_for(directory: people_file.Directory, texts: texts_file.Texts, *, unit_kinds: frozenset[str],
              warning_events: frozenset[str]) -> Known:
    """What scenarios may refer to."""
    return Known(roles=directory.roles, people=frozenset(directory.people), units=unit_kinds,
                 templates=texts.names, events=warning_events, tiers=frozenset(directory.tiers),
                 centres=frozenset(directory.centres))


def check_files(cfg: EscalationConfig, *, unit_kinds: frozenset[str], warning_events: frozenset[str]) -> list[str]:
    """check-config: every problem of the directory, templates, categories and scenarios."""
    p: list[str] = []
    try:
        directory = people_file.load(project_path(cfg.responders_file))
    except ConfigError as exc:
        p.extend(exc.problems)
    try:
        texts = texts_file.load(project_path(cfg.templates_dir))
    except ConfigError as exc:
        p.extend(exc.problems)
    if p:
        return p
    try:
        load_catalogue(cfg, known_for(directory, texts, unit_kinds=unit_kinds, warning_events=warning_events))
    except ConfigError as exc:
        return exc.problems
    return []
