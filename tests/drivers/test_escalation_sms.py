"""The escalation engine with a failing channel falling back to SMS over a real SMSC on 127.0.0.1,
and the responder's SMS reply acknowledging (real clock: the SMPP link has its own timers)."""

from __future__ import annotations

from pathlib import Path

import trio

from channels.smpp import open_smpp
from gateway.settings.channels import SmppConfig
from sim.smsc_server import open_smsc
from tests.core.test_escalation_engine import NOTIFY, catalogue, environment, scenario
from tests.store_backends import Backend


async def test_a_failing_channel_falls_back_to_sms_and_an_sms_reply_acknowledges(tmp_path: Path) -> None:
    s = scenario("s", {**NOTIFY, "roles": ["fallback_test"], "channels": ["telegram", "sms"], "timeout_s": 10},
                 {"do": "close"})
    async with open_smsc(system_id="esc", password="pw") as smsc:
        host, port = smsc.address
        async with open_smpp(SmppConfig(system_id="esc", password="pw", host=host, port=port)) as sms, \
                environment(Backend("sqlite", tmp_path), catalogue(s), channels={"sms": sms}, threaded=True) as env:
            incident = await env.open("s")
            await env.wait_for(incident.id, "awaiting_ack")
            timeline = await env.timeline(incident.id)
            failed = [d for k, d in timeline if k == "channel_failed"]
            assert failed == [{"person": "fallback", "channel": "telegram",
                               "reason": "channel not configured or not open"}]
            notified = [d for k, d in timeline if k == "notified"]
            assert notified[0]["channel"] == "sms"
            with trio.fail_after(5):
                while not smsc.texts("77010000004"):
                    await trio.sleep(0.05)
            text = smsc.texts("77010000004")[0]
            assert f"(код {notified[0]['code']})" in text
            target = env.engine.outstanding({"fallback"})[0]
            await env.engine.acknowledge(target.token, by="fallback", via="sms")
            await env.wait_for(incident.id, "scenario_finished")
