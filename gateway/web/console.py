"""The operator console's files: our own page and scripts (``console/src``) and the front-end libraries
installed at set-up from npm with the committed lock file (``console/node_modules``; ``make`` runs
``npm ci``). Nothing is loaded from the internet at run time: a centre may have none."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.settings import project_path

log = logging.getLogger(__name__)


def console_routes() -> list[BaseRoute]:
    page, leaflet = project_path("console/src"), project_path("console/node_modules/leaflet/dist")
    geoman = project_path("console/node_modules/@geoman-io/leaflet-geoman-free/dist")  # drawing an alert's area
    for library in (leaflet / "leaflet.js", geoman / "leaflet-geoman.min.js"):
        if not library.exists():
            log.warning("console: %s is missing (run make, which runs npm ci in console/): the maps will not show "
                        "or draw", library)

    async def home(request: Request) -> Response:
        return RedirectResponse("/console/")

    return [Route("/", home), Mount("/console/vendor/leaflet", StaticFiles(directory=leaflet, check_dir=False)),
            Mount("/console/vendor/geoman", StaticFiles(directory=geoman, check_dir=False)),
            Mount("/console", StaticFiles(directory=page, html=True, check_dir=False))]
