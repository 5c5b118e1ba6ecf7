"""Real tier: the shipped smoke drill through `gateway-sim drill`, as a drill operator runs it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from sim.lab import REPO, AsteriskInstance, GatewayProcess


async def test_smoke_drill_loses_no_call(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    # The drill is timed for the shipped IVR settings (5 s per menu, 20 s in all), not the tests'
    # quick ones: same Asterisk instance, a gateway with the default IVR.
    config = tmp_path / "drill.toml"
    config.write_text(asterisk.path.read_text().replace("digit_timeout_s = 2\nmax_s = 6",
                                                         "digit_timeout_s = 5\nmax_s = 20"))
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    report_path = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "sim", "--config", str(config), "drill",
           str(REPO / "sim" / "drills" / "smoke.toml"), "--report", str(report_path), "--no-progress"]
    await gateway.start()
    try:
        done = await trio.run_process(cmd, cwd=REPO, check=False, capture_stdout=True, capture_stderr=True)
    finally:
        await gateway.stop()
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()[-2000:]
    assert "calls lost" in out
    report = json.loads(report_path.read_text())
    assert report["calls_placed"] == 20 and report["calls_lost"] == 0
    assert report["incidents_created"] == 20 and report["calls_without_incident"] == 0
    # Only the drill's deliberate early hang-up leaves before a dispatcher answers.
    assert report["answered_by_dispatcher"] >= 19
    assert report["incidents_with_location"] >= 12
    assert report["invite_to_stored_s"]["count"] == 20
