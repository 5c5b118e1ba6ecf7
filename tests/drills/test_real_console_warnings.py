"""Real tier, in a real headless Chromium: two civil-defence officers in two browser contexts; one composes an
alert (the Actual status shows its banner and asks again), sees every language's rendering, submits it; the
other approves and sends it from the list; both watch delivery reach 100 % on the SMSC stand-in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import trio

from sim.lab import REPO
from tests.drills.test_real_warnings import Lab, lab
from tests.drivers.test_console_browser import chromium_or_skip, in_browser, keep_shots

PASSWORD = "a long pass phrase"
PEOPLE = 20


def set_password(w: Lab, name: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(w.gateway.path), "users", "reset", name,
                    "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True,
                   timeout=60, cwd=REPO)


async def test_two_officers_compose_approve_send_and_watch_delivery(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    async with lab(tmp_path) as w:
        for name in ("aigerim", "daniyar"):
            set_password(w, name)
        key = (w.dir / "cli.key").read_text().strip()
        async with httpx.AsyncClient(base_url=w.gateway.url, headers={"X-ECGW-Local-Key": key,
                                                                      "X-ECGW-User": "aigerim"}) as c:
            csv = "ref,phone,language,zones,channels\n" + "".join(
                f"r{i},+7701{i:07d},{('kk', 'ru', 'en')[i % 3]},medeu,sms\n" for i in range(PEOPLE))
            assert (await c.post("/recipients", content=csv.encode())).json()["imported"] == PEOPLE
        seen = await in_browser("officers", tmp_path, chromium=chromium, url=w.gateway.url)
        with trio.fail_after(30):
            while sum(w.smsc.by_destination.values()) < PEOPLE:
                await trio.sleep(0.2)
        async with httpx.AsyncClient(base_url=w.gateway.url, headers={"X-ECGW-Local-Key": key,
                                                                      "X-ECGW-User": "aigerim"}) as c:
            alerts = (await c.get("/alerts")).json()
        update = next(a for a in alerts if a["cap"]["msg_type"] == "Update")
        first = next(a for a in alerts if a["cap"]["msg_type"] == "Alert")
        assert (update["state"], update["root"], update["zones"]) == ("draft", first["id"], ["medeu"]), update
        assert seen["updating"].endswith(first["id"]) and seen["update_zones"] == ["medeu"], seen
    assert seen["import"] == "принято: 3 · отклонено: 1", seen  # in a zone the alert does not reach
    assert "language" in str(seen["import_errors"]) and "5" in str(seen["import_errors"]), seen
    assert seen["banner"] and seen["asked_again"], seen
    preview = str(seen["preview"])
    assert "ЖАТТЫҒУ" not in preview and "SMS, UCS-2)" in preview and "undefined" not in preview, preview
    assert (seen["drafted_state"], seen["drafted_shown"]) == ("draft", "черновик") and "100 %" in str(seen["progress"])
    assert sum(w.smsc.by_destination.values()) == PEOPLE
    keep_shots(tmp_path)
