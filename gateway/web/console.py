"""The operator console's files: our own page and scripts (``console/src``) and the front-end libraries
installed at set-up from npm with the committed lock file (``console/node_modules``; ``make`` runs
``npm ci``). Nothing is loaded from the internet at run time: a centre may have none."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.settings import project_path

log = logging.getLogger(__name__)


PMTILES_URL = "/console/tiles/base.pmtiles"


def console_routes(pmtiles: Path | None = None) -> list[BaseRoute]:
    """The page, its libraries, and ``pmtiles`` (``[http] pmtiles``, checked by check-config) at PMTILES_URL."""
    page, leaflet = project_path("console/src"), project_path("console/node_modules/leaflet/dist")
    geoman = project_path("console/node_modules/@geoman-io/leaflet-geoman-free/dist")  # drawing an alert's area
    reader = project_path("console/node_modules/pmtiles/dist")  # a self-hosted raster PMTiles base map
    for library in (leaflet / "leaflet.js", geoman / "leaflet-geoman.min.js", reader / "pmtiles.js"):
        if not library.exists():
            log.warning("console: %s is missing (run make, which runs npm ci in console/): the maps will not show "
                        "or draw", library)

    async def home(request: Request) -> Response:
        return RedirectResponse("/console/")

    base = [Route(PMTILES_URL, _archive(pmtiles), methods=["GET", "HEAD"])] if pmtiles is not None else []
    return [Route("/", home), *base,
            Mount("/console/vendor/leaflet", StaticFiles(directory=leaflet, check_dir=False)),
            Mount("/console/vendor/geoman", StaticFiles(directory=geoman, check_dir=False)),
            Mount("/console/vendor/pmtiles", StaticFiles(directory=reader, check_dir=False)),
            Mount("/console", StaticFiles(directory=page, html=True, check_dir=False))]


def _archive(path: Path) -> Callable[[Request], Awaitable[Response]]:
    async def tiles(request: Request) -> Response:
        # The browser's PMTiles reader asks for byte ranges: FileResponse answers them (206, or 416).
        return FileResponse(path, media_type="application/vnd.pmtiles", headers={"Cache-Control": "no-cache"})

    return tiles
