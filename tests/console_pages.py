"""The browser side of the console tests: real headless Chromium (Debian's) driven by Playwright's sync API,
in a process of its own (``python -m tests.console_pages FUNCTION JSON-ARGS``, the result as JSON on the
last line of standard output). Its own process, because the stand-ins' modules install trio-asyncio's event
loop policy, under which Playwright's loop cannot run; this module imports nothing of the project."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PASSWORD = "a long pass phrase"
def log_in(page: Any, url: str, name: str, position: str = "") -> None:
    page.goto(url + "/console/")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.fill("#login-position", position)
    page.click("#login-form button")


LAUNCH = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def drive(chromium: str, url: str, first_id: str, shots: Path) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="ru-RU")
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        try:
            steps(page, url, first_id, shots, seen)
        except Exception:
            page.screenshot(path=shots / "failed.png")
            raise AssertionError(f"browser step failed; console said: {problems}") from None
        finally:
            browser.close()
    seen["problems"] = problems
    return seen


def steps(page: object, url: str, first_id: str, shots: Path, seen: dict[str, object]) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    if True:
        page.goto(url + "/")
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
        seen["queue_row"] = page.text_content(f"#queue tr[data-id='{first_id}']")
        page.locator("#positions .position").first.wait_for()
        seen["positions"] = page.text_content("#positions")
        page.click(f"#queue tr[data-id='{first_id}']")
        page.wait_for_selector("#map .leaflet-interactive")
        seen["map_shapes"] = page.locator("#map .leaflet-interactive").count()
        seen["locations"] = page.text_content("#locations")
        seen["timeline"] = page.text_content("#timeline")
        seen["caller"] = page.text_content("#card-caller")
        seen["hacked"] = page.evaluate("window.hacked")
        seen["ellipse"] = page.evaluate(
            "import('/console/map.js').then((m) => m.ellipsePoints("
            "{lat: 43.2, lon: 76.9, radius_m: 1000, semi_minor_m: 200, orientation_deg: 90}, 4))")
        page.screenshot(path=shots / "3-card.png")
        page.select_option("#category", "fire")
        page.locator("#timeline", has_text="category_changed").wait_for()
        page.screenshot(path=shots / "4-category.png")
        page.locator("#escalation button").first.wait_for()  # the fire scenario told people: one waits
        seen["escalation"] = page.text_content("#escalation")
        page.locator("#escalation button").first.click()
        page.locator("#escalation .acked").first.wait_for()
        page.screenshot(path=shots / "5-acknowledged.png")
        page.locator("body").press("t")  # keyboard first: T is the note
        page.keyboard.type("Звонящий сообщил: дым из окна 3 этажа")
        page.keyboard.press("Enter")
        page.locator("#timeline", has_text="дым из окна").wait_for()
        scene_steps(page, shots, seen)
        page.locator("#proposals button").first.click()
        page.locator("#timeline", has_text="unit_assigned").wait_for()
        seen["proposals"] = page.text_content("#proposals")
        page.click("#new-incident summary")
        page.fill("#n-number", "87019998877")
        page.fill("#n-address", "Достык 5")
        page.fill("#n-note", "пришёл в дежурную часть")
        page.click("#new-form button")
        page.locator("#card-caller", has_text="+77019998877").wait_for()
        seen["walk_in"] = page.text_content("#card-id")
        page.screenshot(path=shots / "5b-walk-in.png")


def scene_steps(page: Any, shots: Path, seen: dict[str, object]) -> None:
    """S takes the caller's location as the incident's; then the dispatcher corrects it on the map."""
    page.locator("body").press("Escape")  # out of the note field
    page.locator("body").press("s")
    page.locator("#scene-text", has_text="взято у звонящего").wait_for()
    page.click("#scene-pick")
    page.click("#map", position={"x": 40, "y": 160})
    seen["picked"] = page.text_content("#scene-point")
    page.fill("#scene-address", "Абая 150, 2-й подъезд")
    page.click("#scene-form button[type=submit]")
    page.locator("#scene-text", has_text="исправлено вручную").wait_for()
    seen["scene"] = page.text_content("#scene-text")
    page.screenshot(path=shots / "4b-scene.png")
    page.locator("body").press("2")  # en route
    page.locator("#timeline", has_text="en_route").wait_for()
    page.locator("body").press("1")  # back to assigned: refused, in Russian
    page.locator("#action-error:not(:empty)").wait_for()
    seen["backwards"] = page.text_content("#action-error")


def board_pages(chromium: str, url: str, shots: Path) -> dict[str, dict[str, object]]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, dict[str, object]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        for name in ("saule", "marat"):
            page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ru-RU").new_page()
            log_in(page, url, name)
            page.wait_for_selector("#queue tbody tr")
            if name == "saule":
                page.locator("#units tbody tr").first.wait_for()
            seen[name] = {"visible": page.is_visible("#board"), "figures": page.text_content("#board-figures"),
                          "units": page.locator("#units tbody tr").count()}
            page.screenshot(path=shots / f"6-board-{name}.png")
            seen[name]["audit_button"] = page.is_visible("#to-audit")
            if name == "saule":
                seen[name]["audit"] = audit_of_a_card(page, shots)
        browser.close()
    return seen


def lockout_and_roles(chromium: str, url: str, shots: Path) -> dict[str, object]:
    """Five wrong passwords lock an account (said in Russian, with the minutes); an officer who may not see the
    desk gets only the warnings screen."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ru-RU").new_page()
        page.goto(url + "/console/")
        for attempt in range(6):
            page.fill("#login-name", "marat")
            page.fill("#login-password", f"wrong {attempt}")
            page.evaluate("document.getElementById('login-error').textContent = ''")
            page.click("#login-form button")
            page.locator("#login-error:not(:empty)").wait_for()
        seen["locked"] = page.text_content("#login-error")
        page.screenshot(path=shots / "0-locked.png")
        log_in(page, url, "aigerim")
        page.wait_for_selector("#compose")
        seen["officer"] = {"desk": page.is_visible("#desk-view"), "to_desk": page.is_visible("#to-desk"),
                           "warnings": page.is_visible("#warnings-view")}
        browser.close()
    return seen


