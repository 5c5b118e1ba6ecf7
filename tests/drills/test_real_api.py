"""Real tier: the HTTP API, the CLI and the subscriber directory against a running gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from gateway.protocols import pidf
from sim import sipp
from sim.lab import REPO, AsteriskInstance, GatewayProcess
from tests.drills.test_real_intake import place


def gateway_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


async def test_events_stream_health_metrics_and_openapi(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    seen: list[dict[str, object]] = []

    async def listen(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with httpx.AsyncClient(timeout=None, headers=gateway.host_headers()) as client, \
                client.stream("GET", gateway.url + "/events") as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            task_status.started()
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))

    async with trio.open_nursery() as nursery:
        await nursery.start(listen)
        result = await place(asterisk, tmp_path, keys="20", talk_ms=5000)
        incident = await gateway.wait_incident(result.call_id, until="hung_up")
        with trio.fail_after(5):
            while not any(e["id"] == incident.id and e["state"] == "closed" for e in seen):
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    # A position was free: the call went from the menu to ringing, never shown as waiting, yet its queuing is
    # on the record (written with the ringing).
    assert {"ringing", "answered", "closed"} <= {e["state"] for e in seen if e["id"] == incident.id}
    kinds = [e.kind for e in incident.timeline]
    assert kinds.index("queued") < kinds.index("position_dialled") < kinds.index("ringing")

    async with httpx.AsyncClient(timeout=5) as client:
        health = (await client.get(gateway.url + "/health")).json()  # open: the API listens on loopback only
        metrics = (await client.get(gateway.url + "/metrics")).text
        spec = (await client.get(gateway.url + "/openapi.json")).json()
        anonymous = [(await client.get(gateway.url + path)).status_code
                     for path in ("/incidents", f"/incidents/{incident.id}", "/events")]
        missing = await client.get(gateway.url + "/incidents/no-such-incident", headers=gateway.host_headers())
        bad = await client.get(gateway.url + "/incidents?limit=abc", headers=gateway.host_headers())
    assert anonymous == [401, 401, 401]  # callers' numbers and locations: a person or a token only
    assert health["status"] == "ok" and health["asterisk_fully_booted"] and health["ami_connected"]
    assert 'ecgw_calls_total{service="112"}' in metrics and "ecgw_incident_store_seconds_bucket" in metrics
    assert "Incident" in spec["components"]["schemas"] and "/incidents/{id}" in spec["paths"]
    assert missing.status_code == 404 and bad.status_code == 400


async def test_directory_location_and_cli(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    csv = tmp_path / "directory.csv"
    csv.write_text(
        "number,address,lat,lon,radius_m\n"
        "87272501234,\"Алматы, ул. Абая 10\",43.2389,76.9450,30\n"
        "not-a-number,somewhere,43.0,76.0,10\n"
        "87272505555,\"Астана, пр. Республики 1\",951.1,71.4,10\n"
    )
    imported = gateway_cli(asterisk.path, "directory", "import", str(csv))
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 entries, skipped 2 bad rows" in imported.stdout
    assert "line 3" in imported.stderr and "line 4" in imported.stderr

    # A landline in the directory calls with a coarse network location: both kept, the finer one wins.
    coarse = pidf.build("circle", lat=43.24, lon=76.95, radius=800)
    result = await place(asterisk, tmp_path, number="+77272501234", pidf_lo=coarse, talk_ms=3000)
    incident = await gateway.wait_incident(result.call_id, until="hung_up")
    sources = [loc.source for loc in incident.locations]
    assert sources == ["pidf-lo", "directory"]
    assert incident.best_location == 1 and incident.locations[1].address == "Алматы, ул. Абая 10"

    listed = gateway_cli(asterisk.path, "incidents", "list", "--json")
    assert incident.id in [row["id"] for row in json.loads(listed.stdout)]
    shown = json.loads(gateway_cli(asterisk.path, "incidents", "show", incident.id, "--json").stdout)
    assert shown["id"] == incident.id and shown["timeline"][0]["kind"] == "call_arrived"


def test_check_config_reports_every_typo(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text((REPO / "config" / "gateway.toml").read_text()
                      .replace("sip_port =", "sip_prot =").replace('contact = "sip:pos2', 'contcat = "sip:pos2')
                      .replace("digit_timeout_s = 5", 'digit_timeout_s = "five"'))
    checked = gateway_cli(config, "check-config")
    assert checked.returncode == 1
    for expected in ("sip_prot", "dispatch.positions[1]", "ivr.digit_timeout_s"):
        assert expected in checked.stderr, checked.stderr
    assert str(config) in checked.stderr
