"""The console in a real headless Chromium (Debian's, driven by Playwright) against `gateway run` with the
shipped config: log in, a wrong password, the live queue, the incident card with its map, a category
change with the session's CSRF token, and hostile text staying text. Screenshots are kept in the test's
directory (``ECGW_SHOTS=dir`` copies them elsewhere)."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from gateway.incident.nodes import NodeState
from sim.lab import REPO
from tests.drivers.test_api_inputs import api
from tests.drivers.test_people_api import PASSWORD, users

HOSTILE = "<script>window.hacked = 1</script><img src=x onerror=\"window.hacked = 2\">"


def chromium_or_skip() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (make deps installs it)")
        pytest.skip("chromium is not installed")
    return found


async def test_a_dispatcher_logs_in_sees_the_queue_live_and_works_the_card(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    async with api(tmp_path) as a, a.as_("marat") as machine:
        assert users(a, "reset", "marat", "--password-stdin", password=PASSWORD).returncode == 0
        first = (await machine.post("/incidents", json={"service": "112", "number": "+77011234567", "lat": 43.2381,
                                                        "lon": 76.9456, "address": "Абая 150", "note": HOSTILE})).json()
        later: dict[str, str] = {}

        async def while_the_page_is_open() -> None:
            await trio.sleep(6)  # the page has logged in and listens by then
            reply = await machine.post("/incidents", json={"service": "102", "number": "87017654321"})
            later["id"] = reply.json()["id"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(while_the_page_is_open)
            seen = await in_browser("drive", tmp_path, chromium=chromium, url=a.gateway.url, first_id=first["id"])
        assert seen["error"] == "Неверное имя или пароль"  # the server says it in English, the page in Russian
        assert seen["queue_has_first"] and seen["queue_has_later"], seen
        assert seen["hacked"] is None and HOSTILE in seen["timeline"], seen
        # an ellipse is drawn as one (RFC 5491: semi-major axis turned clockwise from north), not as its circle
        east, north = 1000 / (111320 * math.cos(math.radians(43.2))), 200 / 111320
        assert [[round(lat, 7), round(lon, 7)] for lat, lon in seen["ellipse"]] == [
            [43.2, round(76.9 + east, 7)], [round(43.2 - north, 7), 76.9], [43.2, round(76.9 - east, 7)],
            [round(43.2 + north, 7), 76.9]]
        assert seen["map_shapes"] >= 1 and "Абая 150" in seen["locations"], seen
        assert seen["caller"].startswith("+77011234567")
        assert "112 · вручную" in str(seen["queue_row"]) and "manual" in str(seen["queue_row"]), seen
        assert "pos1" in str(seen["positions"]), seen
        walk_in = (await machine.get(f"/incidents/{seen['walk_in']}")).json()
        assert (walk_in["source"], walk_in["caller"]["number"], walk_in["locations"][0]["address"]) == (
            "api", "+77019998877", "Достык 5")
        changed = (await machine.get(f"/incidents/{first['id']}")).json()
        assert changed["locations"] == first["locations"]  # the caller's location as received
        lat, lon = (float(x) for x in str(seen["picked"]).split(", "))
        assert (changed["scene"]["lat"], changed["scene"]["lon"]) == (lat, lon)  # as clicked, not rounded
        assert len(str(changed["scene"]["lat"]).partition(".")[2]) > 4, changed["scene"]
        assert changed["scene"]["address"] == "Абая 150, 2-й подъезд" and "marat" in str(seen["scene"])
        assert [e["data"].get("copied_from") for e in changed["timeline"] if e["kind"] == "scene_set"] == [0, None]
        assert seen["backwards"] == "Статус нельзя вернуть назад", seen["backwards"]
        assert changed["status"] == "en_route"
        assert any(e["kind"] == "note" and e["actor"] == "marat" and "дым" in e["data"]["text"]
                   for e in changed["timeline"])
        assert changed["units"], "a unit was assigned from the card"
        assert changed["category"] == "fire", changed["category"]
        assert any(e["kind"] == "category_changed" and e["actor"] == "marat" for e in changed["timeline"])
        assert any(e["kind"] == "acknowledged" and e["actor"] == "marat" and e["data"]["via"] == "console"
                   for e in changed["timeline"]), [e["kind"] for e in changed["timeline"]]
    keep_shots(tmp_path)


async def in_browser(function: str, shots: Path, *, ready: trio.Event | None = None, timeout: float = 180,
                     **args: object) -> Any:
    """``tests.console_pages.FUNCTION(**args, shots=shots)`` in its own process; ``ready`` is set when it
    prints "logged in". Its errors go to ``shots/FUNCTION.err``; the result is its last line, as JSON."""
    command = [sys.executable, "-m", "tests.console_pages", function, json.dumps({**args, "shots": str(shots)})]
    errors = shots / f"{function}.err"
    lines: list[bytes] = []
    with errors.open("wb") as err, trio.fail_after(timeout):
        process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, stderr=err, cwd=REPO)
        try:
            assert process.stdout is not None
            buffer = b""
            async for chunk in process.stdout:
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                lines += done
                if ready is not None and b"logged in" in done:
                    ready.set()
        finally:
            with trio.CancelScope(shield=True):
                await process.wait()
    assert process.returncode == 0 and lines, errors.read_text()[-4000:]
    return json.loads(lines[-1])


def keep_shots(directory: Path) -> None:
    target = os.environ.get("ECGW_SHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in directory.glob("*.png"):
            shutil.copy(shot, Path(target) / shot.name)


async def test_the_console_files_and_the_map_library_come_from_the_gateway_itself(tmp_path: Path) -> None:
    async with api(tmp_path) as a, httpx.AsyncClient(base_url=a.gateway.url) as anonymous:
        assert (await anonymous.get("/")).headers["location"] == "/console/"
        for path in ("/console/", "/console/app.js", "/console/vendor/leaflet/leaflet.js",
                     "/console/vendor/leaflet/leaflet.css"):
            reply = await anonymous.get(path)
            assert reply.status_code == 200, path
        page = (await anonymous.get("/console/")).text
        assert "http://" not in page and "https://" not in page  # nothing from elsewhere
        assert "<script>" not in page and "onclick" not in page  # no inline script: the CSP forbids it


def lost_node(store: Path, node: str, seen_s_ago: float) -> None:
    """Another gateway node's row in ``cluster_nodes`` (``incident.nodes``), last written ``seen_s_ago`` ago."""
    seen = time.time() - seen_s_ago
    row = NodeState(node=node, started_wall=seen - 600, seen_wall=seen, status="ok", active_calls=3, queue_length=0,
                    scenario_runs=1)
    db = sqlite3.connect(store)
    try:
        db.execute("INSERT INTO cluster_nodes (node, seen_wall, doc) VALUES (?,?,?)",
                   (node, seen, msgspec.json.encode(row)))
        db.commit()
    finally:
        db.close()


