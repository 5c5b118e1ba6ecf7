"""Escalation drills, pure parts: the report from hand-built timelines, the drill file's escalation
sections (every bad input), the responders' plans, the drill's directory, scenarios and config, the
responders' sipp scenario and log."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway import settings as gateway_config
from gateway.errors import DrillError
from gateway.incident.desk import no_caller
from gateway.incident.records import Incident, TimelineEvent
from gateway.scenario import people as directory_file
from sim import drill, report, responders, sipp
from sim.lab import REPO

T0 = 1_800_000_000.0


def ev(kind: str, at: float, **data: Any) -> TimelineEvent:
    return TimelineEvent(kind=kind, wall=T0 + at, mono=at, actor="scenario:x", data=data)


def incident(id_: str, events: list[TimelineEvent], *, category: str = "", created: float = 0.0,
             source: str = "call") -> Incident:
    return Incident(id=id_, service="112", created_wall=T0 + created, caller=no_caller(), category=category,
                    source=source, timeline=sorted(events, key=lambda e: e.wall))  # type: ignore[arg-type]


def robbery() -> Incident:
    """A call: SLA breach, the patrol member never acknowledges, the scenario escalates, the
    supervisor rejects the first call and presses 1 during the second."""
    return incident("rob", [
        ev("call_arrived", 0.0),
        ev("scenario_started", 3.0, run="sla", scenario="answer_sla", category="", reason="sla_breach"),
        ev("notified", 3.1, run="sla", person="nurlanov", channel="console", attempt=1),
        ev("ivr_category", 1.5, category="crime_in_progress"),
        ev("scenario_started", 1.6, run="category", scenario="police_rapid", category="crime_in_progress"),
        ev("notified", 1.7, person="patrol_a", channel="telegram", attempt=1),
        ev("ack_timeout", 7.0, attempt=1, next_attempt=2),
        ev("notified", 7.1, person="patrol_a", channel="telegram", attempt=2),
        ev("ack_timeout", 13.0, attempt=0, gave_up=True),
        ev("step_started", 13.1, run="category", step=3, do="escalate"),
        ev("channel_failed", 13.2, person="nurlanov", channel="voice", reason="busy"),
        ev("notify_failed", 13.2, person="nurlanov", attempt=1, reason="no channel reached them"),
        ev("notified", 18.5, person="nurlanov", channel="voice", attempt=2),
        ev("acknowledged", 18.5, person="nurlanov", via="voice"),
        ev("scenario_finished", 18.6, run="category", scenario="police_rapid", outcome="closed"),
        ev("scenario_finished", 15.0, run="sla", scenario="answer_sla", outcome="closed"),
    ], category="crime_in_progress")


def alarm() -> Incident:
    """An alarm: the duty officer acknowledges by Telegram on the first attempt, 4 s after."""
    return incident("alarm", [
        ev("alarm_received", 0.0),
        ev("scenario_started", 0.5, run="category", scenario="school_alarm", category="school_alarm"),
        ev("notified", 1.0, person="ermekov", channel="telegram", attempt=1),
        ev("acknowledged", 5.0, person="ermekov", via="telegram", attempt=1, step=1),
        ev("scenario_finished", 9.0, run="category", scenario="school_alarm", outcome="closed"),
    ], category="school_alarm", source="alarm")


def switched() -> Incident:
    """Reported unclassified, a dispatcher made it medical: counted under medical; never acknowledged,
    and still running when the drill stopped."""
    return incident("sms", [
        ev("sms_received", 0.0),
        ev("scenario_started", 0.1, run="category", scenario="unclassified", category="unclassified"),
        ev("notified", 0.2, person="ermekov", channel="console", attempt=1),
        ev("scenario_switched", 4.0, run="category", scenario="medical", category="medical", previous="unclassified"),
    ], category="medical", source="sms")


SCRIPTED = [report.ScriptedResponder(person="patrol_a", behaviour="never", channel="telegram"),
            report.ScriptedResponder(person="nurlanov", behaviour="second_call", channel="voice"),
            report.ScriptedResponder(person="ermekov", behaviour="ack_after_s", channel="telegram", ack_after_s=4)]


# --- report ---------------------------------------------------------------------------------------

def test_escalation_figures_per_category() -> None:
    esc = report.escalation_report([robbery(), alarm(), switched()], SCRIPTED)
    by = {c.category: c for c in esc.categories}
    assert sorted(by) == ["crime_in_progress", "medical", "school_alarm"]
    crime = by["crime_in_progress"]
    assert crime.to_first_notification_s.count == 1
    assert crime.to_first_notification_s.median == crime.to_first_notification_s.max == pytest.approx(1.7)
    assert crime.to_first_ack_s.max == pytest.approx(18.5)
    assert (crime.escalations, crime.sla_breaches, crime.sla_incidents, crime.never_acknowledged) == (1, 1, ["rob"], 0)
    assert by["school_alarm"].to_first_ack_s.median == pytest.approx(5.0)
    medical = by["medical"]
    assert (medical.never_acknowledged, medical.never_notified, medical.to_first_ack_s.count) == (1, 0, 0)
    assert (esc.incidents, esc.escalations, esc.sla_breaches, esc.sla_incidents) == (3, 1, 1, ["rob"])
    assert esc.unfinished_runs == ["sms/category"]


def test_median_and_max_over_several_incidents() -> None:
    late = incident("late", [ev("scenario_started", 0.1, run="category", category="fire"),
                             ev("notified", 9.0, person="x", attempt=1), ev("acknowledged", 30.0, person="x")])
    quick = incident("quick", [ev("scenario_started", 0.1, run="category", category="fire"),
                               ev("notified", 1.0, person="x", attempt=1)])
    mid = incident("mid", [ev("scenario_started", 0.1, run="category", category="fire"),
                           ev("notified", 3.0, person="x", attempt=1), ev("acknowledged", 6.0, person="x")])
    [fire] = report.escalation_report([late, quick, mid], []).categories
    assert fire.to_first_notification_s == report.Spread(count=3, median=3.0, max=9.0)  # exact in binary
    assert fire.to_first_ack_s == report.Spread(count=2, median=6.0, max=30.0)
    assert fire.never_acknowledged == 1


def test_an_incident_without_a_run_counts_under_its_own_category() -> None:
    bare = incident("bare", [ev("call_arrived", 0.0)], category="fire")
    assert report.run_category(bare) == "fire"
    assert report.run_category(incident("none", [])) == "unclassified"
    [fire] = report.escalation_report([bare], []).categories
    assert (fire.never_notified, fire.to_first_notification_s.count) == (1, 0)


def test_what_each_scripted_responder_did() -> None:
    esc = report.escalation_report([robbery(), alarm(), switched()], SCRIPTED)
    never, second, quick = esc.responders
    assert (never.notified, never.acknowledged, never.escalated_incidents) == (2, 0, ["rob"])
    assert "never acknowledged" in never.summary and "escalated past them" in never.summary
    # The key pressed during the call carries no attempt: it answers the notification before it.
    assert (second.ack_attempts, second.failed, second.notified) == ([2], 2, 2)
    assert [(n.kind, n.attempt) for n in second.events if n.incident_id == "rob"][-3:] == [
        ("notify_failed", 1), ("notified", 2), ("acknowledged", 2)]
    assert (quick.ack_attempts, quick.ack_delays_s, quick.escalated_incidents) == ([1], [4.0], [])
    assert "acknowledged 1x (attempts 1; 4.00 s" in quick.summary


def test_a_scripted_person_nobody_reached() -> None:
    [nobody] = report.escalation_report([alarm()], [report.ScriptedResponder(
        person="ivanova", behaviour="never", channel="sms")]).responders
    assert (nobody.notified, nobody.events, nobody.summary) == (0, [], "notified 0x; never acknowledged")


def test_summary_text_carries_the_escalation_lines() -> None:
    esc = report.escalation_report([robbery(), alarm()], SCRIPTED)
    text = report.summary_text(report.compute([], [], [], drill="d", escalation=esc))
    assert "escalation: 2 incidents, 1 escalations, 1 SLA breaches" in text
    assert "crime_in_progress" in text and "created->ack median 18.50 s" in text
    assert "responder nurlanov (second_call via voice)" in text and "SLA breached on: rob" in text
    assert "escalation:" not in report.summary_text(report.compute([], [], [], drill="d"))


# --- drill files --------------------------------------------------------------------------------

GOOD = """
[[callers]]
number = "+77011234567"
dtmf = "21"

