"""The one HTTP application (Starlette on Hypercorn's Trio worker): every feature's routes, one body
limit, one error body (``web.errors``), one officer check (``web.auth``) and the OpenAPI document.

The composition root (``gateway.app``) builds each feature's routes and hands them here.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from gateway.web.openapi import openapi_route
from gateway.web.server import BodyLimit


def build_app(routes: Sequence[BaseRoute]) -> Starlette:
    return Starlette(routes=[*routes, openapi_route()], middleware=[Middleware(BodyLimit)])
