"""Acknowledgements arriving outside a delivery: an SMS reply from a responder's phone and a press of
the Telegram button, through the escalation service built from the shipped directory."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from channels.telegram_callbacks import AckRejected
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk, no_caller
from gateway.incident.recorder import Recorder
from gateway.incident.store import SqliteStore
from gateway.scenario.escalation import Escalation
from gateway.settings.escalation import EscalationConfig
from tests.core.test_escalation_engine import InlineStore

ROOT = Path(__file__).resolve().parents[2]
ERMEKOV, SADYKOVA = "+77010000101", "+77010000102"  # duty officers in config/responders.toml
SCENARIO = """
[[steps]]
do = "notify"
roles = ["duty_officer"]
channels = ["console"]
template = "incident_new"
ack = "each"
timeout_s = 30
repeat = 1

[[steps]]
do = "close"
"""


@asynccontextmanager
async def service(tmp_path: Path) -> AsyncIterator[tuple[Escalation, str]]:
    shutil.copytree(ROOT / "config" / "scenarios", tmp_path / "scenarios")
    (tmp_path / "scenarios" / "police_rapid.toml").write_text(SCENARIO)
    store = InlineStore(SqliteStore(tmp_path / "s.db"))
    recorder = Recorder(store, Bus())
    esc = Escalation(EscalationConfig(scenarios_dir=str(tmp_path / "scenarios"), answer_sla_s=600), recorder)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(esc.run)
            incident = await Desk(store, recorder).open(service="102", source="api", caller=no_caller(),
                                                        kind="reported", actor="test", category="crime_in_progress")
            with trio.fail_after(5):
                while esc.engine.runs.get(f"{incident.id}/category") is None or \
                        esc.engine.runs[f"{incident.id}/category"].phase != "waiting":
                    await trio.sleep(0.02)
            yield esc, incident.id
            nursery.cancel_scope.cancel()
    finally:
        store.sync.close()


async def acked(esc: Escalation, incident_id: str) -> list[tuple[str, str]]:
    incident = await esc.engine.incident(incident_id)
    return [(str(e.data["person"]), str(e.data["via"])) for e in incident.timeline if e.kind == "acknowledged"]


async def test_sms_replies_from_responders_acknowledge_and_others_do_not(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with service(tmp_path) as (esc, incident_id):
        assert not await esc.sms_reply("+77019999999", "1", "smpp")  # not a responder: a report for 112
        assert not await esc.sms_reply(ERMEKOV, "кто это?", "smpp")  # a responder, but no acknowledgement
        assert await esc.sms_reply(ERMEKOV, " Ок! ", "smpp")
        assert not await esc.sms_reply(ERMEKOV, "1", "smpp")  # nothing of theirs waits any more
        code = next(t.code for t in esc.engine.runs[f"{incident_id}/category"].targets if t.person == "duty_sadykova")
        assert await esc.sms_reply(SADYKOVA, f"принял {code}", "twilio")
        assert await acked(esc, incident_id) == [("duty_ermekov", "smpp"), ("duty_sadykova", "twilio")]


async def test_telegram_button_presses_acknowledge_once(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with service(tmp_path) as (esc, incident_id):
        token = next(t.token for t in esc.engine.runs[f"{incident_id}/category"].targets
                     if t.person == "duty_ermekov")
        refused = await esc.telegram_press(f"ack:{token}", 700102, "sadykova")  # a forwarded message
        assert refused.startswith("Это подтверждение не для вас")
        assert (await esc.telegram_press(f"ack:{token}", 700101, "ermekov")).startswith("✔")
        assert (await esc.telegram_press(f"ack:{token}", 700101, "ermekov")).startswith("Уже")
        assert (await esc.telegram_press("ack:forged", 1, "x")).startswith("Больше")
        with pytest.raises(AckRejected):
            await esc.telegram_press("subscribe:medeu", 700101, "ermekov")
        incident = await esc.engine.incident(incident_id)
        assert [e.actor for e in incident.timeline if e.kind == "acknowledged"] == ["duty_ermekov"]


async def test_a_bare_ok_is_refused_when_several_notifications_wait(tmp_path: Path,
                                                                    autojump_clock: trio.testing.MockClock) -> None:
    async with service(tmp_path) as (esc, first):
        second = await Desk(esc.engine.store, esc.engine.recorder).open(
            service="102", source="api", caller=no_caller(), kind="reported", actor="test",
            category="crime_in_progress")
        with trio.fail_after(5):
            while len(esc.engine.outstanding({"duty_ermekov"})) < 2:
                await trio.sleep(0.02)
        assert await esc.sms_reply(ERMEKOV, "ok", "smpp")  # handled (asked for the code), not a report
        assert await acked(esc, first) == [] and await acked(esc, second.id) == []
        code = next(t.code for t in esc.engine.runs[f"{second.id}/category"].targets if t.person == "duty_ermekov")
        assert await esc.sms_reply(ERMEKOV, code, "smpp")
        assert await acked(esc, second.id) == [("duty_ermekov", "smpp")] and await acked(esc, first) == []
