"""The intake bench's load and measurements: sipp callers, the three ways a call is served, per-call
CPU read from /proc, and how far the records lag behind the calls.

The columns, same Asterisk instance, same callers and phones:
  ``asterisk``  Asterisk alone: no app registered, the fallback dialplan rings a position;
  ``minimal``   a throwaway minimal Stasis app (``bench/minimal_stasis.py``): what Stasis itself costs;
  ``minimal+``  the same app also answering and subscribing to each caller, as the gateway must: what
                those operations cost Asterisk;
  ``gateway``   ``gateway run``: store, answer, queue, subscription, hand-off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.lowlevel

from gateway import settings as config
from gateway.asterisk import sandbox
from gateway.incident.store import SqliteStore
from gateway.protocols import pidf
from sim import lab, sipp
from sim import sipp_xml as scenario

CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLE_S = 2.0  # after the last caller's BYE: the last hang-ups reach the store
LAG_POLL_S = 0.25
IDLE_S = 3.0
QUIET_MS_S = 20.0  # Asterisk counts as idle below this much CPU per wall second (idle it uses 0-10)
QUIET_WAIT_S = 60.0


# --- load ---------------------------------------------------------------------------------

def caller_xml() -> str:
    circle = pidf.build("circle", lat=43.2381, lon=76.9456, radius=25)
    return scenario.caller("112", "+77011234567", "Bench", pidf_lo=circle, talk_ms=1000)


async def sipp_load(cfg: config.GatewayConfig, workdir: Path, rate: int, calls: int) -> tuple[int, float]:
    """Run one sipp caller process at ``rate`` calls/s; return (failed calls, achieved calls/s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    xml = workdir / "caller.xml"
    xml.write_text(caller_xml())
    stat = workdir / "stat.csv"
    cmd = [sipp.sipp_binary(), f"127.0.0.1:{cfg.asterisk.sip_port}", "-sf", str(xml), "-i", "127.0.0.1", "-p", "0",
           "-r", str(rate), "-m", str(calls), "-l", str(max(rate * 4, 50)), "-nostdin", "-max_socket", "8192",
           "-timeout", f"{calls // rate + 30}s", "-trace_stat", "-stf", str(stat), "-fd", "1",
           "-trace_logs", "-log_file", str(workdir / "caller.log")]
    with trio.move_on_after(calls / rate + 60):  # sipp's own -timeout does not always fire
        await trio.run_process(cmd, cwd=workdir, check=False, capture_stdout=True, capture_stderr=True,
                               stdin=subprocess.DEVNULL)
    invites = sorted(line.wall for line in sipp.parse_log((workdir / "caller.log").read_text(errors="replace"))
                     if line.kind == "INVITE")
    span = invites[-1] - invites[0] if len(invites) > 1 else 0.0
    achieved = (len(invites) - 1) / span if span > 0 else 0.0
    return _failed_from_stat(stat, calls), achieved


def _failed_from_stat(stat: Path, calls: int) -> int:
    """Calls minus sipp's cumulative SuccessfulCall(C) from its last statistics line."""
    if not stat.exists():
        return calls
    rows = [r.split(";") for r in stat.read_text().splitlines() if r.strip()]
    header, last = rows[0], rows[-1]
    success = int(last[header.index("SuccessfulCall(C)")])
    return calls - success


# --- who serves the calls -----------------------------------------------------------------

class Served:
    """A column: who serves the calls besides Asterisk. The base is Asterisk alone (nobody)."""

    name = "asterisk"
    label = "Asterisk alone (fallback dialplan)"
    records = False  # keeps incidents whose lag the bench can read

    @property
    def pid(self) -> int | None:
        return None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class MinimalStasis(Served):
    name = "minimal"
    label = "minimal Stasis app (continue only)"

    def __init__(self, config_path: Path, log: Path, ops: bool = False) -> None:
        self.config_path, self.log, self.ops = config_path, log, ops
        if ops:
            self.name, self.label = "minimal+", "  + answer, subscribe (as the gateway)"
        self.proc: trio.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        script = Path(__file__).resolve().parent / "minimal_stasis.py"
        with open(self.log, "wb") as out:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, str(script), str(self.config_path), *(["--ops"] if self.ops else [])],
                stdout=out, stderr=subprocess.STDOUT)
        with trio.fail_after(20):
            for _ in range(200):
                if b"ready" in self.log.read_bytes():
                    return
                if self.proc.poll() is not None:
                    raise RuntimeError(f"minimal Stasis app exited; see {self.log}")
                await trio.sleep(0.1)
        raise RuntimeError(f"minimal Stasis app not ready; see {self.log}")

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            with trio.move_on_after(5):
                await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


class Gateway(Served):
    name = "gateway"
    label = "through the gateway"
    records = True

    def __init__(self, process: lab.GatewayProcess) -> None:
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.proc.pid if self.process.proc else None

    async def start(self) -> None:
        await self.process.start()

    async def stop(self) -> None:
        await self.process.stop()


def asterisk_pid(env: lab.AsteriskInstance) -> int | None:
    return sandbox.pid(sandbox.locate(env.cfg))


