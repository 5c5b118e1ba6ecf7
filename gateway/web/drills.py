"""Drills from the console: a drill operator picks one of the shipped drill files, the gateway runs
``gateway-sim drill`` against itself (a child process, one drill at a time: two would share the phones and
the queue), and the report comes back as JSON with the run's log.

The simulator is run, never imported: the product does not depend on it (the import contract says so).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import msgspec
import trio
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.settings import project_path
from gateway.web.auth import Auth
from gateway.web.errors import decode_body, error, json_response, refusal

log = logging.getLogger(__name__)
OPERATORS = ("drill", "admin")
READERS = ("drill", "admin", "supervisor")


class DrillRun(msgspec.Struct, kw_only=True):
    id: str
    file: str
    by: str
    state: str = "running"  # running, done, failed
    started_wall: float
    finished_wall: float | None = None
    returncode: int | None = None


class StartBody(msgspec.Struct, forbid_unknown_fields=True):
    file: Annotated[str, Meta(max_length=100)]


class DrillRoutes:
    def __init__(self, auth: Auth, config_path: str, directory: Path, nursery: trio.Nursery) -> None:
        self.auth = auth
        self.config_path = config_path
        self.directory = directory  # reports and logs
        self.nursery = nursery
        self.runs: dict[str, DrillRun] = {}

    def routes(self) -> list[Route]:
        return [Route("/drills", self.list_drills, methods=["GET"]), Route("/drills", self.start, methods=["POST"]),
                Route("/drills/{id}", self.get_run, methods=["GET"])]

    @staticmethod
    def files() -> list[str]:
        return sorted(p.name for p in project_path("sim/drills").glob("*.toml"))

    async def list_drills(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request, *READERS), Response):
            return who
        runs = sorted(self.runs.values(), key=lambda r: -r.started_wall)
        return json_response({"files": self.files(), "runs": runs})

    async def start(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request, *OPERATORS), Response):
            return who
        try:
            body = decode_body(await request.body(), StartBody)
        except GatewayError as exc:
            return refusal(exc, who.name, "drill")
        if body.file not in self.files():
            return error(f"no drill file {body.file!r}: expected one of {', '.join(self.files())}", 400)
        if any(r.state == "running" for r in self.runs.values()):
            return error("a drill is running: one at a time (they would share the phones and the queue)", 409)
        run = DrillRun(id=time.strftime("%Y%m%d-%H%M%S"), file=body.file, by=who.name, started_wall=time.time())
        self.runs[run.id] = run
        self.nursery.start_soon(self._run, run)
        log.info("drill %s (%s) started by %s", run.id, run.file, who.name)
        return json_response(run, 201)

    async def _run(self, run: DrillRun) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "sim", "--config", self.config_path, "drill",
                   str(project_path("sim/drills") / run.file), "--report", str(self.directory / f"{run.id}.json"),
                   "--no-progress"]
        out = await trio.to_thread.run_sync(open, self.directory / f"{run.id}.log", "wb")
        try:
            done = await trio.run_process(command, stdout=out, stderr=subprocess.STDOUT, check=False,
                                          cwd=project_path("."))
        finally:
            out.close()
        run.returncode, run.finished_wall = done.returncode, time.time()
        run.state = "done" if done.returncode == 0 else "failed"
        log.info("drill %s finished: %s (exit %d)", run.id, run.state, done.returncode)

    async def get_run(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request, *READERS), Response):
            return who
        run = self.runs.get(request.path_params["id"])
        if run is None:
            return error("no such drill run", 404)
        report_path, log_path = self.directory / f"{run.id}.json", self.directory / f"{run.id}.log"
        done = report_path.exists() and run.state != "running"
        report = msgspec.json.decode(report_path.read_bytes()) if done else None
        tail = log_path.read_bytes()[-4000:].decode(errors="replace") if log_path.exists() else ""
        return json_response({"run": run, "report": report, "log": tail})
