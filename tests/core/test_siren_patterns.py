"""Siren patterns: options → plan of relay states over time."""

from __future__ import annotations

import pytest

from gateway.errors import AlertError
from gateway.protocols.siren_patterns import Plan, Step, parse_options, plan, plan_for, state_at


def test_defaults_are_a_three_minute_steady_tone() -> None:
    p = plan_for({})
    assert p == Plan("steady", (Step(0.0, True), Step(180.0, False)))
    assert p.end_s == 180.0


def test_steady_with_duration() -> None:
    assert plan_for({"pattern": "steady", "duration_s": "30"}).steps == (Step(0.0, True), Step(30.0, False))


def test_steady_repeated_with_gaps() -> None:
    p = plan_for({"pattern": "steady", "duration_s": "10", "repeat": "3", "gap_s": "5"})
    assert [(s.at_s, s.on) for s in p.steps] == [(0, True), (10, False), (15, True), (25, False), (30, True),
                                                 (40, False)]


def test_wail_cycles_on_and_off_and_ends_off() -> None:
    p = plan_for({"pattern": "wail", "duration_s": "10", "on_s": "3", "off_s": "1"})
    assert [(s.at_s, s.on) for s in p.steps] == [(0, True), (3, False), (4, True), (7, False), (8, True), (10, False)]


def test_wail_repeat_offsets_each_sounding() -> None:
    p = plan_for({"pattern": "wail", "duration_s": "4", "on_s": "2", "off_s": "2", "repeat": "2", "gap_s": "6"})
    assert [(s.at_s, s.on) for s in p.steps] == [(0, True), (2, False), (10, True), (12, False)]


def test_off_and_cancel_are_one_off_step() -> None:
    assert plan_for({"pattern": "off"}).steps == (Step(0.0, False),)
    assert plan_for({"pattern": "wail", "msg_type": "Cancel"}).steps == (Step(0.0, False),)


def test_none_is_no_steps_whatever_its_duration() -> None:
    p = plan_for({"pattern": "none", "duration_s": "0"})
    assert p == Plan("none", ()) and p.end_s == 0.0
    assert not state_at(p, 1.0)


def test_pattern_name_is_case_and_space_tolerant_and_other_options_ignored() -> None:
    assert parse_options({"pattern": " Wail ", "sms_segments": "3"}).kind == "wail"


@pytest.mark.parametrize("options", [
    {"pattern": "whoop"},
    {"duration_s": "ten"},
    {"duration_s": "0"},
    {"duration_s": "nan"},
    {"duration_s": "inf"},
    {"duration_s": "3601"},
    {"repeat": "0"},
    {"repeat": "1.5"},
    {"repeat": "21"},
    {"on_s": "0.1"},
    {"off_s": "-1"},
    {"gap_s": "0"},
])
def test_bad_options_are_alert_errors_naming_the_option(options: dict[str, str]) -> None:
    with pytest.raises(AlertError) as info:
        parse_options(options)
    key = next(iter(options))
    assert key in str(info.value) or "pattern" in str(info.value)


def test_blank_option_means_default() -> None:
    assert parse_options({"duration_s": " "}).duration_s == 180.0


@pytest.mark.parametrize("options", [
    {"pattern": "wail", "duration_s": "180", "on_s": "0.5", "off_s": "0.5", "repeat": "20"},
    {"pattern": "wail", "duration_s": "7", "on_s": "2.5", "off_s": "0.5"},
    {"pattern": "steady", "duration_s": "1", "repeat": "20", "gap_s": "0.5"},
])
def test_every_plan_is_increasing_starts_at_zero_and_ends_off(options: dict[str, str]) -> None:
    p = plan_for(options)
    times = [s.at_s for s in p.steps]
    assert times[0] == 0 and times == sorted(set(times))
    assert p.steps[0].on and not p.steps[-1].on


def test_state_at() -> None:
    p = plan_for({"pattern": "wail", "duration_s": "10", "on_s": "3", "off_s": "1"})
    assert [state_at(p, t) for t in (-1, 0, 2.9, 3, 3.5, 4, 9.9, 10, 100)] == [
        False, True, True, False, False, True, True, False, False]


def test_plan_of_spec() -> None:
    assert plan(parse_options({"pattern": "off"})).kind == "off"
