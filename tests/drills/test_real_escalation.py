"""`gateway run` as a process: a dispatcher's incident runs its category's scenario; the gateway is
SIGKILLed while the scenario waits for an acknowledgement and, restarted after the deadline passed,
goes on exactly where it was. Also the response API's refusals."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx
import trio

from gateway.incident.records import Incident
from sim.cluster import notify_scenario
from sim.lab import GatewayProcess, write_config

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "marat-test-token"
SCENARIO = notify_scenario()  # console notices, 5 s to acknowledge, 3 attempts, supervisors, close


def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, positions=1, ivr=False)
    shutil.copytree(ROOT / "config" / "scenarios", tmp_path / "scenarios")
    (tmp_path / "scenarios" / "police_rapid.toml").write_text(SCENARIO)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    with path.open("a") as out:
        out.write(f'\n[[warnings.users]]\nname = "marat"\nroles = ["dispatcher"]\ntoken_sha256 = "{digest}"\n'
                  f'\n[escalation]\nscenarios_dir = "{tmp_path / "scenarios"}"\nanswer_sla_s = 600\n')
    return path


async def timeline(client: httpx.AsyncClient, incident_id: str) -> list[tuple[str, dict[str, object]]]:
    import msgspec

    reply = await client.get(f"/incidents/{incident_id}")
    return [(e.kind, dict(e.data)) for e in msgspec.json.decode(reply.content, type=Incident).timeline]


async def wait_for(client: httpx.AsyncClient, incident_id: str, kind: str, count: int = 1,
                   timeout: float = 20.0) -> list[dict[str, object]]:
    with trio.fail_after(timeout):
        while True:
            found = [d for k, d in await timeline(client, incident_id) if k == kind]
            if len(found) >= count:
                return found
            await trio.sleep(0.1)


async def test_gateway_killed_while_a_scenario_waits_resumes_it(tmp_path: Path) -> None:
    gateway = GatewayProcess(config(tmp_path), tmp_path / "gateway.log", need_ari=False)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5, headers=auth) as client:
            reply = await client.post("/incidents", json={"service": "102", "category": "crime_in_progress",
                                                          "lat": 43.2389, "lon": 76.8897, "note": "drill"})
            assert reply.status_code == 201, reply.text
            incident_id = reply.json()["id"]
            waiting = await wait_for(client, incident_id, "awaiting_ack")
            assert waiting[0]["attempt"] == 1
            gateway.kill()
            await trio.sleep(5.5)  # the acknowledgement deadline passes while the gateway is down
            await gateway.start()
            await wait_for(client, incident_id, "awaiting_ack", count=2)
            runs = (await client.get(f"/incidents/{incident_id}/escalation")).json()
            token = next(t["token"] for t in runs[0]["targets"] if t["person"] == "duty_ermekov")
            assert (await client.get(f"/ack/{token}")).status_code == 200  # the page alone acknowledges nothing
            assert (await client.post(f"/acks/{token}")).json() == {"result": "acknowledged"}
            assert (await client.post(f"/acks/{token}")).status_code == 404  # the run moved on
            await wait_for(client, incident_id, "scenario_finished")
            events = await timeline(client, incident_id)
    finally:
        await gateway.stop()
    kinds = [k for k, _ in events]
    assert kinds.count("step_started") == 1 and kinds.count("scenario_started") == 1
    attempts = sorted((d["person"], d["attempt"]) for k, d in events if k == "notified")
    assert attempts == [(p, n) for p in ("duty_ermekov", "duty_sadykova") for n in (1, 2)]
    acked = [d for k, d in events if k == "acknowledged"]
    assert acked[0]["person"] == "duty_ermekov" and acked[0]["via"] == "console"
    assert ("step_skipped", {"step": 2, "do": "escalate"}) in events


async def test_response_api_refuses_bad_requests_clearly(tmp_path: Path) -> None:
    gateway = GatewayProcess(config(tmp_path), tmp_path / "gateway.log", need_ari=False)
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as anonymous:
            assert (await anonymous.post("/incidents", json={})).status_code == 401
            assert (await anonymous.post("/incidents", json={}, headers={"Authorization": "Bearer forged"})
                    ).status_code == 401
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            bad = await client.post("/incidents", json={"category": "alien_invasion"})
            assert bad.status_code == 400 and "unknown category" in bad.json()["error"]
            assert (await client.post("/incidents", content=b"{not json")).status_code == 400
            assert (await client.post("/incidents", json={"lat": 95, "lon": 10})).status_code == 400
            assert (await client.post("/incidents/nope/category", json={"category": "fire"})).status_code == 404
            made = (await client.post("/incidents", json={"category": "fire", "lat": 43.25, "lon": 76.9})).json()
            assert (await client.post(f"/incidents/{made['id']}/status", json={"status": "flying"})).status_code == 400
            assert (await client.post(f"/incidents/{made['id']}/status",
                                      json={"status": "on_scene"})).status_code == 200
            back = await client.post(f"/incidents/{made['id']}/status", json={"status": "assigned"})
            assert back.status_code == 409 and "cannot go back" in back.json()["error"]
            reply = await client.post(f"/incidents/{made['id']}/reply", json={"text": "we are coming"})
            assert reply.status_code == 409  # reported by a dispatcher, not by text: nobody to reply to
            switched = await client.post(f"/incidents/{made['id']}/category", json={"category": "medical"})
            assert switched.status_code == 200 and switched.json()["category"] == "medical"
            await wait_for(client, made["id"], "scenario_switched")
    finally:
        await gateway.stop()