def audit_of_a_card(page: Any, shots: Path) -> str:
    """A supervisor opens a card, then asks who opened it: the audit view, narrowed to that incident."""
    page.locator("#queue tbody tr").first.click()
    page.once("dialog", lambda dialog: dialog.accept("уголовное дело 123"))  # the hold's reason
    page.locator("#recordings button").click()
    page.locator("#recordings", has_text="уголовное дело 123").wait_for()
    page.locator("#card-audit-link").click()
    page.locator("#audit-trail tbody tr").first.wait_for()
    page.screenshot(path=shots / "6b-audit.png")
    return str(page.text_content("#audit-trail"))


def watch(chromium: str, url: str, names: dict[str, str], number: str, shots: Path) -> dict[str, dict[str, object]]:
    """Two dispatchers in two browser contexts; returns what each page showed once the call was answered."""
    from playwright.sync_api import sync_playwright

    result: dict[str, dict[str, object]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        pages = {}
        for position, name in names.items():
            page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="kk-KZ").new_page()
            log_in(page, url, name, position)
            page.wait_for_selector("#queue")
            pages[position] = page
        print("logged in", flush=True)  # the test places the call now
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
                result[position]["recording_s"] = recording_played(page, number)
                page.screenshot(path=shots / f"console-{position}-recording.png")
        browser.close()
    return result


PLAY = """() => new Promise((done) => {
  const audio = document.querySelector("#recordings audio");
  audio.onloadedmetadata = () => done(audio.duration);
  audio.onerror = () => done(-1);
  audio.preload = "auto";
  audio.load();
})"""


