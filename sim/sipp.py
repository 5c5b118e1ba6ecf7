"""Trio drivers for sipp processes: answering phones (``answering_sipp``, used by every phone in
``sim``), dispatcher phones and single callers.

Each process gets its own working directory for its scenario and logs; parsing what sipp
logged is pure: ``parse_log`` reads the callers' and dispatcher phones' INVITE/ANSWERED/RINGING
lines, ``parse_events`` what a ``scenario.answering`` phone logged.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import trio

from gateway.errors import DrillError
from gateway.settings import GatewayConfig
from sim import sipp_xml as scenario

log = logging.getLogger(__name__)
LINE = re.compile(r"^(INVITE|ANSWERED|RINGING) (\d+)(?:\.\d+)? (\d+)(?:\.\d+)? (.*)$")
EVENT = re.compile(r"^(INVITE|ANSWERED|PRESSED|REJECTED|BYE) (\d+)(?:\.\d+)? (\d+)(?:\.\d+)? number=(\S*)")


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


@dataclass(frozen=True)
class PhoneEvent:
    kind: str  # INVITE, ANSWERED, PRESSED, REJECTED or BYE (the far end hung up)
    wall: float
    number: str


def parse_events(text: str) -> list[PhoneEvent]:
    """The events a ``scenario.answering`` phone logged, in order (sipp prints the time fields as floats)."""
    out = []
    for line in text.splitlines():
        match = EVENT.match(line.strip())
        if match:
            kind, sec, usec, number = match.groups()
            out.append(PhoneEvent(kind, int(sec) + int(usec) / 1e6, number))
    return out


def read_log(path: Path) -> str:
    """What sipp has logged to ``path`` so far ("" before it wrote anything)."""
    return path.read_text(errors="replace") if path.exists() else ""


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


@dataclass(frozen=True)
class Uas:
    """One answering sipp: scenario ``xml`` on ``host:port``; its files in the work directory are
    ``<name>.xml``, ``<name>.log`` and ``<name>.err``."""

    name: str
    xml: str
    port: int
    host: str = "127.0.0.1"
    media_port: int | None = None  # -mp: sipp's default media port would clash between processes
    extra: tuple[str, ...] = ()


@asynccontextmanager
async def answering_sipp(workdir: Path, phones: Sequence[Uas], what: str) -> AsyncIterator[list[Path]]:
    """Run a sipp for each of ``phones`` until the block exits; yields their log files in order.

    Raises DrillError naming ``what`` if one has exited 0.3 s after the start (a port taken, a
    broken scenario). On exit each is terminated, waited for up to 5 s and killed if still running.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[trio.Process] = []
    try:
        for uas in phones:
            xml = workdir / f"{uas.name}.xml"
            xml.write_text(uas.xml)
            media = ["-mp", str(uas.media_port)] if uas.media_port is not None else []
            procs.append(await trio.lowlevel.open_process(
                [sipp_binary(), "-sf", str(xml), "-i", uas.host, "-p", str(uas.port), *media, "-trace_logs",
                 "-log_file", str(workdir / f"{uas.name}.log"), "-trace_err", "-error_file",
                 str(workdir / f"{uas.name}.err"), "-nostdin", *uas.extra],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir))
        await trio.sleep(0.3)
        for proc in procs:
            if proc.poll() is not None:
                raise DrillError(f"{what}: sipp exited at start (code {proc.returncode}); see {workdir}")
        yield [workdir / f"{uas.name}.log" for uas in phones]
    finally:
        await _stop(procs)


async def _stop(procs: list[trio.Process]) -> None:
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
class Phones:
    workdir: Path
    logs: list[Path]

    def lines(self) -> list[LogLine]:
        return [line for path in self.logs for line in parse_log(read_log(path))]


@asynccontextmanager
async def phones(cfg: GatewayConfig, workdir: Path, ring_ms: int = 300) -> AsyncIterator[Phones]:
    """Answering sipp phones for every position (and the backup) until the block exits."""
    found = [Uas(f"phone-{port}", scenario.phone(name, ring_ms), port, host, extra=("-max_socket", "4096"))
             for (host, port), name in phone_endpoints(cfg).items()]
    async with answering_sipp(workdir, found, "a dispatcher phone") as logs:
        yield Phones(workdir, logs)


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


async def place_call(cfg: GatewayConfig, xml: str, workdir: Path, timeout_s: float,
                     target: str | None = None) -> CallResult:
    """Run one sipp caller with scenario ``xml`` against Asterisk (or ``target``, ``host:port``: Kamailio in
    front of the nodes); never raises for a failed call."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "caller.xml"
    path.write_text(xml)
    log_file = workdir / "caller.log"
    cmd = [sipp_binary(), target or f"127.0.0.1:{cfg.asterisk.sip_port}", "-sf", str(path), "-i", "127.0.0.1",
           "-p", "0", "-m", "1", "-trace_logs", "-log_file", str(log_file), "-trace_err", "-error_file",
           str(workdir / "caller.err"), "-trace_msg", "-message_file", str(workdir / "messages.log"),
           "-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error"]
    with trio.move_on_after(timeout_s + 5):
        result = await trio.run_process(cmd, cwd=workdir, check=False, capture_stdout=True, capture_stderr=True,
                                        stdin=subprocess.DEVNULL)
        return CallResult(result.returncode, parse_log(read_log(log_file)), workdir)
    return CallResult(-1, [], workdir)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on loopback right now."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
            return int(port)
        except OSError:
            continue
