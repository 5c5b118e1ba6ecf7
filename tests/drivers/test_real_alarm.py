"""A school's panel calls the real Asterisk and keys Contact ID as DTMF audio; AlarmReceiver's event
file becomes a school_alarm incident in a real store."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from gateway.asterisk import sandbox
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.alarm.panels import AlarmIntake
from gateway.protocols.contact_id import dtmf_to_hex
from gateway.settings import AlarmConfig
from sim import alarm_panel
from sim.contact_id import panel_message
from sim.lab import AsteriskInstance


async def test_panel_call_becomes_a_school_alarm_incident(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    cfg = AlarmConfig(poll_s=0.1)  # the shipped registry: 4B09 is the boarding school No. 9
    spool = sandbox.locate(asterisk.cfg).host_dir / "spool" / cfg.spool_subdir
    # 4B09 is dialled "4*09": a hex account survives the trip as DTMF keys.
    message = panel_message("4B09", "120", zone=5)
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            desk = Desk(store, Recorder(store, Bus()))
            intake = AlarmIntake(cfg, desk, spool)
            await nursery.start(intake.run)
            started = time.time()
            call = await alarm_panel.call(asterisk.cfg, tmp_path / "panel", message, number="87272320909")
            assert call.returncode == 0, f"panel call failed; see {call.workdir}"
            incident = await _alarm_incident(store, desk, started)
            nursery.cancel_scope.cancel()
    store.sync.close()
    assert (incident.source, incident.category, incident.priority, incident.reporter) == (
        "alarm", "school_alarm", 9, "4B09")
    first = incident.timeline[0]
    assert first.kind == "alarm_received"
    assert (first.data["contact_id"], first.data["event_code"], first.data["zone_or_user"]) == (
        message, "120", "005")
    assert dtmf_to_hex(message)[:4] == "4B09" and first.data["via"] == "asterisk"
    assert first.data["calling_from"] == "87272320909"
    assert incident.locations[0].address.endswith("ул. Кабдолова, 9")
    done = list((spool / "done").glob(f"*-{first.data['file']}"))
    assert len(done) == 1 and message in done[0].read_text()
    assert intake.site_health()["4B09"].last_event.startswith("120 Panic alarm")


async def _alarm_incident(store: AsyncStore, desk: Desk, since: float) -> Incident:
    while True:
        for summary in await store.recent(since_wall=since):
            if summary.source == "alarm":
                return await desk.get(summary.id)
        await trio.sleep(0.1)