async def test_a_supervisor_sees_the_wall_board_a_dispatcher_does_not(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    async with api(tmp_path) as a, a.as_("marat") as machine:
        for name in ("saule", "marat"):
            assert users(a, "reset", name, "--password-stdin", password=PASSWORD).returncode == 0
        await machine.post("/incidents", json={"note": "walk-in"})
        assert (await machine.get("/board")).status_code == 403  # a dispatcher is refused by the server too
        lost_node(Path(a.gateway.cfg.store.path), "node-b", seen_s_ago=60)  # a second node, silent for a minute
        await trio.sleep(2.5)  # the gateway reads every node's row every 2 s
        seen = await in_browser("board_pages", tmp_path, chromium=chromium, url=a.gateway.url)
    assert seen["saule"]["visible"] and not seen["marat"]["visible"], seen
    figures = str(seen["saule"]["figures"])
    assert "Вызовов" in figures and "Пульты" in figures and "pos1" in figures, figures
    assert "Узлы" in figures and "local: с неполадками, 0 вызовов" in figures, figures  # no Asterisk here
    assert "node-b: нет связи 6" in figures and "pos1: свободен" in figures, figures
    assert int(str(seen["saule"]["units"])) >= 1
    assert seen["saule"]["audit_button"] and not seen["marat"]["audit_button"], seen
    assert "saule" in seen["saule"]["audit"] and "incident_read" in seen["saule"]["audit"], seen["saule"]["audit"]
    assert "legal_hold_set" in seen["saule"]["audit"] and "уголовное дело 123" in seen["saule"]["audit"]
    keep_shots(tmp_path)


async def test_five_wrong_passwords_lock_and_an_officer_sees_only_the_warnings_screen(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    async with api(tmp_path) as a, a.as_("marat") as machine:
        for name in ("marat", "aigerim"):
            assert users(a, "reset", name, "--password-stdin", password=PASSWORD).returncode == 0
        seen = await in_browser("lockout_and_roles", tmp_path, chromium=chromium, url=a.gateway.url)
        assert (await machine.get("/me")).status_code == 200  # the machine's key is not the person's password
    assert seen["locked"] == "Слишком много неверных паролей: вход заблокирован (15 мин)", seen
    assert seen["officer"] == {"desk": False, "to_desk": False, "warnings": True}, seen
    keep_shots(tmp_path)