def recording_played(page: Any, number: str) -> float:
    """Once the call has ended and its recording is indexed, the card lists it and the browser plays it:
    the duration the browser's own decoder read (-1 when it could not)."""
    for _ in range(60):
        page.locator("#queue tbody tr", has_text=number).click()
        page.wait_for_timeout(1000)
        if page.locator("#recordings audio").count():
            return float(page.evaluate(PLAY))
    return 0.0


def officers(chromium: str, url: str, shots: Path) -> dict[str, object]:
    from playwright.sync_api import FilePayload, sync_playwright

    seen: dict[str, object] = {"asked_again": False}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        pages = {}
        for name in ("aigerim", "daniyar"):
            page = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="ru-RU").new_page()
            log_in(page, url, name)
            page.wait_for_selector("#compose")
            pages[name] = page
        drafter, approver = pages["aigerim"], pages["daniyar"]

        def accept(dialog: object) -> None:
            seen["asked_again"] = True
            dialog.accept()  # type: ignore[attr-defined]

        drafter.on("dialog", accept)
        drafter.click("#import summary")
        csv = ("ref,name,phone,language,zones,channels\nx1,Аян,+77010000001,kk,almaly,sms\n"
               "x2,Бота,+77010000002,ru,almaly,sms\nx3,Chris,+77010000003,en,almaly,sms\nbad,,12,xx,almaly,sms\n")
        drafter.set_input_files("#import-file", files=FilePayload(name="people.csv", mimeType="text/csv",
                                                                  buffer=csv.encode()))
        drafter.click("#import-form button")
        drafter.locator("#import-errors tbody tr").first.wait_for()
        seen["import"] = drafter.text_content("#import-result")
        seen["import_errors"] = drafter.text_content("#import-errors")
        drafter.locator("#w-zones input[value=medeu]").check()
        drafter.locator("#w-channels input[value=email]").uncheck()
        drafter.select_option("#w-event", "flood")
        drafter.select_option("#w-status", "Actual")
        seen["banner"] = drafter.is_visible("#actual-banner")
        drafter.click("#compose button[type=submit]")
        drafter.locator("#preview .rendering").first.wait_for()
        seen["preview"] = drafter.text_content("#preview")  # e.g. "SMS (1 SMS, UCS-2): ..."
        drafter.locator("#alerts tbody tr").first.wait_for()
        seen["drafted_state"] = drafter.get_attribute("#alerts tbody tr td:nth-child(3)", "data-state")
        seen["drafted_shown"] = drafter.text_content("#alerts tbody tr td:nth-child(3)")
        drafter.screenshot(path=shots / "7-composed.png")
        approver.locator("#alerts tbody tr button", has_text="Утвердить").first.click(timeout=15_000)
        approver.locator("#alerts tbody tr td:nth-child(5)", has_text="100 %").wait_for(timeout=30_000)
        seen["progress"] = approver.text_content("#alerts tbody tr td:nth-child(5)")
        approver.screenshot(path=shots / "8-sent.png")
        # The water rises: the drafter writes an Update of the sent alert, for the second officer to approve.
        drafter.locator("#alerts tbody tr button", has_text="Обновить").first.click(timeout=15_000)
        drafter.locator("#updating").wait_for()
        seen["updating"] = drafter.text_content("#updating-text")
        seen["update_zones"] = [i.get_attribute("value") for i in drafter.locator("#w-zones input:checked").all()]
        drafter.fill("#w-note", "вода поднимается")
        drafter.click("#compose button[type=submit]")
        drafter.locator("#updating").wait_for(state="hidden")
        drafter.locator("#alerts tbody tr td", has_text="flood · обновление").first.wait_for(timeout=15_000)
        drafter.screenshot(path=shots / "8b-update.png")
        browser.close()
    return seen


