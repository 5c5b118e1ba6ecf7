"""Configuration loading: the shipped file, typos at every depth, wrong types, semantic checks."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import check_config
from gateway import settings as config
from gateway.errors import ConfigError

RAW: dict[str, Any] = tomllib.loads(config.DEFAULT_PATH.read_text(encoding="utf-8"))


def problems(mutate: Callable[[dict[str, Any]], object]) -> list[str]:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        check_config.parse(raw, "test.toml")
    assert str(info.value) == "\n".join(info.value.problems)
    assert all(p.startswith("test.toml: ") for p in info.value.problems)
    return info.value.problems


def test_shipped_config_loads() -> None:
    cfg = config.load()
    assert [s.name for s in cfg.services] == ["112", "102", "1402"]
    assert "+7112" in cfg.services[0].dialled and "+71402" in cfg.services[2].dialled
    assert [(p.name, p.group) for p in cfg.dispatch.positions] == [
        ("pos1", "emergency"), ("pos2", "emergency"), ("pos3", "1402")]
    assert cfg.ivr.offer_1402_digit == "5" and cfg.dispatch.emergency_may_use_1402
    assert cfg.dispatch.ring_timeout_s == 20.0
    assert {c.digit: (c.name, c.priority) for c in cfg.ivr.categories}["2"] == ("fire", 9)
    assert (cfg.ani.country_code, cfg.ani.trunk_prefix, cfg.ani.national_length) == ("7", "8", 10)
    assert check_config.problems_in(config.DEFAULT_PATH) == []


def test_minimal_config_gets_defaults() -> None:
    cfg = config.parse({"services": [{"name": "112", "dialled": ["112"]}],
                        "dispatch": {"positions": [{"name": "pos1", "contact": "sip:pos1@127.0.0.1:5071"}]}})
    assert cfg.asterisk.sip_port == 5060
    assert cfg.ivr.languages == {"1": "kk", "2": "ru", "3": "en"}
    assert cfg.http.port == 8080


def test_config_is_immutable() -> None:
    cfg = config.load()
    with pytest.raises(AttributeError):
        cfg.asterisk.sip_port = 1  # type: ignore[misc]


@pytest.mark.parametrize("mutate, where, key", [
    (lambda r: r.update(dispach=r["dispatch"]), "dispach", "dispach"),
    (lambda r: r["asterisk"].update(sip_prot=5060), "asterisk", "sip_prot"),
    (lambda r: r["dispatch"]["positions"][1].update(nmae="x"), "dispatch.positions[1]", "nmae"),
    (lambda r: r["ivr"]["categories"][2].update(prio=1), "ivr.categories[2]", "prio"),
    (lambda r: r["services"][1].update(dialed=["102"]), "services[1]", "dialed"),
], ids=["top", "section", "position", "category", "service"])
def test_typo_is_reported_with_its_key_path(mutate: Callable[[dict[str, Any]], object], where: str, key: str) -> None:
    [problem] = problems(mutate)
    assert where in problem
    assert key in problem


def test_typos_in_several_sections_are_all_reported_at_once() -> None:
    def mutate(r: dict[str, Any]) -> None:
        r["asterisk"]["sip_prot"] = 1
        r["dispatch"]["positions"][1]["nmae"] = "x"
        r["ivr"]["categories"][2]["prio"] = 1
        r["store"]["pth"] = "x"
        r["colour"] = "red"

    found = problems(mutate)
    assert len(found) == 5
    for where, key in [("asterisk", "sip_prot"), ("dispatch.positions[1]", "nmae"),
                       ("ivr.categories[2]", "prio"), ("store", "pth"), ("colour", "colour")]:
        assert any(where in p and key in p for p in found), (where, key, found)


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r["asterisk"].update(sip_port="5060"), "asterisk.sip_port"),
    (lambda r: r["asterisk"].update(mode="docker"), "asterisk.mode"),
    (lambda r: r["asterisk"].update(default_language="de"), "asterisk.default_language"),
    (lambda r: r["dispatch"].update(ring_timeout_s="20s"), "dispatch.ring_timeout_s"),
    (lambda r: r["services"][0].update(dialled="112"), "services[0].dialled"),
    (lambda r: r["ivr"].update(enabled="yes"), "ivr.enabled"),
    (lambda r: r["ivr"]["languages"].update({"4": "de"}), "ivr.languages"),
    (lambda r: r["ivr"]["categories"][0].update(priority="high"), "ivr.categories[0].priority"),
    (lambda r: r.update(asterisk=5), "asterisk"),
    (lambda r: r.update(services={"name": "112"}), "services"),
])
def test_wrong_types_are_reported_with_key_path(mutate: Callable[[dict[str, Any]], object], where: str) -> None:
    [problem] = problems(mutate)
    assert where in problem


@pytest.mark.parametrize("section", ["services", "dispatch"])
def test_missing_required_section(section: str) -> None:
    [problem] = problems(lambda r: r.pop(section))
    assert f"missing required section '{section}'" in problem


def test_missing_required_key_in_position() -> None:
    [problem] = problems(lambda r: r["dispatch"]["positions"][0].pop("contact"))
    assert "dispatch.positions[0]" in problem and "contact" in problem


# --- semantic checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r["services"][1]["dialled"].append("112"), "services[1].dialled: 112 already routes to service 112"),
    (lambda r: r["services"][0]["dialled"].append("8112"), "services[0].dialled: 8112 already routes"),
    (lambda r: r["services"][0]["dialled"].append("1-1-2"), "services[0].dialled: expected digits"),
    (lambda r: r["services"][0]["dialled"].append("1"), "services[0].dialled: expected digits"),
    (lambda r: r["services"][0].update(name="police"), "services[0].name"),
    (lambda r: r.update(services=[]), "services: expected at least one"),
    (lambda r: r["asterisk"].update(sip_port=70000), "asterisk.sip_port: expected a port number"),
    (lambda r: r["asterisk"].update(ami_port=0), "asterisk.ami_port: expected a port number"),
    (lambda r: r["asterisk"].update(rtp_end=-1), "asterisk.rtp_end: expected a port number"),
    (lambda r: r["asterisk"].update(rtp_start=20000, rtp_end=10000), "asterisk.rtp_start: expected below"),
    (lambda r: r["asterisk"].update(http_port=5060), "ports and http.port must all differ"),
    (lambda r: r["http"].update(port=5038), "ports and http.port must all differ"),
    (lambda r: r["asterisk"].update(app="Bad App"), "asterisk.app"),
    (lambda r: r["asterisk"].update(ari_password="has space"), "asterisk.ari_password"),
    (lambda r: r["asterisk"].update(ami_user=""), "asterisk.ami_user"),
    (lambda r: r["dispatch"].update(positions=[]), "dispatch.positions: expected at least one"),
    (lambda r: r["dispatch"]["positions"][1].update(name="pos1"), "dispatch.positions[1].name: duplicate position"),
    (lambda r: r["dispatch"]["positions"][0].update(name="Pos 1"), "dispatch.positions[0].name"),
    (lambda r: r["dispatch"]["positions"][0].update(contact="http://pos1"), "dispatch.positions[0].contact"),
    (lambda r: r["dispatch"]["positions"][0].update(contact="pos1@127.0.0.1"), "dispatch.positions[0].contact"),
    (lambda r: r["dispatch"]["positions"][0].update(contact="sip:a@b\nmax_contacts=9"),
     "dispatch.positions[0].contact"),
    (lambda r: r["dispatch"]["positions"][0].update(contact="sip:"), "dispatch.positions[0].contact"),
    (lambda r: r["dispatch"].update(backup="backup.example"), "dispatch.backup"),
    (lambda r: r["dispatch"].update(fallback_positions=["pos1", "pos9"]),
     "fallback_positions: unknown position 'pos9'"),
    (lambda r: r["dispatch"].update(ring_timeout_s=0), "dispatch.ring_timeout_s"),
    (lambda r: r["dispatch"].update(overflow_after_s=-5), "dispatch.overflow_after_s"),
    (lambda r: r["ivr"].update(digit_timeout_s=0), "ivr.digit_timeout_s"),
    (lambda r: r["ivr"].update(languages={"0": "kk"}), "ivr.languages: key '0'"),
    (lambda r: r["ivr"].update(languages={"12": "kk"}), "ivr.languages: key '12'"),
    (lambda r: r["ivr"].update(languages={"": "kk"}), "ivr.languages: key ''"),
    (lambda r: r["ivr"].update(languages={"#": "kk"}), "ivr.languages: key '#'"),
    (lambda r: r["ivr"]["categories"][0].update(digit="0"), "ivr.categories[0].digit: expected a single digit"),
    (lambda r: r["ivr"]["categories"][0].update(digit=""), "ivr.categories[0].digit: expected a single digit"),
    (lambda r: r["ivr"]["categories"][0].update(digit="12"), "ivr.categories[0].digit: expected a single digit"),
    (lambda r: r["ivr"]["categories"][0].update(digit="*"), "ivr.categories[0].digit: expected a single digit"),
    (lambda r: r["ivr"]["categories"][0].update(name="Police!"), "ivr.categories[0].name"),
    # the 1402 line: its positions, its menu and the 102 menu's key for it
    (lambda r: r["dispatch"]["positions"][2].update(group="police"), "dispatch.positions[2].group"),
    (lambda r: r["dispatch"]["positions"][2].update(group="emergency"),
     'service 1402 is configured but no position has group = "1402"'),
    (lambda r: [p.update(group="1402") for p in r["dispatch"]["positions"]],
     "dispatch.positions: expected at least one 102/112 position"),
    (lambda r: r.update(services=r["services"][:2]), 'pos3 in group "1402" but no [[services]] named 1402'),
    (lambda r: (r.update(services=r["services"][:2]), r["dispatch"]["positions"].pop()),
     "ivr.offer_1402_digit: offers 1402 but no [[services]] named 1402"),
    (lambda r: r["ivr"].update(offer_1402_digit="0"), "ivr.offer_1402_digit: expected a single digit 1-9"),
    (lambda r: r["ivr"].update(offer_1402_digit="55"), "ivr.offer_1402_digit: expected a single digit 1-9"),
    (lambda r: r["ivr"].update(offer_1402_digit="#"), "ivr.offer_1402_digit: expected a single digit 1-9"),
    (lambda r: r["ivr"].update(offer_1402_digit="2"), "ivr.offer_1402_digit: digit 2 is already a category"),
    (lambda r: r["ivr"]["menu_1402"]["categories"][1].update(digit="1"),
     "ivr.menu_1402.categories[1].digit: digit 1 used twice"),
    (lambda r: r["ivr"]["menu_1402"]["categories"][0].update(digit="0"),
     "ivr.menu_1402.categories[0].digit: expected a single digit"),
    (lambda r: r["ivr"]["menu_1402"]["categories"][0].update(priority=12), "ivr.menu_1402.categories[0].priority"),
    (lambda r: r["ivr"]["menu_1402"].update(default_priority=-1), "ivr.menu_1402.default_priority"),
    (lambda r: r["store"].update(commit_window_s=0.2), "store.commit_window_s: expected 0-0.05 seconds"),
    (lambda r: r["store"].update(commit_window_s=-0.001), "store.commit_window_s: expected 0-0.05 seconds"),
])
def test_semantic_problem_is_reported(mutate: Callable[[dict[str, Any]], object], expected: str) -> None:
    found = problems(mutate)
    assert any(expected in p for p in found), found


def test_duplicate_category_digit_names_both_entries() -> None:
    found = problems(lambda r: r["ivr"]["categories"][1].update(digit="1"))
    assert any("categories[0].digit: digit 1 used twice" in p for p in found)
    assert any("categories[1].digit: digit 1 used twice" in p for p in found)


def test_semantic_problems_are_all_reported_at_once() -> None:
    def mutate(r: dict[str, Any]) -> None:
        r["asterisk"]["sip_port"] = 0
        r["services"][1]["dialled"].append("112")
        r["dispatch"]["fallback_positions"] = ["nobody"]
        r["ivr"]["categories"][0]["digit"] = "0"

    assert len(problems(mutate)) == 4


def test_valid_fallback_positions_and_sips_contacts_are_accepted() -> None:
    raw = copy.deepcopy(RAW)
    raw["dispatch"]["fallback_positions"] = ["pos2"]
    raw["dispatch"]["positions"][0]["contact"] = "sips:pos1@pbx.example:5061"
    raw["dispatch"]["backup"] = ""
    cfg = config.parse(raw)
    assert cfg.dispatch.fallback_positions == ["pos2"]


# --- files -------------------------------------------------------------------------------------

def test_problems_in_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    [problem] = check_config.problems_in(path)
    assert str(path) in problem
    assert "cannot read" in problem


def test_problems_in_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[asterisk]\nsip_port = = 5060\n', encoding="utf-8")
    [problem] = check_config.problems_in(path)
    assert problem.startswith(f"{path}: not valid TOML")
    assert "line 2" in problem


def test_problems_in_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "cp1251.toml"
    path.write_bytes("# Алматы\n".encode("cp1251") + config.DEFAULT_PATH.read_bytes())
    [problem] = check_config.problems_in(path)
    assert str(path) in problem and "UTF-8" in problem


def test_problems_in_reports_schema_problems_with_file_name(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(config.DEFAULT_PATH.read_text(encoding="utf-8").replace("sip_port =", "sip_prot ="),
                    encoding="utf-8")
    [problem] = check_config.problems_in(path)
    assert problem.startswith(f"{path}: ") and "sip_prot" in problem


def test_load_raises_config_error_for_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path)


def test_two_pollers_on_one_telegram_bot_are_refused() -> None:
    found = problems(lambda r: r["reports"].update(telegram102={"enabled": True, "bot_token": "123456:DRILL-token"}))
    assert found == ["test.toml: escalation.channels.telegram and reports.telegram102 use the same bot token: "
                     "give each its own bot"]


def test_escalation_settings_and_ivr_categories_are_checked() -> None:
    found = problems(lambda r: (r["escalation"].update(answer_sla_s=0, timezone="Mars/Olympus"),
                                r["ivr"]["categories"][0].update(name="no_such_category")))
    text = "\n".join(found)
    assert "escalation.answer_sla_s: expected 1-600 s" in text and "unknown time zone 'Mars/Olympus'" in text
    assert "ivr.categories[0].name: 'no_such_category' is not in config/categories.toml" in text


def test_a_1402_menu_category_must_be_in_the_catalogue() -> None:
    found = problems(lambda r: r["ivr"]["menu_1402"]["categories"][0].update(name="noise_at_night"))
    assert found == ["test.toml: ivr.menu_1402.categories[0].name: 'noise_at_night' is not in "
                     "config/categories.toml"]


def test_1402_calls_may_go_to_emergency_positions_alone_when_configured_so() -> None:
    raw = copy.deepcopy(RAW)
    raw["dispatch"]["positions"].pop()
    raw["dispatch"]["emergency_positions_take_1402"] = True
    assert config.parse(raw).dispatch.emergency_positions_take_1402
