"""The one HTTP application (Starlette on Hypercorn's Trio worker): every feature's routes, one body
limit, one error body (``web.errors``), one officer check (``web.auth``) and the OpenAPI document.

The composition root (``gateway.app``) builds each feature's routes and hands them here.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gateway.web.errors import error
from gateway.web.openapi import openapi_route
from gateway.web.server import BodyLimit, SecurityHeaders


def build_app(routes: Sequence[BaseRoute], *, images_from: str = "") -> Starlette:
    """``images_from``: the map tile server's origin (the CSP lets images come from there too)."""
    return Starlette(routes=[*routes, openapi_route()],
                     middleware=[Middleware(SecurityHeaders, images_from=images_from), Middleware(BodyLimit)],
                     exception_handlers={Exception: _failed})


async def _failed(request: Request, exc: Exception) -> Response:
    """A bug, answered in the API's JSON shape; the server logs it with its traceback (``web.server``)."""
    return error(f"internal error ({type(exc).__name__}); it is logged", 500)