def drill_page(chromium: str, url: str, name: str, shots: Path, file: str = "smoke.toml") -> dict[str, object]:
    """A drill operator runs a drill file from the console and reads its report: figures, latency bars,
    escalation per category and the warning phase's delivery curve per channel."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ru-RU")
        log_in(page, url, name)
        page.wait_for_selector("#drill-form")
        page.select_option("#drill-file", file)
        page.click("#drill-form button")
        page.locator("#drill-runs tbody tr", has_text="running").wait_for()
        page.screenshot(path=shots / "9-drill-running.png")
        page.locator("#drill-report .figures").wait_for(timeout=300_000)
        report = "#drill-report"
        seen: dict[str, object] = {"figures": page.text_content(f"{report} .figures"),
                "bars": page.locator(f"{report} svg.bars rect").count(),
                "escalation_bars": page.locator(f"{report} svg.escalation rect.median").count(),
                "delivery_lines": page.locator(f"{report} svg.delivery polyline.channel").count(),
                "legend": page.locator(f"{report} svg.delivery .legend text").all_text_contents(),
                "delivery_table": page.text_content(f"{report} table.delivery-times") if page.locator(
                    f"{report} table.delivery-times").count() else "",
                "headings": page.locator(f"{report} h4").all_text_contents(),
                "state": page.text_content("#drill-runs tbody tr td:nth-child(3)")}
        page.screenshot(path=shots / "10-drill-report.png", full_page=True)
        browser.close()
    return seen


def composer_area(chromium: str, url: str, shots: Path) -> dict[str, object]:
    """An officer ticks a zone by clicking it, draws a polygon in Almaly and a circle in Medeu with the map's
    tools, reads the audience after each change and submits; a second officer sees the draft's areas."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        page = browser.new_context(viewport={"width": 1400, "height": 1100}, locale="ru-RU").new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        log_in(page, url, "aigerim")
        try:
            draw_area(page, shots, seen)
            approver = browser.new_context(viewport={"width": 1400, "height": 1100}, locale="ru-RU").new_page()
            log_in(approver, url, "daniyar")
            approver.locator("#alerts tbody tr a.cap-xml").first.wait_for(timeout=15_000)
            seen["cap_href"] = approver.get_attribute("#alerts tbody tr a.cap-xml", "href")
            approver.locator("#alerts tbody tr button", has_text="Просмотр").first.click()
            approver.locator("#preview .areas").wait_for()
            seen["approver_areas"] = approver.text_content("#preview .areas")
            approver.locator("#w-map path.draft-area").nth(1).wait_for()
            seen["approver_map_shapes"] = approver.locator("#w-map path.draft-area").count()
            approver.screenshot(path=shots / "13-area-approver.png", full_page=True)
        except Exception:
            page.screenshot(path=shots / "failed-area.png", full_page=True)
            raise AssertionError(f"browser step failed; console said: {problems}") from None
        finally:
            browser.close()
    seen["problems"] = problems
    return seen


def draw_area(page: Any, shots: Path, seen: dict[str, object]) -> None:
    page.locator("#w-map path.zone-almaly").wait_for()
    audience = ["#w-audience .counts", "#w-audience .total", "#w-audience .reached"]

    def read_audience(key: str, counts: str) -> None:
        page.locator("#w-audience:not(.counting) .counts", has_text=counts).wait_for(timeout=10_000)
        seen[key] = [page.text_content(s) for s in audience]

    page.screenshot(path=shots / "11-area-empty.png", full_page=True)
    zone = page.locator("#w-map path.zone-auezov").bounding_box()
    page.mouse.click(zone["x"] + zone["width"] / 2, zone["y"] + zone["height"] / 2)
    seen["auezov_ticked"] = page.is_checked("#w-zones input[value=auezov]")
    read_audience("after_zone_click", "sms: 1 · email: 0")
    page.wait_for_timeout(600)  # not a double click
    page.mouse.click(zone["x"] + zone["width"] / 2, zone["y"] + zone["height"] / 2)
    seen["auezov_unticked"] = not page.is_checked("#w-zones input[value=auezov]")
    box = page.locator("#w-map path.zone-almaly").bounding_box()
    page.click("#w-map .leaflet-pm-icon-polygon")
    corners = [(0.3, 0.3), (0.75, 0.35), (0.55, 0.75), (0.3, 0.3)]  # the last click on the first point closes it
    for fx, fy in corners:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_timeout(600)
    page.locator("#w-shapes li").first.wait_for()
    read_audience("after_polygon", "sms: 3 · email: 1")
    page.check("#w-channels input[value=telegram]")
    read_audience("after_telegram", "telegram: 1")
    medeu = page.locator("#w-map path.zone-medeu").bounding_box()
    page.click("#w-map .leaflet-pm-icon-circle")
    centre = (medeu["x"] + medeu["width"] / 2, medeu["y"] + medeu["height"] / 2)
    page.mouse.click(*centre)
    page.wait_for_timeout(600)
    page.mouse.click(centre[0] + 12, centre[1])
    page.locator("#w-shapes li").nth(1).wait_for()
    read_audience("after_circle", "sms: 4")
    seen["shapes"] = [page.text_content(f"#w-shapes li:nth-child({i}) .coords") for i in (1, 2)]
    page.screenshot(path=shots / "11-area-drawn.png", full_page=True)
    page.select_option("#w-event", "mudflow")
    page.click("#compose button[type=submit]")
    page.locator("#preview .areas").wait_for()
    seen["preview_areas"] = page.text_content("#preview .areas")
    page.screenshot(path=shots / "12-area-submitted.png", full_page=True)


