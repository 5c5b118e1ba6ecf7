"""Real tier, in a real headless Chromium: a sipp call to 112 with a PIDF-LO circle and a hostile display name
through the real Asterisk appears in the queue of dispatchers logged in at their positions; the position
whose phone answers sees the card open by itself, with the circle on the map and the name as text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

from gateway.protocols import pidf
from sim import sipp
from sim.lab import REPO, AsteriskInstance, GatewayProcess
from tests.drills.test_real_intake import ALMATY, place
from tests.drivers.test_console_browser import chromium_or_skip, in_browser, keep_shots

PASSWORD = "a long pass phrase"
HOSTILE_NAME = "<script>window.hacked=1</script>"


def add_dispatcher(gateway: GatewayProcess, name: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(gateway.path), "users", "add", name,
                    "--role", "dispatcher", "--password-stdin"], input=PASSWORD + "\n", text=True, check=True,
                   capture_output=True, timeout=60, cwd=REPO)


async def test_a_located_112_call_opens_its_card_at_the_answering_position(
        asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    names = {position: f"d{os.getpid()}-{tmp_path.name[-6:]}-{position}".replace("_", "-").lower()
             for position in ("pos1", "pos2")}
    for name in names.values():
        add_dispatcher(gateway, name)
    number = "+77057770001"
    circle = pidf.build("circle", lat=ALMATY[0], lon=ALMATY[1], radius=25)
    ready = trio.Event()
    seen: dict[str, dict[str, object]] = {}

    async def browse() -> None:
        seen.update(await in_browser("watch", tmp_path, ready=ready, chromium=chromium, url=gateway.url,
                                     names=names, number=number))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(browse)
        with trio.fail_after(60):
            await ready.wait()
        result = await place(asterisk, tmp_path, number=number, name=HOSTILE_NAME, pidf_lo=circle,
                             keys="21", talk_ms=9000)
    assert result.returncode == 0, result.workdir
    incident = await gateway.wait_incident(result.call_id, until="answered")
    opened = {position: page for position, page in seen.items() if page.get("card_id") == incident.id}
    assert list(opened) == [incident.position], (incident.position, seen)  # only the answering position
    card = opened[incident.position]
    # the intake already drops < and > from display names and flags it; the page shows what is left as text
    caller, locations = str(card["caller"]), str(card["locations"])
    assert card["hacked"] is None and "window.hacked=1" in caller and "name_markup" in caller, card
    assert "pidf-lo" in locations and "circle" in locations and "25 m" in locations, card
    assert int(str(card["shapes"])) >= 2, card  # the uncertainty circle and its centre
    assert all(page["queued_number"] for page in seen.values()), seen  # both saw it in the queue
    # the browser decoded and timed the call's recording (sipp sends no audio: only what Asterisk played is in it)
    assert 1.0 < float(str(card["recording_s"])) < 30.0, card
    keep_shots(tmp_path)
