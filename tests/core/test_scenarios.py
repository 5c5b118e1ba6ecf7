"""Category catalogue and response scenarios: the shipped set loads; every mistake is reported."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.errors import ConfigError
from gateway.scenario import catalogue
from gateway.scenario.model import Known, Scenario, check

ROOT = Path(__file__).resolve().parents[2]


def scenario(*steps: dict[str, object]) -> Scenario:
    return msgspec.convert({"name": "s", "steps": list(steps)}, Scenario)


NOTIFY = {"do": "notify", "roles": ["duty_officer"], "channels": ["voice"], "template": "incident_new"}


def test_shipped_catalogue_loads_with_every_category_the_brief_names() -> None:
    cat = catalogue.load(ROOT / "config" / "categories.toml", ROOT / "config" / "scenarios",
                         also_used=frozenset({"answer_sla"}))
    for name in ("crime_in_progress", "domestic_violence", "road_accident", "fire", "medical", "gas_leak",
                 "school_alarm", "missing_child", "terror_threat", "flood", "earthquake", "unclassified"):
        assert name in cat.categories
    assert cat.scenario_for("no-such-category").name == "unclassified"
    assert all(c.title.keys() >= {"kk", "ru", "en"} for c in cat.categories.values())


def test_references_are_checked_against_what_is_known() -> None:
    known = Known(roles=frozenset({"duty_officer"}), templates=frozenset({"incident_new"}),
                  tiers=frozenset({"supervisor"}), events=frozenset({"flood"}))
    s = scenario({**NOTIFY, "roles": ["duty_oficer"]}, {**NOTIFY, "template": "nope"},
                 {"do": "escalate", "tier": "mayor"}, {"do": "draft_warning", "event": "tsunami"}, {"do": "close"})
    found = "\n".join(check(s, known))
    for problem in ("unknown role 'duty_oficer'", "unknown template 'nope'", "unknown tier 'mayor'",
                    "unknown warning template 'tsunami'"):
        assert problem in found


def test_loops_need_a_bound_and_unreachable_steps_are_found() -> None:
    s = scenario({**NOTIFY, "id": "call"}, {"do": "goto", "target": "call"}, {"do": "close"},
                 {"do": "escalate", "tier": "x"})
    found = "\n".join(check(s, Known()))
    assert "loop needs max_times" in found
    assert "step 3: unreachable" in found and "step 4: unreachable" in found
    bounded = scenario({**NOTIFY, "id": "call"}, {"do": "goto", "target": "call", "max_times": 3}, {"do": "close"})
    assert check(bounded, Known()) == []


@pytest.mark.parametrize("step, problem", [
    ({"do": "goto", "target": "nowhere"}, "no step has this id"),
    ({**NOTIFY, "roles": []}, "nobody to notify"),
    ({**NOTIFY, "repeat": 50}, "repeat: expected 1-20"),
    ({**NOTIFY, "ack": "any", "timeout_s": 1}, "timeout_s"),
    ({**NOTIFY, "when": {"between": ["25:00", "07:00"]}}, "HH:MM"),
    ({**NOTIFY, "id": "Bad Id"}, "lower-case"),
])
def test_each_step_mistake_is_named(step: dict[str, object], problem: str) -> None:
    assert problem in "\n".join(check(scenario(step, {"do": "close"}), Known()))


def test_catalogue_cross_checks_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "lonely.toml").write_text('[[steps]]\ndo = "close"\n')
    (tmp_path / "scenarios" / "broken.toml").write_text('[[steps]]\ndo = "teleport"\n')
    (tmp_path / "categories.toml").write_text('''
[[categories]]
name = "fire"
title = { ru = "Пожар" }
priority = 12
scenario = "missing"
''')
    with pytest.raises(ConfigError) as err:
        catalogue.load(tmp_path / "categories.toml", tmp_path / "scenarios")
    found = "\n".join(err.value.problems)
    for problem in ("broken.toml", "title: missing kk, en", "priority: expected 0-9", "'missing' has no file",
                    "'unclassified' is required", "scenario lonely: no category uses it"):
        assert problem in found


def test_check_config_reports_a_scenario_naming_an_unknown_warning_template(tmp_path: Path) -> None:
    import shutil

    from gateway.check_config import problems_in

    shutil.copytree(ROOT / "config" / "scenarios", tmp_path / "scenarios")
    shutil.copy(ROOT / "config" / "categories.toml", tmp_path / "categories.toml")
    broken = tmp_path / "scenarios" / "natural_disaster.toml"
    broken.write_text(broken.read_text().replace('do = "draft_warning"', 'do = "draft_warning"\nevent = "tsunami"'))
    text = (ROOT / "config" / "gateway.toml").read_text().replace(
        'categories_file = "config/categories.toml"', f'categories_file = "{tmp_path}/categories.toml"').replace(
        'scenarios_dir = "config/scenarios"', f'scenarios_dir = "{tmp_path}/scenarios"')
    (tmp_path / "gateway.toml").write_text(text)
    found = problems_in(tmp_path / "gateway.toml")
    assert len(found) == 1 and "unknown warning template 'tsunami'" in found[0] and "escalation" in found[0]
