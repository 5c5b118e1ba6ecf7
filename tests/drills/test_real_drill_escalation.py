"""Real tier: a short escalation drill end to end — the gateway as a process with the config
``sim.responders`` writes, a school panel calling Asterisk's AlarmReceiver, a citizen on the 102 bot
stand-in, a 112 caller nobody answers (SLA breach) whose handset sends AML by SMS through the SMSC
stand-in, and scripted responders behind Asterisk's call-out trunk: one never presses (the scenario
escalates past him), one rejects the first call and presses 1 on the second."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import trio

from gateway import settings as config
from sim import drill, responders
from sim.lab import AsteriskInstance, GatewayProcess, free_port
from sim.report import ResponderOutcome, summary_text

DRILL = """
name = "escalation-short"

[arrival]
rate_per_s = 1
call_timeout_s = 30

[phones]
answer = false

[escalation]
answer_sla_s = 3
unclassified_after_s = 5
voice_ack_wait_s = 2
step_timeout_s = 5
tier_timeout_s = 4
max_wait_s = 60

[[callers]]
label = "robbery"
number = "+77011234567"
service = "112"
dtmf = "21"
location = { lat = 43.2510, lon = 76.9570, radius = 30 }
talk_s = 8

[[aml]]
number = "+77011234567"
lat = 43.25102
lon = 76.95698
accuracy = 12
at_s = 2

[[alarms]]
account = "1201"
code = "120"

[[responders]]
person = "patrol_ps103_a"
channel = "telegram"
behaviour = "never"

[[responders]]
person = "duty_ermekov"
channel = "voice"
behaviour = "ack_after_s"
ack_after_s = 1

[[responders]]
person = "supervisor_nurlanov"
channel = "voice"
behaviour = "second_call"
"""


def base_config(asterisk: AsteriskInstance, tmp_path: Path) -> Path:
    """The session's Asterisk with a store of this test's own."""
    text = re.sub(r'(?m)^path = ".*"$', f'path = "{tmp_path / "gateway.sqlite3"}"', asterisk.path.read_text())
    text = re.sub(r'(?m)^store_path = ".*"$', f'store_path = "{tmp_path / "warnings.sqlite3"}"', text)
    path = tmp_path / "base.toml"
    path.write_text(text)
    return path


def responder(outcomes: list[ResponderOutcome], person: str) -> ResponderOutcome:
    return next(r for r in outcomes if r.person == person)


async def test_short_escalation_drill(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    (tmp_path / "drill.toml").write_text(DRILL)
    spec = drill.load(tmp_path / "drill.toml")
    tcp = socket.SOCK_STREAM
    ports = responders.Ports(smsc=free_port(tcp), responders_bot=free_port(tcp), reports_bot=free_port(tcp),
                             trunk=free_port())
    path = responders.drill_config(base_config(asterisk, tmp_path), spec, tmp_path / "gateway.toml", ports)
    gateway = GatewayProcess(path, tmp_path / "gateway.log")
    with trio.fail_after(110):
        try:
            result = await drill.run(config.load(path), spec, workdir=tmp_path / "run", on_ready=gateway.start)
        finally:
            await gateway.stop()
    text = summary_text(result)
    print(text)
    esc = result.escalation
    assert esc is not None, text
    by_category = {c.category: c for c in esc.categories}
    assert set(by_category) == {"crime_in_progress", "school_alarm"}, text
    for figures in by_category.values():  # both notified someone and got an acknowledgement
        assert figures.to_first_notification_s.count == figures.to_first_ack_s.count == 1, text
        notified, acked = figures.to_first_notification_s.max, figures.to_first_ack_s.max
        assert notified is not None and acked is not None and notified < acked < 60, text
    assert esc.incidents == 2 and not esc.unfinished_runs, text
    # The robbery caller on hold is the one SLA breach; their handset's AML reached the incident.
    [call] = result.calls
    robbery = by_category["crime_in_progress"]
    assert esc.sla_breaches == robbery.sla_breaches == 1 and esc.sla_incidents == [call.incident_id], text
    assert call.located and robbery.incident_ids == [call.incident_id], text
    # The patrol member who never presses the button: the robbery escalates past the patrol.
    never = responder(esc.responders, "patrol_ps103_a")
    assert never.notified == 2 and never.acknowledged == 0, text
    assert never.escalated_incidents == [call.incident_id] and robbery.escalations == 1, text
    # Nurlanov rejects the first call (no other channel for him) and presses 1 on the second; the
    # SLA scenario tells him on the console only (it calls nobody).
    second = responder(esc.responders, "supervisor_nurlanov")
    assert second.ack_attempts == [2] and second.failed >= 1, text
    assert [(n.kind, n.channel, n.attempt) for n in second.events if n.channel != "console"] == [
        ("channel_failed", "voice", None), ("notify_failed", "", 1), ("notified", "voice", 2),
        ("acknowledged", "voice", 2)], text
    # The duty officer answers the school alarm's call and presses 1: no escalation there.
    quick = responder(esc.responders, "duty_ermekov")
    assert quick.ack_attempts == [1] and by_category["school_alarm"].escalations == 0, text
    assert "escalation:" in text and "SLA breaches" in text