async def asterisk_quiet(env: lab.AsteriskInstance, timeout: float = 120.0) -> None:
    """Wait until Asterisk carries no channel (then SETTLE_S more)."""
    for _ in range(int(timeout)):
        if env.cli("core show channels count").lstrip().startswith("0 active channels"):
            break
        await trio.sleep(1.0)
    await trio.sleep(SETTLE_S)


# --- CPU per call -------------------------------------------------------------------------

def cpu_s(pid: int | None, thread: int | None = None) -> float:
    """utime + stime of a process (or of one of its threads) so far, in seconds (0 with no process)."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat")
    after_name = stat.read_text().rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


@dataclass
class Cpu:
    calls: int
    failed: int
    asterisk_ms: float  # per call: all CPU from the first INVITE until SETTLE_S after the last BYE
    app_ms: float
    idle_asterisk_ms_s: float  # CPU per wall second just before, when nothing called: what "all" includes
    idle_app_ms_s: float
    app_main_ms: float = 0.0  # of app_ms, the process's main thread (the gateway's Trio thread; the rest is
    # its store's thread and the workers): where a change's saving came from


async def cpu_step(env: lab.AsteriskInstance, served: Served, workdir: Path, rate: int, seconds: float) -> Cpu:
    """At a fixed rate: CPU of Asterisk and of the serving process per call, from /proc/<pid>/stat.
    Nothing is taken off: a process busy with something else before the calls shows in its idle rate. Asterisk
    is first given up to ``QUIET_WAIT_S`` to become idle: after the previous column's overload step it may be
    busy for a while with no channel left (seen: 57 ms/s), which counted in this column's figure."""
    pids = (asterisk_pid(env), served.pid)
    await trio.sleep(IDLE_S)  # a process just started is still warming up
    idle = await _cpu_over(pids, IDLE_S)
    waited = 0.0
    while idle[0] * 1000 > QUIET_MS_S and waited < QUIET_WAIT_S:  # still busy after the last column's overload
        idle = await _cpu_over(pids, IDLE_S)
        waited += IDLE_S
    calls = int(rate * seconds)
    start = [cpu_s(p) for p in pids]
    main_start = cpu_s(served.pid, served.pid)
    failed, _ = await sipp_load(env.cfg, workdir / f"cpu-{served.name}-{rate}", rate, calls)
    await trio.sleep(SETTLE_S)
    per_call = [(cpu_s(p) - s) * 1000 / calls for p, s in zip(pids, start, strict=True)]
    main_ms = (cpu_s(served.pid, served.pid) - main_start) * 1000 / calls
    return Cpu(calls, failed, per_call[0], per_call[1], idle[0] * 1000, idle[1] * 1000, main_ms)


async def _cpu_over(pids: tuple[int | None, ...], seconds: float) -> list[float]:
    """CPU seconds per wall second of each process over ``seconds`` of quiet."""
    before, started = [cpu_s(p) for p in pids], time.monotonic()
    await trio.sleep(seconds)
    elapsed = time.monotonic() - started
    return [(cpu_s(p) - b) / elapsed for p, b in zip(pids, before, strict=True)]


# --- how far the records lag ----------------------------------------------------------------

@dataclass
class Lag:
    """How far the step's records lag behind its calls. Each caller talks 1 s after *the gateway*
    answers, so under overload a caller may hang up before any dispatcher answered: its record is
    then complete without an "answered" entry (``unanswered``), which is late service, not a lost record."""

    at_end: int  # calls whose incident lacked its "answered" entry (or was not stored) when the step ended
    settled_s: float | None  # from the step's end until every record was final; None: not within the wait
    unanswered: int  # closed by the caller's hang-up, no dispatcher had answered (the record says so)
    lost: int  # not stored, still open after the wait, or closed as answered without its "answered" entry


async def record_lag(store_path: Path, since_wall: float, expected: int, wait_s: float = 60.0) -> Lag:
    """How many of the step's calls lack their record of a dispatcher's answer now, and how long until
    every record is final (answered, or closed by the hang-up)."""
    store = SqliteStore(store_path, synchronous="NORMAL")
    final: dict[str, str] = {}  # incident id -> "answered", "unanswered" or "lost"
    started = time.monotonic()
    try:
        stored = _settle(store, since_wall, final)
        at_end = max(expected, stored) - list(final.values()).count("answered")
        while len(final) < max(expected, stored) and time.monotonic() - started < wait_s:
            await trio.sleep(LAG_POLL_S)
            stored = _settle(store, since_wall, final)
    finally:
        store.close()
    total = max(expected, stored)
    settled = time.monotonic() - started if len(final) >= total else None
    outcomes = list(final.values())
    return Lag(at_end, settled, outcomes.count("unanswered"), total - len(final) + outcomes.count("lost"))


def _settle(store: SqliteStore, since_wall: float, final: dict[str, str]) -> int:
    """Classify the step's incidents whose record became final; returns how many are stored."""
    rows = store.recent(100000, since_wall)
    for row in rows:
        if row.id in final:
            continue
        timeline = store.get(row.id).timeline
        if any(e.kind == "answered" for e in timeline):
            final[row.id] = "answered"
        elif hung_up := next((e for e in timeline if e.kind == "hung_up"), None):
            final[row.id] = "lost" if hung_up.data.get("answered") else "unanswered"
    return len(rows)
