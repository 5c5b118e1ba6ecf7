"""The scenario state machine, directory and responder texts, without I/O."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.errors import ConfigError
from gateway.scenario import machine as M
from gateway.scenario import people as directory
from gateway.scenario import texts
from gateway.scenario.model import Scenario, When
from gateway.scenario.people import Centre, Person, Tier

ROOT = Path(__file__).resolve().parents[2]
TIERS = {"sup": Tier(name="sup", roles=["shift_supervisor"], channels=["voice"], ack="any", timeout_s=30, repeat=2)}
CENTRES = {"city": Centre(name="city", email="d@x.example", channels=["email"])}


def scenario(*steps: dict[str, object]) -> Scenario:
    return msgspec.convert({"name": "s", "steps": list(steps)}, Scenario)


def facts(priority: int = 5, minutes: int = 12 * 60, zone: str = "", event: str = "") -> M.Facts:
    return M.Facts(priority=priority, service="112", zone=zone, local_minutes=minutes, warning_event=event)


def run() -> M.Run:
    return M.Run(key="i/category", incident_id="i", kind="category", scenario="s", category="fire")


NOTIFY = {"do": "notify", "roles": ["duty_officer"], "channels": ["console"], "template": "incident_new",
          "ack": "any", "timeout_s": 30, "repeat": 2}


def test_conditions_on_priority_zone_and_night_window_that_wraps_midnight() -> None:
    night = When(between=("21:00", "07:00"))
    assert M.applies(night, facts(minutes=23 * 60), None)
    assert M.applies(night, facts(minutes=6 * 60 + 59), None)
    assert not M.applies(night, facts(minutes=7 * 60), None)
    assert not M.applies(night, facts(minutes=12 * 60), None)
    day = When(between=("08:00", "20:00"))
    assert M.applies(day, facts(minutes=8 * 60), None) and not M.applies(day, facts(minutes=20 * 60), None)
    assert not M.applies(When(priority_at_least=8), facts(priority=7), None)
    assert M.applies(When(zone=["medeu"]), facts(zone="medeu"), None)
    assert not M.applies(When(zone=["medeu"]), facts(zone=""), None)
    assert not M.applies(When(last_acked=False), facts(), None)  # no notify step yet: not "unacknowledged"
    assert M.applies(When(last_acked=False), facts(), False)


def test_advance_skips_false_steps_and_stops_at_the_next_notify() -> None:
    s = scenario({"do": "forward", "centre": "city", "when": {"priority_at_least": 9}}, NOTIFY, {"do": "close"})
    r, skipped = run(), []
    action = M.advance(r, s, facts(priority=5), TIERS, CENTRES, skipped.append)
    assert isinstance(action, M.Notifying) and action.spec.kind == "notify" and action.spec.roles == ["duty_officer"]
    assert (r.pc, r.phase) == (1, "sending") and skipped == [M.Skipped(0, "forward")]


def test_escalate_and_forward_become_notifications_of_the_tier_and_the_centre() -> None:
    s = scenario({"do": "escalate", "tier": "sup"}, {"do": "forward", "centre": "city"}, {"do": "close"})
    r = run()
    first = M.advance(r, s, facts(), TIERS, CENTRES)
    assert isinstance(first, M.Notifying)
    assert (first.spec.kind, first.spec.roles, first.spec.ack, first.spec.repeat) == ("escalate", ["shift_supervisor"],
                                                                                    "any", 2)
    M.step_done(r, None)
    second = M.advance(r, s, facts(), TIERS, CENTRES)
    assert isinstance(second, M.Notifying)
    assert (second.spec.kind, second.spec.people, second.spec.template) == ("forward", ["centre:city"], "forwarded")


def test_bounded_goto_loops_then_falls_through_and_close_finishes() -> None:
    s = scenario({**NOTIFY, "id": "call"}, {"do": "goto", "target": "call", "max_times": 2,
                                            "when": {"last_acked": False}}, {"do": "close", "reason": "done"})
    r = run()
    visits = 0
    while True:
        action = M.advance(r, s, facts(), TIERS, CENTRES)
        if isinstance(action, M.Finished):
            break
        visits += 1
        M.step_done(r, False)  # nobody ever acknowledges
    assert visits == 3 and action == M.Finished("done") and r.phase == "done"
    assert r.loops == {"1": 2}


def test_goto_is_not_taken_once_acknowledged() -> None:
    s = scenario({**NOTIFY, "id": "call"}, {"do": "goto", "target": "call", "max_times": 5,
                                            "when": {"last_acked": False}}, {"do": "close"})
    r = run()
    M.advance(r, s, facts(), TIERS, CENTRES)
    M.step_done(r, True)
    assert isinstance(M.advance(r, s, facts(), TIERS, CENTRES), M.Finished)


def test_draft_warning_takes_the_category_event_unless_the_step_names_one() -> None:
    r = run()
    assert M.advance(r, scenario({"do": "draft_warning"}), facts(event="fire"), TIERS, CENTRES) == M.Drafting("fire")
    r = run()
    assert M.advance(r, scenario({"do": "draft_warning", "event": "flood"}), facts(event="fire"), TIERS,
                     CENTRES) == M.Drafting("flood")


def test_attempts_acks_any_and_each() -> None:
    r = run()
    r.targets = [M.new_target("person:a", "a"), M.new_target("unit:u1", "m1", "u1"),
                 M.new_target("unit:u1", "m2", "u1")]
    assert [t.person for t in M.start_attempt(r)] == ["a", "m1", "m2"]
    for t in r.targets:
        t.sent = r.attempt
    assert M.due(r) == [] and not M.satisfied(r, "any")
    assert M.acknowledge(r, r.targets[1].token, "m1", "voice", 1.0) is r.targets[1]
    assert M.acknowledge(r, r.targets[1].token, "m1", "voice", 2.0) is None  # a second press changes nothing
    assert M.satisfied(r, "any") and not M.satisfied(r, "each")
    assert [t.person for t in M.start_attempt(r)] == ["a"]  # the unit answered: its other member is not called again
    M.acknowledge(r, r.targets[0].token, "a", "sms", 3.0)
    assert M.satisfied(r, "each")


def test_deadline_gives_another_attempt_until_repeat_is_used_up() -> None:
    spec = M.Spec(kind="notify", channels=["voice"], template="t", ack="any", repeat=2)
    r = run()
    M.start_attempt(r)
    assert M.after_deadline(r, spec) == "again"
    M.start_attempt(r)
    assert M.after_deadline(r, spec) == "give_up"


def test_switch_starts_the_new_scenario_from_its_first_step() -> None:
    r = run()
    r.pc, r.phase, r.attempt = 3, "waiting", 2
    new = M.switch(r, "police_rapid", "crime_in_progress")
    assert (new.pc, new.phase, new.attempt, new.generation, new.key) == (0, "enter", 0, 1, r.key)


def test_shipped_directory_and_texts_load_and_render_every_language() -> None:
    d = directory.load(ROOT / "config" / "responders.toml")
    assert d.with_role("duty_officer") and d.with_role("shift_supervisor") and "shift_supervisor" in d.tiers
    t = texts.load(ROOT / "alert_templates" / "responders")
    fields = {"incident": "20261121-1", "category": "Пожар", "priority": "9", "address": "Абая 10", "service": "112",
              "unit": "ПС-101", "code": "1234"}
    for lang in ("kk", "ru", "en"):
        for name in t.names:
            out = t.render(name, lang, fields)
            assert "{" not in out.body.replace("{waited}", "").replace("{status}", "").replace("{number}", "") \
                or name in ("sla_breach", "status_changed")
    sms = t.render("dispatch_unit", "ru", fields, channel="sms", ack=True, code="1234")
    assert sms.body.endswith("Для подтверждения ответьте 1 (код 1234).")
    voice = t.render("dispatch_unit", "kk", fields, channel="voice", ack=True)
    assert voice.body.endswith("Растау үшін 1 басыңыз.")


def test_person_route_keeps_their_preference_and_skips_channels_without_an_address() -> None:
    p = Person(name="a", phone="+77010000001", channels=["telegram", "sms", "voice"])
    assert p.route(["voice", "sms", "telegram", "console"]) == ["sms", "voice"]  # no Telegram chat id
    assert p.route(["email"]) == []


def test_directory_problems_are_all_reported(tmp_path: Path) -> None:
    bad = tmp_path / "r.toml"
    bad.write_text('''
[[people]]
name = "Bad Name"
phone = "87010000000"
[[people]]
name = "ghost"
[[tiers]]
name = "t"
roles = ["nobody_has_it"]
[category_watchers]
fire = ["nor_this"]
''')
    with pytest.raises(ConfigError) as info:
        directory.load(bad)
    text = "\n".join(info.value.problems)
    for expected in ("name: expected lower-case", "is not E.164", "ghost): no phone, telegram or email",
                     "role 'nobody_has_it': nobody has it", "category_watchers.fire: role 'nor_this'"):
        assert expected in text


def test_template_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text("".join(f'[{lang}]\nsubject = "s"\ntext = "{{secret}}"\n'
                                             for lang in ("kk", "ru", "en")))
    with pytest.raises(ConfigError) as info:
        texts.load(tmp_path)
    assert "unknown placeholder {secret}" in info.value.problems[0]
