"""A drill's warning phase on hand-made inputs: the delivery curve per channel (sim.delivery), the
``[warning]`` table's checks and the recipients it generates (sim.warning_drill). No gateway, no I/O."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway import settings
from gateway.errors import DrillError
from sim import drill, report
from sim.delivery import CurvePoint, DeliveryReport, channel_curves, delivery_text, time_to
from sim.warning_drill import WarningPhase, needed, officers, problems, recipients_csv

REPO = Path(__file__).resolve().parents[2]


def counts(**kw: int) -> dict[str, int]:
    return {"queued": 0, "sending": 0, "sent": 0, "delivered": 0, "failed": 0, "moved": 0, **kw}


# --- the curve ------------------------------------------------------------------------------------

def test_curve_per_channel_counts_sent_and_delivered_as_done() -> None:
    samples = [
        (0.05, {}),  # the draft, subscribed before sending: no jobs yet
        (0.4, {"drill:smpp": counts(queued=8, sending=2), "drill:email": counts(queued=4)}),
        (1.0, {"drill:smpp": counts(queued=3, sent=4, delivered=3), "drill:email": counts(sending=2, sent=2)}),
        (1.9, {"drill:smpp": counts(sent=1, delivered=8, failed=1), "drill:email": counts(sent=4)}),
        (2.5, {"drill:smpp": counts(delivered=9, failed=1), "drill:email": counts(delivered=4)}),
    ]
    email, smpp = channel_curves(samples)
    assert (smpp.channel, smpp.total, smpp.done, smpp.failed) == ("smpp", 10, 9, 1)
    assert smpp.curve == [CurvePoint(0.0, 0, 0), CurvePoint(1.0, 7, 0), CurvePoint(1.9, 9, 1)]
    assert (smpp.to_50_s, smpp.to_90_s, smpp.to_100_s) == (1.0, 1.9, None)  # one failed: never 100 %
    assert (email.channel, email.total, email.done) == ("email", 4, 4)
    assert (email.to_50_s, email.to_90_s, email.to_100_s) == (1.0, 1.9, 1.9)
    # JSON: each point as [seconds, done, failed]
    assert msgspec.json.decode(msgspec.json.encode(smpp))["curve"][1] == [1.0, 7, 0]


def test_samples_out_of_order_and_channels_without_jobs() -> None:
    samples = [(2.0, {"telegram": counts(sent=3)}), (1.0, {"telegram": counts(sent=1, queued=2)}),
               (1.5, {"twilio": counts()})]
    [telegram] = channel_curves(samples)  # twilio had no jobs: no curve
    assert [p.at_s for p in telegram.curve] == [0.0, 1.0, 2.0]
    assert (telegram.total, telegram.to_50_s, telegram.to_100_s) == (3, 2.0, 2.0)


@pytest.mark.parametrize(("total", "fraction", "expected"), [(10, 0.5, 1.0), (10, 0.9, 2.0), (10, 1.0, 3.0),
                                                              (3, 0.5, 1.0), (0, 0.5, None), (11, 1.0, None)])
def test_time_to_a_share(total: int, fraction: float, expected: float | None) -> None:
    curve = [CurvePoint(0.0, 0, 0), CurvePoint(1.0, 5, 0), CurvePoint(2.0, 9, 0), CurvePoint(3.0, 10, 0)]
    assert time_to(curve, total, fraction) == expected


def test_the_report_carries_the_delivery_and_its_text() -> None:
    [smpp] = channel_curves([(1.2, {"drill:smpp": counts(delivered=4)})])
    delivery = DeliveryReport(alert_id="KZ-1", event="flood", status="Exercise", zones=["medeu"], drafted_by="a",
                              approved_by="d", recipients_generated=4, targeted=4, state="sent", sent_after_s=3.0,
                              channels=[smpp])
    text = report.summary_text(report.compute([], [], [], drill="warning", delivery=delivery))
    assert "warning: Exercise flood KZ-1 to medeu (drafted by a, sent by d, 4 drill recipients)" in text
    assert "smpp       4/4 done, 0 failed; 50 % 1.2 s, 90 % 1.2 s, 100 % 1.2 s" in text
    assert delivery_text(delivery)[0] in text


# --- the [warning] table ----------------------------------------------------------------------------

def load(tmp_path: Path, warning: str) -> drill.Drill:
    (tmp_path / "d.toml").write_text('[[callers]]\nnumber = "+77011234567"\n\n[warning]\n' + warning)
    return drill.load(tmp_path / "d.toml")


@pytest.mark.parametrize("status", ["Actual", "Test", "exercise", ""])
def test_a_warning_that_is_not_an_exercise_is_refused(tmp_path: Path, status: str) -> None:
    with pytest.raises(DrillError) as caught:
        load(tmp_path, f'event = "flood"\nzones = ["medeu"]\nstatus = "{status}"\n')
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'd.toml'}: warning.status: a drill sends \"Exercise\" alerts only")
    assert repr(status) in message


@pytest.mark.parametrize(("table", "expected"), [
    ('event = "flood"\n', "warning.zones: expected at least one zone"),
    ('event = "Flood!"\nzones = ["medeu"]\n', "warning.event: expected an event name"),
    ('event = "flood"\nzones = ["medeu"]\nchannels = ["sms", "siren"]\n', "warning.channels: expected some of sms"),
    ('event = "flood"\nzones = ["medeu"]\nrecipients = -1\n', "warning.recipients: expected 0-100000"),
    ('event = "flood"\nzones = ["medeu"]\ndrafted_by = "a"\napproved_by = "a"\n', "a second, different officer"),
    ('event = "flood"\nzones = ["medeu"]\nstatuss = "Exercise"\n', "warning: Object contains unknown field"),
])
def test_warning_table_problems(tmp_path: Path, table: str, expected: str) -> None:
    with pytest.raises(DrillError, match=None) as caught:
        load(tmp_path, table)
    assert expected in str(caught.value), caught.value


def test_the_shipped_warning_drill_loads() -> None:
    spec = drill.load(REPO / "sim" / "drills" / "warning.toml")
    assert spec.warning is not None and spec.warning.status == "Exercise" and not problems(spec.warning)
    assert spec.warning.recipients > 0 and len(drill.plan(spec)) <= 10  # short: the browser test runs it


def test_generated_recipients_take_turns_on_their_first_channel() -> None:
    rows = recipients_csv(WarningPhase(event="flood", zones=["medeu", "almaly"], recipients=4)).splitlines()
    assert rows[0] == "ref,name,phone,email,telegram,language,zones,channels"
    assert rows[1] == "drill-00001,Drill 1,+77000000000,drill1@example.kz,800000000,kk,medeu;almaly,sms;email;telegram"
    assert [r.split(",")[-1].split(";")[0] for r in rows[1:]] == ["sms", "email", "telegram", "sms"]
    assert [r.split(",")[5] for r in rows[1:]] == ["kk", "ru", "en", "kk"]


def test_officers_and_drill_channels_from_the_shipped_config() -> None:
    cfg = settings.load(REPO / "config" / "gateway.toml")
    phase = WarningPhase(event="flood", zones=["medeu"])
    assert officers(cfg, phase) == ("aigerim", "daniyar")
    assert officers(cfg, msgspec.structs.replace(phase, drafted_by="daniyar")) == ("daniyar", "aigerim")
    assert needed(cfg.warnings.drill, phase) == {"smpp": ("127.0.0.1", 12775), "email": ("127.0.0.1", 12525),
                                                 "telegram": ("127.0.0.1", 12580)}
    lone = msgspec.structs.replace(cfg.warnings, users=cfg.warnings.users[:1])
    with pytest.raises(DrillError, match="needs two civil-defence officers"):
        officers(msgspec.structs.replace(cfg, warnings=lone), phase)
    no_email = msgspec.structs.replace(cfg.warnings.drill, email=None)
    with pytest.raises(DrillError, match="no drill channel for email"):
        needed(no_email, phase)
