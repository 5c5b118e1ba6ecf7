"""How the gateway itself is doing: ``/health`` (503 when degraded) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import StoreError
from gateway.incident.nodes import NodeState
from gateway.incident.store import AsyncStore
from gateway.incident.wallboard import figures
from gateway.metrics import Metrics
from gateway.web.auth import Auth
from gateway.web.errors import json_response


class Health(msgspec.Struct, kw_only=True):
    """``status`` is "ok" only when nothing is wrong; else "degraded" with every ``reasons`` line."""

    status: str
    ari_connected: bool
    ami_connected: bool
    asterisk_fully_booted: bool
    asterisk_channels: int | None
    queue_length: int
    active_calls: int
    positions: dict[str, str]
    store: str
    warning_channels: dict[str, str] = {}
    responder_channels: dict[str, str] = {}
    scenario_runs: int = 0
    sla_breaches: int = 0
    alarm_sites: dict[str, float | None] = {}  # account -> last periodic test (wall clock)
    other_nodes: str = ""  # PostgreSQL: "listening" for the other nodes' incident changes, or "reconnecting (why)"
    nodes: list[NodeState] = []  # every gateway node on the store and what it holds (``incident.nodes``)
    reasons: list[str] = []  # what makes it degraded: Asterisk, the store, each channel that is not up


def health_routes(store: AsyncStore, metrics: Metrics, health: Callable[[], Health], auth: Auth,
                  *, open_to_all: bool, answer_sla_s: float = 15.0) -> list[Route]:
    """``open_to_all``: the API listens on loopback only, so whoever reaches it is on the host; bound
    elsewhere, health and metrics (queue length, positions) need a person or a token too."""

    def denied(request: Request) -> Response | None:
        return None if open_to_all else auth.reader(request)

    async def get_health(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        report = health()
        try:
            await store.recent(1)
        except StoreError as exc:
            report.store, report.status = f"error: {exc}", "degraded"
            report.reasons.append(f"store: {exc}")
        return json_response(report, 200 if report.status == "ok" else 503)

    async def get_metrics(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def get_board(request: Request) -> Response:
        """The supervisors' wall board (``incident.wallboard``) with positions and escalations now."""
        if isinstance(who := auth.require(request, "supervisor", "admin"), Response):
            return who
        now = time.time()
        board = figures(await store.recent(10_000, now - 3600.0), now, answer_sla_s)
        report = health()
        board.positions, board.scenario_runs, board.sla_breaches = report.positions, report.scenario_runs, \
            report.sla_breaches
        board.nodes = report.nodes
        return json_response(board)

    async def get_positions(request: Request) -> Response:
        """Every dispatcher position and its state now, for the desks (the board's figures stay the supervisors')."""
        if isinstance(who := auth.require(request, "dispatcher", "supervisor", "admin"), Response):
            return who
        return json_response(health().positions)

    return [Route("/health", get_health), Route("/metrics", get_metrics), Route("/board", get_board),
            Route("/positions", get_positions)]
