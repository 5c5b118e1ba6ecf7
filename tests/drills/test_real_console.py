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
from tests.drivers.test_console_browser import chromium_or_skip, keep_shots

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
        seen.update(await trio.to_thread.run_sync(watch, chromium, gateway.url, names, number, tmp_path,
                                                  trio.from_thread.run_sync, ready.set))

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
    keep_shots(tmp_path)


def watch(chromium: str, url: str, names: dict[str, str], number: str, shots: Path, on_trio: object,
          logged_in: object) -> dict[str, dict[str, object]]:
    """Two dispatchers in two browser contexts; returns what each page showed once the call was answered."""
    from playwright.sync_api import sync_playwright

    result: dict[str, dict[str, object]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        pages = {}
        for position, name in names.items():
            page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="kk-KZ").new_page()
            page.goto(url + "/console/")
            page.fill("#login-name", name)
            page.fill("#login-password", PASSWORD)
            page.fill("#login-position", position)
            page.click("#login-form button")
            page.wait_for_selector("#queue")
            pages[position] = page
        on_trio(logged_in)  # type: ignore[operator]
        for position, page in pages.items():
            row = page.locator("#queue tbody tr", has_text=number)
            row.wait_for(timeout=45_000)
            result[position] = {"queued_number": True}
        deadline = 60
        while deadline and not any(page.is_visible("#card") for page in pages.values()):
            pages["pos1"].wait_for_timeout(500)  # through the IVR, queued, rung, answered
            deadline -= 1
        pages["pos1"].wait_for_timeout(1500)  # long enough for a wrong page to open it too
        for position, page in pages.items():
            result[position]["card_id"] = page.text_content("#card-id") if page.is_visible("#card") else ""
            page.screenshot(path=shots / f"console-{position}.png")
            if result[position]["card_id"]:
                page.locator("#map .leaflet-interactive").first.wait_for(timeout=5000)
                result[position].update(
                    caller=page.text_content("#card-caller"), locations=page.text_content("#locations"),
                    shapes=page.locator("#map .leaflet-interactive").count(), hacked=page.evaluate("window.hacked"))
        browser.close()
    return result
