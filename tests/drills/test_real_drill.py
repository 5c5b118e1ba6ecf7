"""Real tier: the shipped smoke drill through `gateway-sim drill`, as a drill operator runs it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from sim.lab import REPO, AsteriskInstance, GatewayProcess, free_port
from sim.providers import open_providers
from tests.drivers.test_console_browser import chromium_or_skip, in_browser, keep_shots

# Two civil-defence officers, drill channels and responders' channels on free loopback ports, as the
# shipped config has them: sim/drills/warning.toml's phase drafts, approves and sends its Exercise alert
# through these, and the calls' scenarios notify responders by SMS and Telegram.
WARNINGS = """
[[warnings.users]]
name = "aigerim"
roles = ["civil-defence"]

[[warnings.users]]
name = "daniyar"
roles = ["civil-defence"]

[warnings.drill.smpp]
system_id = "drill"
password = "drill"
port = {smpp}

[warnings.drill.email]
from_address = "drill@ecgw.kz"
port = {smtp}

[warnings.drill.telegram]
bot_token = "123456:DRILL-token"
api_base_url = "http://127.0.0.1:{telegram}/bot"
public_channel = "@ecgw_drill"

[escalation.channels.smpp]
system_id = "drill"
password = "drill"
port = {smpp}

[escalation.channels.telegram]
bot_token = "123456:DRILL-token"
api_base_url = "http://127.0.0.1:{telegram}/bot"
"""


def drill_config(asterisk: AsteriskInstance, tmp_path: Path) -> Path:
    """The session's Asterisk with the shipped IVR timing (the drills are timed for it) and drill channels."""
    tcp = socket.SOCK_STREAM
    config = tmp_path / "drill.toml"
    config.write_text(asterisk.path.read_text().replace("digit_timeout_s = 2\nmax_s = 6",
                                                         "digit_timeout_s = 5\nmax_s = 20")
                      + WARNINGS.format(smpp=free_port(tcp), smtp=free_port(tcp), telegram=free_port(tcp)))
    return config


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


async def run_from_console(gateway: GatewayProcess, config: Path, chromium: str, name: str,
                           tmp_path: Path) -> dict[str, object]:
    await gateway.start()
    try:
        subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), "users", "add", name, "--role",
                        "drill", "--password-stdin"], input="a long pass phrase\n", text=True, check=True,
                       capture_output=True, timeout=60, cwd=REPO)
        seen: dict[str, object] = await in_browser("drill_page", tmp_path, timeout=400, chromium=chromium,
                                                   url=gateway.url, name=name, file="warning.toml")
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.host_headers()) as host:
            seen["recipients_left"] = (await host.get("/recipients?limit=1000")).json()
        return seen
    finally:
        await gateway.stop()


async def test_a_drill_operator_runs_the_warning_drill_from_the_console(
        asterisk: AsteriskInstance, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    config = drill_config(asterisk, tmp_path)
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    name = f"drill-{tmp_path.name[-6:]}".replace("_", "-").lower()
    # The stand-ins first, as `make run` starts them (the drill starts those nobody serves itself).
    async with open_providers(gateway.cfg.warnings.drill) as counters:
        seen = await run_from_console(gateway, config, chromium, name, tmp_path)
        received = {channel: count() for channel, count in counters.items()}
    keep_shots(tmp_path)
    figures = str(seen["figures"])
    assert seen["state"] == "done" and "Вызовов сделано6" in figures and "Потеряно вызовов0" in figures, seen
    # INVITE -> answered, -> stored and -> ringing: p50, p90, p99 and max each
    assert int(str(seen["bars"])) >= 12, seen
    # the calls' scenarios notified responders by SMS: a median bar for each of the 4 categories
    assert int(str(seen["escalation_bars"])) >= 4, seen
    assert "Эскалация по категориям (от создания происшествия)" in seen["headings"], seen  # type: ignore
    # the Exercise alert's delivery: one line per channel, and the legend names them
    assert int(str(seen["delivery_lines"])) == 3, seen
    assert [str(s).split(" ")[0] for s in seen["legend"]] == ["email", "smpp", "telegram"], seen  # type: ignore
    assert "100 %" in str(seen["delivery_table"]), seen
    assert received["smpp"]["submitted"] >= 100 and received["email"]["accepted"] >= 100, received
    assert seen["recipients_left"] == [], seen["recipients_left"]  # the drill's own 300 taken out again