[[aml]]
number = "+77011234567"
lat = 43.2
lon = 76.9

[[alarms]]
account = "1201"

[[telegram_reports]]
chat_id = 900001
text = "драка"
location = { lat = 43.2, lon = 76.9 }
contact = "+77011112233"

[[sms]]
from = "+77012223344"
text = "пожар"
via = "twilio"

[[responders]]
person = "duty_ermekov"
channel = "voice"
behaviour = "ack_after_s"
ack_after_s = 2
"""


def load_text(tmp_path: Path, text: str) -> drill.Drill:
    path = tmp_path / "d.toml"
    path.write_text(text)
    return drill.load(path)


def test_escalation_sections_load(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GOOD)
    assert spec.escalates and spec.sms[0].sender == "+77012223344" and spec.sms[0].via == "twilio"
    assert spec.alarms[0].code == "120" and spec.aml[0].at_s == 2.0 and spec.telegram_reports[0].location
    assert spec.responders[0].ack_after_s == 2 and spec.escalation.step_repeat == 2
    assert drill.call_offsets(spec.arrival, drill.plan(spec)) == {"+77011234567": 0.0}
    assert not load_text(tmp_path, '[[callers]]\nnumber = "+77011234567"\n').escalates
    # Reports without calls are a drill too.
    assert load_text(tmp_path, '[[alarms]]\naccount = "1201"\n').alarms


def test_the_shipped_escalation_drill_loads() -> None:
    spec = drill.load(REPO / "sim" / "drills" / "escalation.toml")
    assert spec.escalates and not spec.phones.answer
    assert {r.behaviour for r in spec.responders} == {"never", "second_call", "ack_after_s"}


@pytest.mark.parametrize(("snippet", "expected"), [
    ('[[alarms]]\naccount = "12G1"\n', "alarms[0].account: expected 4 hex digits"),
    ('[[alarms]]\naccount = "1201"\ncode = "12"\n', "alarms[0].code: expected a 3-digit"),
    ('[[alarms]]\naccount = "1201"\nzone = 1000\n', "alarms[0].zone: expected 0-999"),
    ('[[alarms]]\naccount = "1201"\nnumber = "12 34"\n', "alarms[0].number: expected digits"),
    ('[[alarms]]\naccount = "1201"\nat_s = -1\n', "alarms[0].at_s: expected 0-3600"),
    ('[[telegram_reports]]\nchat_id = -5\ntext = "x"\n', "telegram_reports[0].chat_id: expected a private chat"),
    ('[[telegram_reports]]\nchat_id = 5\ntext = " "\n', "telegram_reports[0].text: expected 1-4096"),
    ('[[telegram_reports]]\nchat_id = 5\ntext = "x"\ncontact = "8701"\n',
     "telegram_reports[0].contact: expected an E.164"),
    ('[[telegram_reports]]\nchat_id = 5\ntext = "x"\nlocation = { lat = 91, lon = 0 }\n',
     "telegram_reports[0].location.lat: expected -90..90"),
    ('[[sms]]\nfrom = "nobody here"\ntext = "x"\n', "sms[0].from: expected digits"),
    ('[[sms]]\nfrom = "+77012223344"\ntext = ""\n', "sms[0].text: expected some text"),
    ('[[sms]]\nfrom = "+77012223344"\ntext = "x"\nvia = "pigeon"\n', "sms[0].via: Invalid enum value 'pigeon'"),
    ('[[sms]]\nsender = "+77012223344"\ntext = "x"\n', "sms[0]: Object contains unknown field `sender`"),
    ('[[callers]]\nnumber = "+7701"\n[[aml]]\nnumber = "+77019999999"\nlat = 1\nlon = 1\n',
     "aml[0].number: '+77019999999' places no call"),
    ('[[callers]]\nnumber = "+7701"\n[[aml]]\nnumber = "+7701"\nlat = 1\nlon = 1\naccuracy = 0\n',
     "aml[0].accuracy: expected metres"),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[[responders]]\nperson = "a"\nchannel = "voice"\nbehaviour = "never"\n'
     '[[responders]]\nperson = "a"\nchannel = "sms"\nbehaviour = "never"\n',
     "responders[1].person: 'a' is scripted twice"),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[[responders]]\nperson = "a"\nchannel = "voice"\n'
     'behaviour = "ack_after_s"\n',
     'responders[0].ack_after_s: expected 0-600 seconds with behaviour "ack_after_s", got None'),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[[responders]]\nperson = "a"\nchannel = "voice"\nbehaviour = "never"\n'
     'ack_after_s = 3\n', 'responders[0].ack_after_s: only for behaviour "ack_after_s"'),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[[responders]]\nperson = "a"\nchannel = "fax"\nbehaviour = "never"\n',
     "responders[0].channel: Invalid enum value 'fax'"),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[[responders]]\nperson = "a"\nchannel = "sms"\nbehaviour = "later"\n',
     "responders[0].behaviour: Invalid enum value 'later'"),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[escalation]\nanswer_sla_s = 0\nstep_repeat = 0\n',
     "escalation.answer_sla_s: expected 1-600 seconds"),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[escalation]\nstep_repeat = 0\n', "escalation.step_repeat: expected 1-10"),
    ('[[sms]]\nfrom = "+7701"\ntext = "x"\n[escalation]\nmax_wait = 5\n', "unknown field `max_wait`"),
    ('[phones]\nanswer = false\n', "callers: expected at least one [[callers]] template (or [[alarms]]"),
    ('[arrival]\ncount = 3\n[[alarms]]\naccount = "1201"\n', "arrival.count: there are no [[callers]]"),
])
def test_bad_escalation_sections_are_named(tmp_path: Path, snippet: str, expected: str) -> None:
    with pytest.raises(DrillError) as caught:
        load_text(tmp_path, snippet)
    assert str(caught.value).startswith(str(tmp_path / "d.toml")) and expected in str(caught.value), caught.value


# --- responders: plans, directory, scenarios, config --------------------------------------------------

DIRECTORY = REPO / "config" / "responders.toml"


def test_plans_name_unknown_and_unreachable_people(tmp_path: Path) -> None:
    (tmp_path / "people.toml").write_text('[[people]]\nname = "mail_only"\nemail = "m@example.kz"\n'
                                          '[[people]]\nname = "duty_ermekov"\nphone = "+77010000101"\n')
    directory = directory_file.load(tmp_path / "people.toml")
    spec = load_text(tmp_path, GOOD + '[[responders]]\nperson = "nobody"\nchannel = "sms"\nbehaviour = "never"\n'
                     '[[responders]]\nperson = "mail_only"\nchannel = "telegram"\nbehaviour = "never"\n')
    found, problems = responders.plans(spec.responders, directory)
    assert found == [responders.Plan("duty_ermekov", "+77010000101", "voice", "ack_after_s", 2.0)]
    assert problems == ["responders[1].person: 'nobody' is not in the responders directory",
                        "responders[2].channel: mail_only has no telegram address in the directory"]


def test_the_drill_directory_reaches_scripted_people_on_their_channel_only() -> None:
    raw = tomllib.loads(DIRECTORY.read_text())
    plan = responders.Plan("supervisor_ivanova", "700104", "telegram", "second_call")
    doc = responders.directory_doc(raw, [plan], tier_timeout_s=8, tier_repeat=2)
    people = {p["name"]: p for p in doc["people"]}
    assert people["supervisor_ivanova"]["channels"] == ["telegram"]
    assert people["supervisor_nurlanov"]["channels"] == ["voice", "telegram", "sms", "email"]
    assert {(t["timeout_s"], t["repeat"]) for t in doc["tiers"]} == {(8.0, 2)}
    text = responders.toml_text(doc)
    assert tomllib.loads(text)["category_watchers"] == raw["category_watchers"]


def test_scenarios_keep_their_steps_with_timeouts_capped(tmp_path: Path) -> None:
    target = responders.write_scenarios(REPO / "config" / "scenarios", tmp_path / "s", step_timeout_s=5,
                                        step_repeat=2)
    for path in (REPO / "config" / "scenarios").glob("*.toml"):
        original = tomllib.loads(path.read_text())["steps"]
        copied = tomllib.loads((target / path.name).read_text())["steps"]
        assert [s["do"] for s in copied] == [s["do"] for s in original], path.name
        for old, new in zip(original, copied, strict=True):
            assert {k: v for k, v in new.items() if k not in ("timeout_s", "repeat")} == \
                   {k: v for k, v in old.items() if k not in ("timeout_s", "repeat")}
            assert new.get("timeout_s", 0) <= 5 and new.get("repeat", 0) <= 2


def test_toml_text_round_trips_what_configs_hold() -> None:
    doc = {"name": 'quote " and \\ back', "n": 3, "x": 0.25, "ok": False, "empty": [], "list": ["a", "б"],
           "inline": [{"digit": "1", "name": "fire"}], "t": {"k": 1, "sub": {"deep": True}, "rows": [{"a": 1}]},
           "odd key": {"*": ["duty"]}}
    assert tomllib.loads(responders.toml_text(doc)) == doc
    with pytest.raises(TypeError):
        responders.toml_text({"when": object()})


def test_the_drill_config_aims_escalation_at_the_stand_ins(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GOOD)
    ports = responders.Ports(smsc=12775, responders_bot=12776, reports_bot=12777, trunk=15080)
    out = responders.drill_config(REPO / "config" / "gateway.toml", spec, tmp_path / "drill.toml", ports)
    cfg = gateway_config.load(out)
    esc, channels = cfg.escalation, cfg.escalation.channels
    assert channels.smpp is not None and (channels.smpp.host, channels.smpp.port) == ("127.0.0.1", 12775)
    assert channels.telegram is not None and channels.telegram.api_base_url == "http://127.0.0.1:12776/bot"
    assert channels.voice is not None and channels.voice.trunk_uri == "sip:127.0.0.1:15080"
    assert cfg.reports.telegram102.enabled and cfg.reports.telegram102.base_url == "http://127.0.0.1:12777/bot"
    assert cfg.reports.sms112.enabled and cfg.reports.sms112.twilio_auth_token
    assert (esc.answer_sla_s, esc.unclassified_after_s, esc.voice_ack_wait_s) == (8.0, 10.0, 8.0)
    assert Path(esc.scenarios_dir) == (tmp_path / "drill-scenarios").resolve()
    directory = directory_file.load(esc.responders_file)
    assert directory.people["duty_ermekov"].channels == ["voice"]
    assert cfg.dispatch == gateway_config.load(REPO / "config" / "gateway.toml").dispatch


def test_the_drill_config_refuses_people_it_cannot_script(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GOOD.replace('person = "duty_ermekov"', 'person = "duty_nobody"'))
    ports = responders.Ports(smsc=1, responders_bot=2, reports_bot=3, trunk=4)
    with pytest.raises(DrillError, match="'duty_nobody' is not in the responders directory"):
        responders.drill_config(REPO / "config" / "gateway.toml", spec, tmp_path / "drill.toml", ports)
    assert not (tmp_path / "drill.toml").exists()


# --- responders: phones, texts ---------------------------------------------------------------------

def test_phones_scenario_per_behaviour() -> None:
    plans = [responders.Plan("a", "+77010000101", "voice", "ack_after_s", 2.5),
             responders.Plan("b", "+77010000102", "voice", "never"),
             responders.Plan("c", "+77010000103", "voice", "second_call"),
             responders.Plan("d", "700104", "telegram", "never")]
    xml = responders.phones_xml(plans, Path("/tmp/k.pcap"))
    assert '<Global variables="seen2"/>' in xml and 'condexec="is2"' in xml
    assert "\\+77010000101|\\+77010000102|\\+77010000103" in xml  # every scripted number answers
    assert 'assign_to="is1"' not in xml  # "never" only answers
    assert '<pause milliseconds="2500"/>' in xml and f'<pause milliseconds="{responders.SECOND_CALL_PRESS_MS}"/>' in xml
    assert "486 Busy Here" in xml and "700104" not in xml and "{" not in xml.replace("[$", "")
    assert "<Global" not in responders.phones_xml(plans[:2], Path("/tmp/k.pcap"))


def test_phone_log_and_sms_codes() -> None:
    events = sipp.parse_events("INVITE 1700000000.000000 500000.000000 number=+7701 callid=x\nnoise\n"
                               "REJECTED 1700000001 0 number=+7701 callid=x\n")
    assert [(e.kind, e.wall) for e in events] == [("INVITE", 1700000000.5), ("REJECTED", 1700000001.0)]
    assert responders.ack_code("Пожар. Для подтверждения ответьте 1 (код 0421).") == "0421"
    assert responders.ack_code("Reply 1 to acknowledge (code 9876).") == "9876"
    assert responders.ack_code("Статус: выехали") == ""


def test_who_acknowledges_which_notification() -> None:
    seen: dict[str, int] = {}
    assert [responders.should_ack("second_call", k, seen) for k in ("a", "b", "a", "a", "b")] == \
           [False, False, True, False, True]
    assert not responders.should_ack("never", "a", {})
    assert responders.should_ack("ack_after_s", "a", {"a": 5})
