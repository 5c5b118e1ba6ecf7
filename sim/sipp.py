"""Trio drivers for sipp processes: answering dispatcher phones and single callers.

Each process gets its own working directory for its scenario and logs; parsing what sipp
logged (INVITE/ANSWERED/RINGING lines with wall times) is pure and lives in ``parse_log``.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import trio

from gateway.config import GatewayConfig
from gateway.errors import DrillError
from sim import scenario

log = logging.getLogger(__name__)
LINE = re.compile(r"^(INVITE|ANSWERED|RINGING) (\d+)(?:\.\d+)? (\d+)(?:\.\d+)? (.*)$")


@dataclass
class LogLine:
    kind: str
    wall: float
    fields: dict[str, str] = field(default_factory=dict)


def parse_log(text: str) -> list[LogLine]:
    """Lines our scenarios log: ``KIND <sec> <usec> key=value ...`` (sipp prints numbers as floats)."""
    out = []
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if not match:
            continue
        fields = dict(part.split("=", 1) for part in match.group(4).split() if "=" in part)
        out.append(LogLine(match.group(1), int(match.group(2)) + int(match.group(3)) / 1e6, fields))
    return out


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise DrillError("sipp is not installed (Debian package sip-tester)")
    return path


def phone_endpoints(cfg: GatewayConfig) -> dict[tuple[str, int], str]:
    """Distinct (host, port) of every position and the backup centre -> a name for logs."""
    targets = [(p.name, p.contact) for p in cfg.dispatch.positions]
    if cfg.dispatch.backup:
        targets.append(("backup", cfg.dispatch.backup))
    found: dict[tuple[str, int], str] = {}
    for name, contact in targets:
        parsed = urlparse(contact.replace("sip:", "sip://", 1).replace("sips:", "sips://", 1))
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 5060
        if host not in ("127.0.0.1", "localhost"):
            raise DrillError(f"position {name} at {host}: simulated phones run on loopback only")
        found.setdefault(("127.0.0.1", port), name)
    return found


@dataclass
class Phones:
    workdir: Path
    logs: list[Path]

    def lines(self) -> list[LogLine]:
        return [line for path in self.logs if path.exists() for line in parse_log(path.read_text(errors="replace"))]


@asynccontextmanager
async def phones(cfg: GatewayConfig, workdir: Path, ring_ms: int = 300) -> AsyncIterator[Phones]:
    """Answering sipp phones for every position (and the backup) until the block exits."""
    workdir.mkdir(parents=True, exist_ok=True)
    procs, logs = [], []
    try:
        for (host, port), name in phone_endpoints(cfg).items():
            xml = workdir / f"phone-{port}.xml"
            xml.write_text(scenario.phone(name, ring_ms))
            log_file = workdir / f"phone-{port}.log"
            logs.append(log_file)
            procs.append(await trio.lowlevel.open_process(
                [sipp_binary(), "-sf", str(xml), "-i", host, "-p", str(port), "-trace_logs", "-log_file",
                 str(log_file), "-trace_err", "-error_file", str(workdir / f"phone-{port}.err"), "-nostdin",
                 "-max_socket", "4096"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir))
        await trio.sleep(0.3)
        for proc in procs:
            if proc.poll() is not None:
                raise DrillError(f"a sipp phone exited at start (code {proc.returncode}); see {workdir}")
        yield Phones(workdir, logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        with trio.move_on_after(5) as scope:
            scope.shield = True
            for proc in procs:
                await proc.wait()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


@dataclass
class CallResult:
    returncode: int
    lines: list[LogLine]
    workdir: Path

    @property
    def invite_wall(self) -> float | None:
        return next((line.wall for line in self.lines if line.kind == "INVITE"), None)

    @property
    def answered_wall(self) -> float | None:
        return next((line.wall for line in self.lines if line.kind == "ANSWERED"), None)

    @property
    def call_id(self) -> str:
        return next((line.fields.get("callid", "") for line in self.lines if line.kind == "INVITE"), "")


async def place_call(cfg: GatewayConfig, xml: str, workdir: Path, timeout_s: float) -> CallResult:
    """Run one sipp caller with scenario ``xml`` against Asterisk; never raises for a failed call."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "caller.xml"
    path.write_text(xml)
    log_file = workdir / "caller.log"
    cmd = [sipp_binary(), f"127.0.0.1:{cfg.asterisk.sip_port}", "-sf", str(path), "-i", "127.0.0.1", "-p", "0",
           "-m", "1", "-trace_logs", "-log_file", str(log_file), "-trace_err", "-error_file",
           str(workdir / "caller.err"), "-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error"]
    with trio.move_on_after(timeout_s + 5):
        result = await trio.run_process(cmd, cwd=workdir, check=False, capture_stdout=True, capture_stderr=True,
                                        stdin=subprocess.DEVNULL)
        lines = parse_log(log_file.read_text(errors="replace")) if log_file.exists() else []
        return CallResult(result.returncode, lines, workdir)
    return CallResult(-1, [], workdir)
