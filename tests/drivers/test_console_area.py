"""The alert composer's map in a real headless Chromium against `gateway run` with the shipped zones: a click
on a zone ticks it, a polygon and a circle drawn by clicking (Leaflet-Geoman, served by the gateway itself
under its CSP), the audience per channel following each change, and the draft keeping every drawn number as
the page measured it (a public CAP composer rounds to 2 decimals, a kilometre; we must not)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.drivers.test_api_inputs import api
from tests.drivers.test_console_browser import chromium_or_skip, in_browser, keep_shots
from tests.drivers.test_people_api import PASSWORD, users
from tests.drivers.test_warnings_audience import PEOPLE


async def test_an_officer_draws_the_area_sees_who_it_reaches_and_the_draft_keeps_it_exactly(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    async with api(tmp_path) as a, a.as_("aigerim") as officer:
        for name in ("aigerim", "daniyar"):
            assert users(a, "reset", name, "--password-stdin", password=PASSWORD).returncode == 0
        for ref, zones, channels, addresses in PEOPLE:
            body = {"ref": ref, "language": "ru", "zones": zones, "channels": channels, **addresses}
            assert (await officer.put(f"/recipients/{ref}", json=body)).status_code == 200
        seen = await in_browser("composer_area", tmp_path, chromium=chromium, url=a.gateway.url)
        draft = (await officer.get("/alerts")).json()[0]
    keep_shots(tmp_path)
    assert seen["auezov_ticked"] and seen["auezov_unticked"], seen
    assert seen["after_zone_click"][1] == "всего получателей: 1", seen  # z1, by SMS
    # Almaly, SMS and e-mail ticked: a1, a2, a4 by SMS (a4 lives in Medeu too), a2 by e-mail; a3 is Telegram's.
    assert seen["after_polygon"][:2] == ["sms: 3 · email: 1", "всего получателей: 3"], seen
    assert seen["after_telegram"][:2] == ["sms: 3 · email: 1 · telegram: 1", "всего получателей: 4"], seen
    assert seen["after_circle"][:2] == ["sms: 4 · email: 2 · telegram: 1", "всего получателей: 6"], seen
    assert "Алмалинский район, Медеуский район" in seen["after_circle"][2], seen
    problems = [p for p in seen["problems"] if "status of 401" not in p]  # the page asks /me before logging in
    assert problems == [], problems  # nothing refused by the CSP, no script error

    area = draft["cap"]["infos"][0]["areas"][0]
    drawn_polygon = [tuple(map(float, point.split(", "))) for point in seen["shapes"][0].split(" · ")]
    assert [tuple(p) for p in area["polygons"][0]] == [*drawn_polygon, drawn_polygon[0]]  # exactly, closed
    centre, radius = re.fullmatch(r"\D+ (\S+, \S+) · \D+ (\S+) km", seen["shapes"][1].strip()).groups()  # type: ignore[union-attr]
    circle = area["circles"][0]
    assert (circle["lat"], circle["lon"], circle["radius_km"]) == (*map(float, centre.split(", ")), float(radius))
    numbers = [*(x for p in drawn_polygon for x in p), circle["lat"], circle["lon"]]
    assert all(len(repr(x).split(".")[1]) > 2 for x in numbers), numbers  # never rounded to 2 decimals
    assert draft["zones"] == ["almaly", "medeu"] and draft["state"] == "draft"
    assert str(drawn_polygon[0][0]) in seen["preview_areas"] and str(circle["radius_km"]) in seen["approver_areas"]
    assert seen["cap_href"] == f"/cap/alerts/{draft['id']}.xml" and seen["approver_map_shapes"] == 2


async def test_the_drawing_library_comes_from_the_gateway_itself(tmp_path: Path) -> None:
    async with api(tmp_path) as a, httpx.AsyncClient(base_url=a.gateway.url) as anonymous:
        for path in ("/console/vendor/geoman/leaflet-geoman.min.js", "/console/vendor/geoman/leaflet-geoman.css",
                     "/console/area.js"):
            reply = await anonymous.get(path)
            assert reply.status_code == 200, path