def call_back_page(chromium: str, url: str, name: str, number: str, shots: Path) -> dict[str, object]:
    """A dispatcher at pos1 sees ``number`` on the call-back list and presses "call back"; what the list
    showed before, and the page's refusal line after (empty when the gateway took it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ru-RU").new_page()
        log_in(page, url, name, "pos1")
        row = page.locator("#callbacks tbody tr", has_text=number)
        row.wait_for()
        seen: dict[str, object] = {"row": row.text_content(), "count": page.text_content("#callbacks-count")}
        page.screenshot(path=shots / "13-callbacks.png", full_page=True)
        row.locator("button").click()
        page.wait_for_timeout(1500)
        seen["error"] = page.text_content("#callbacks-error")
        browser.close()
    return seen


def pmtiles_maps(chromium: str, url: str, first_id: str, shots: Path) -> dict[str, object]:
    """A dispatcher's card map and an officer's composer map over the gateway's raster PMTiles: the tiles
    each map shows (width, hidden, source scheme), the byte ranges the page asked for and what came back."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, object] = {}
    problems: list[str] = []
    ranges: list[list[object]] = []
    tiles = "(imgs) => imgs.map((i) => [i.naturalWidth, i.style.display === 'none', i.src.split(':')[0]])"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH)
        for name, position, where in (("marat", "pos1", "#map"), ("aigerim", "", "#w-map")):
            page = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="ru-RU").new_page()
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: ranges.append([r.request.header_value("range"), r.status])
                    if r.url.endswith("/console/tiles/base.pmtiles") else None)
            log_in(page, url, name, position)
            if where == "#map":
                page.click(f"#queue tr[data-id='{first_id}']")
            page.locator(f"{where} img.leaflet-tile-loaded").first.wait_for(timeout=15_000)
            page.wait_for_timeout(2000)  # every tile of the view decoded
            seen[where] = page.eval_on_selector_all(f"{where} img.leaflet-tile-loaded", tiles)
            seen[where + " shapes"] = page.locator(f"{where} path").count()  # over the tiles
            page.locator(where).screenshot(path=shots / f"pmtiles-{name}.png")
        browser.close()
    return {**seen, "ranges": ranges, "problems": problems}


FUNCTIONS: dict[str, Callable[..., object]] = {
    "drive": drive, "board_pages": board_pages, "watch": watch, "officers": officers, "drill_page": drill_page,
    "composer_area": composer_area, "call_back_page": call_back_page, "lockout_and_roles": lockout_and_roles,
    "pmtiles_maps": pmtiles_maps}


if __name__ == "__main__":
    args = json.loads(sys.argv[2])
    if "shots" in args:
        args["shots"] = Path(args["shots"])
    print(json.dumps(FUNCTIONS[sys.argv[1]](**args)))
