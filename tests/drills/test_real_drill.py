"""Real tier: the shipped smoke drill through `gateway-sim drill`, as a drill operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio

from sim.lab import REPO, AsteriskInstance, GatewayProcess
from tests.drivers.test_console_browser import chromium_or_skip, in_browser, keep_shots


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


async def test_a_drill_operator_runs_the_smoke_drill_from_the_console(
        asterisk: AsteriskInstance, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    config = tmp_path / "drill.toml"
    config.write_text(asterisk.path.read_text().replace("digit_timeout_s = 2\nmax_s = 6",
                                                         "digit_timeout_s = 5\nmax_s = 20"))
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    name = f"drill-{tmp_path.name[-6:]}".replace("_", "-").lower()
    await gateway.start()
    try:
        subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), "users", "add", name, "--role",
                        "drill", "--password-stdin"], input="a long pass phrase\n", text=True, check=True,
                       capture_output=True, timeout=60, cwd=REPO)
        seen = await in_browser("drill_page", tmp_path, timeout=400, chromium=chromium, url=gateway.url, name=name)
    finally:
        await gateway.stop()
    figures = str(seen["figures"])
    assert seen["state"] == "done" and "Вызовов сделано20" in figures and "Потеряно вызовов0" in figures, seen
    assert int(str(seen["bars"])) >= 4, seen  # INVITE -> stored and -> ringing, drawn
    keep_shots(tmp_path)
