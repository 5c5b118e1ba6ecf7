"""A self-hosted raster PMTiles archive as the console's base map: ``gateway run`` with ``[http] pmtiles``
serves the file in byte ranges (200, 206, 416), ``/me`` names it, and in real headless Chromium the card's
map and the composer's map draw its tiles (read by the pmtiles library, served by the gateway itself under
its CSP) with the shapes and zones over them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from sim.lab import GatewayProcess, shipped_config
from tests.drivers.test_api_inputs import Api
from tests.drivers.test_console_browser import chromium_or_skip, in_browser, keep_shots
from tests.drivers.test_people_api import PASSWORD, users
from tests.pmtiles_files import ALMATY, archive

URL = "/console/tiles/base.pmtiles"


@asynccontextmanager
async def with_pmtiles(tmp_path: Path) -> AsyncIterator[tuple[Api, bytes]]:
    path, data = tmp_path / "base.pmtiles", archive()
    path.write_bytes(data)
    config = shipped_config(tmp_path)
    config.write_text(re.sub(r"(?m)^\[http\]$", f'[http]\npmtiles = "{path}"', config.read_text()))
    gateway = GatewayProcess(config, tmp_path / "gateway.log", need_ari=False)
    await gateway.start()
    try:
        yield Api(gateway, tmp_path), data
    finally:
        await gateway.stop()


async def test_the_archive_is_served_in_byte_ranges_and_me_names_it(tmp_path: Path) -> None:
    async with with_pmtiles(tmp_path) as (a, data), a.as_("marat") as machine, \
            httpx.AsyncClient(base_url=a.gateway.url) as anonymous:
        assert (await machine.get("/me")).json()["pmtiles_url"] == URL
        whole = await anonymous.get(URL)
        assert (whole.status_code, whole.content, whole.headers["accept-ranges"]) == (200, data, "bytes")
        head = await anonymous.get(URL, headers={"Range": "bytes=0-126"})
        assert (head.status_code, head.content) == (206, data[:127])
        assert head.headers["content-range"] == f"bytes 0-126/{len(data)}"
        tail = await anonymous.get(URL, headers={"Range": f"bytes={len(data) - 10}-"})
        assert (tail.status_code, tail.content) == (206, data[-10:])
        beyond = await anonymous.get(URL, headers={"Range": f"bytes={len(data)}-{len(data) + 5}"})
        assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{len(data)}")
        reader = await anonymous.get("/console/vendor/pmtiles/pmtiles.js")
        assert reader.status_code == 200 and "leafletRasterLayer" in reader.text


async def test_the_maps_draw_the_tiles_of_the_archive_under_the_shapes(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    async with with_pmtiles(tmp_path) as (a, data), a.as_("marat") as machine:
        for name in ("marat", "aigerim"):
            assert users(a, "reset", name, "--password-stdin", password=PASSWORD).returncode == 0
        first = (await machine.post("/incidents", json={"service": "112", "number": "+77011234567",
                                                        "lat": ALMATY[0], "lon": ALMATY[1]})).json()
        seen = await in_browser("pmtiles_maps", tmp_path, chromium=chromium, url=a.gateway.url, first_id=first["id"])
    keep_shots(tmp_path)
    for where in ("#map", "#w-map"):
        shown = [t for t in seen[where] if not t[1]]
        assert len(shown) >= 4 and all(t == [256, False, "blob"] for t in shown), (where, seen[where])
        assert seen[where + " shapes"] >= 1, seen
    assert seen["ranges"] and all(r == [r[0], 206] and r[0].startswith("bytes=") for r in seen["ranges"]), seen
    problems = [p for p in seen["problems"] if "status of 401" not in p]  # the page asks /me before logging in
    assert problems == [], problems  # nothing refused by the CSP, no script error
