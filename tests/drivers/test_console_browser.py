"""The console in a real headless Chromium (Debian's, driven by Playwright) against `gateway run` with the
shipped config: log in, a wrong password, the live queue, the incident card with its map, a category
change with the session's CSRF token, and hostile text staying text. Screenshots are kept in the test's
directory (``ECGW_SHOTS=dir`` copies them elsewhere)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
import trio

from tests.drivers.test_api_inputs import Api, api
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
            seen = await trio.to_thread.run_sync(drive, chromium, a, first["id"], tmp_path)
        assert seen["error"] == "Неверное имя или пароль"  # the server says it in English, the page in Russian
        assert seen["queue_has_first"] and seen["queue_has_later"], seen
        assert seen["hacked"] is None and HOSTILE in seen["timeline"], seen
        assert seen["map_shapes"] >= 1 and "Абая 150" in seen["locations"], seen
        assert seen["caller"].startswith("+77011234567")
        changed = (await machine.get(f"/incidents/{first['id']}")).json()
        assert changed["category"] == "fire", changed["category"]
        assert any(e["kind"] == "category_changed" and e["actor"] == "marat" for e in changed["timeline"])
        assert any(e["kind"] == "acknowledged" and e["actor"] == "marat" and e["data"]["via"] == "console"
                   for e in changed["timeline"]), [e["kind"] for e in changed["timeline"]]
    keep_shots(tmp_path)


def drive(chromium: str, a: Api, first_id: str, shots: Path) -> dict[str, object]:
    """The browser part, in a worker thread (Playwright's sync API runs its own event loop)."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="ru-RU")
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        try:
            steps(page, a, first_id, shots, seen)
        except Exception:
            page.screenshot(path=shots / "failed.png")
            raise AssertionError(f"browser step failed; console said: {problems}") from None
        finally:
            browser.close()
    seen["problems"] = problems
    return seen


def steps(page: object, a: Api, first_id: str, shots: Path, seen: dict[str, object]) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    if True:
        page.goto(a.gateway.url + "/")
        page.wait_for_selector("#login-form")
        page.screenshot(path=shots / "1-login.png")
        page.fill("#login-name", "marat")
        page.fill("#login-password", "not the password")
        page.click("#login-form button")
        page.locator("#login-error:not(:empty)").wait_for()  # (no wait_for_function: the CSP forbids eval)
        seen["error"] = page.text_content("#login-error")
        page.fill("#login-password", PASSWORD)
        page.fill("#login-position", "pos1")
        page.click("#login-form button")
        page.wait_for_selector(f"#queue tr[data-id='{first_id}']")
        seen["queue_has_first"] = True
        page.locator("#queue tbody tr").nth(1).wait_for(timeout=15_000)
        seen["queue_has_later"] = True
        page.screenshot(path=shots / "2-queue.png")
        page.click(f"#queue tr[data-id='{first_id}']")
        page.wait_for_selector("#map .leaflet-interactive")
        seen["map_shapes"] = page.locator("#map .leaflet-interactive").count()
        seen["locations"] = page.text_content("#locations")
        seen["timeline"] = page.text_content("#timeline")
        seen["caller"] = page.text_content("#card-caller")
        seen["hacked"] = page.evaluate("window.hacked")
        page.screenshot(path=shots / "3-card.png")
        page.select_option("#category", "fire")
        page.locator("#timeline", has_text="category_changed").wait_for()
        page.screenshot(path=shots / "4-category.png")
        page.locator("#escalation button").first.wait_for()  # the fire scenario told people: one waits
        seen["escalation"] = page.text_content("#escalation")
        page.locator("#escalation button").first.click()
        page.locator("#escalation .acked").first.wait_for()
        page.screenshot(path=shots / "5-acknowledged.png")


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


async def test_a_supervisor_sees_the_wall_board_a_dispatcher_does_not(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    async with api(tmp_path) as a, a.as_("marat") as machine:
        for name in ("saule", "marat"):
            assert users(a, "reset", name, "--password-stdin", password=PASSWORD).returncode == 0
        await machine.post("/incidents", json={"note": "walk-in"})
        assert (await machine.get("/board")).status_code == 403  # a dispatcher is refused by the server too
        seen = await trio.to_thread.run_sync(board_pages, chromium, a, tmp_path)
    assert seen["saule"]["visible"] and not seen["marat"]["visible"], seen
    figures = str(seen["saule"]["figures"])
    assert "Вызовов" in figures and "Пульты" in figures and "pos1" in figures, figures
    assert int(str(seen["saule"]["units"])) >= 1
    keep_shots(tmp_path)


def board_pages(chromium: str, a: Api, shots: Path) -> dict[str, dict[str, object]]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, dict[str, object]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for name in ("saule", "marat"):
            page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ru-RU").new_page()
            page.goto(a.gateway.url + "/console/")
            page.fill("#login-name", name)
            page.fill("#login-password", PASSWORD)
            page.click("#login-form button")
            page.wait_for_selector("#queue tbody tr")
            if name == "saule":
                page.locator("#units tbody tr").first.wait_for()
            seen[name] = {"visible": page.is_visible("#board"), "figures": page.text_content("#board-figures"),
                          "units": page.locator("#units tbody tr").count()}
            page.screenshot(path=shots / f"6-board-{name}.png")
        browser.close()
    return seen
