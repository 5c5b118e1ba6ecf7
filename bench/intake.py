"""Intake benchmark: call-setup capacity through the gateway versus Asterisk alone, and latency.

Same machine, same run, same Asterisk instance, same sipp callers and answering phones:
  (1) the highest call-setup rate with zero failed calls, through the gateway and through Asterisk
      alone (the fallback dialplan ringing a phone, gateway stopped); printed with their ratio;
  (2) at a fixed rate (default 50 calls/s): p50/p99 of INVITE -> incident stored and
      INVITE -> dispatcher ringing, from sipp's own wall-clock logs and the incident timelines.
Each caller: INVITE with a PIDF-LO circle, 200 OK, 1 s of talk, BYE. IVR off (as the target says).

Run as root: `python bench/intake.py [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import settings as config  # noqa: E402
from gateway.incident.store import SqliteStore  # noqa: E402
from gateway.protocols import pidf
from sim import lab, sipp  # noqa: E402
from sim import sipp_xml as scenario

RATES = [25, 50, 75, 100, 125, 150, 175, 200, 250, 300, 350, 400, 500, 600, 700, 800, 1000]


SUSTAINED = 0.9  # a step counts only if sipp really placed calls at >= 90 % of the offered rate


@dataclass
class Step:
    rate: int
    calls: int
    failed: int
    not_answered_by_dispatcher: int
    achieved: float  # calls per second actually placed: sipp falls behind when the far end stalls

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.not_answered_by_dispatcher == 0 and self.achieved >= SUSTAINED * self.rate


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
    """sipp's cumulative FailedCall(C) and SuccessfulCall(C) from its last statistics line."""
    if not stat.exists():
        return calls
    rows = [r.split(";") for r in stat.read_text().splitlines() if r.strip()]
    header, last = rows[0], rows[-1]
    success = int(last[header.index("SuccessfulCall(C)")])
    return calls - success


def unanswered(store_path: Path, since: float) -> tuple[int, int]:
    """(incidents since ``since``, those without a dispatcher answer)."""
    store = SqliteStore(store_path, synchronous="NORMAL")
    rows = store.recent(100000, since)
    missing = 0
    for row in rows:
        if not any(e.kind == "answered" for e in store.get(row.id).timeline):
            missing += 1
    store.close()
    return len(rows), missing


async def step(env: lab.AsteriskInstance, workdir: Path, rate: int, seconds: float, through_gateway: bool) -> Step:
    calls = max(10, int(rate * seconds))
    started_wall = time.time()
    failed, achieved = await sipp_load(env.cfg, workdir / f"{'gw' if through_gateway else 'ast'}-{rate}", rate, calls)
    missing = 0
    if through_gateway:
        await trio.sleep(1.0)  # the last hang-ups reach the store
        stored, missing = unanswered(Path(env.cfg.store.path), started_wall)
        missing += max(0, calls - failed - stored)
    return Step(rate, calls, failed, missing, achieved)


async def ramp(env: lab.AsteriskInstance, workdir: Path, seconds: float, through_gateway: bool,
               rates: list[int]) -> tuple[float, list[Step]]:
    best, steps = 0.0, []
    for rate in rates:
        result = await step(env, workdir, rate, seconds, through_gateway)
        steps.append(result)
        print(f"  {'gateway' if through_gateway else 'asterisk'} offered {rate:4d}/s, placed {result.achieved:6.1f}/s: "
              f"{result.calls} calls, {result.failed} failed, {result.not_answered_by_dispatcher} not answered "
              "by a dispatcher", flush=True)
        if not result.ok:
            break
        best = result.achieved
        await trio.sleep(2.0)  # let Asterisk finish tearing down the last calls
    return best, steps


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


async def latency(env: lab.AsteriskInstance, workdir: Path, phones: sipp.Phones, rate: int,
                  seconds: float) -> dict[str, list[float]]:
    run_dir = workdir / f"latency-{rate}"
    calls = int(rate * seconds)
    await sipp_load(env.cfg, run_dir, rate, calls)
    await trio.sleep(1.0)
    invites = {line.fields["callid"]: line.wall for line in sipp.parse_log((run_dir / "caller.log").read_text())
               if line.kind == "INVITE"}
    ringing: dict[str, float] = {}
    for line in phones.lines():
        ringing.setdefault(line.fields.get("caller", ""), line.wall)
    store = SqliteStore(env.cfg.store.path, synchronous="NORMAL")
    stored = []
    for row in store.recent(100000, min(invites.values(), default=0) - 1):
        incident = store.get(row.id)
        when = next((e.wall for e in incident.timeline if e.kind == "incident_stored"), None)
        if incident.call_id in invites and when is not None:
            stored.append((when - invites[incident.call_id]) * 1000)
    store.close()
    rings = [(ringing[c] - t) * 1000 for c, t in invites.items() if c in ringing]
    return {"stored_ms": stored, "ringing_ms": rings, "calls": [float(calls)]}


async def quiet(gateway: lab.GatewayProcess, timeout: float = 120.0) -> None:
    """Wait until Asterisk carries no channel and the gateway no call (then 2 s more)."""
    with trio.move_on_after(timeout):
        while True:
            async with httpx.AsyncClient(timeout=5) as client:
                health = (await client.get(gateway.url + "/health")).json()
            if health["active_calls"] == 0 and not health["asterisk_channels"]:
                break
            await trio.sleep(1.0)
    await trio.sleep(2.0)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ecgw-bench-") as tmp:
        workdir = Path(tmp)
        path = lab.write_config(workdir, positions=args.positions, ivr=False, ring_timeout=10, overflow=120,
                                fallback_positions=1, rtp_ports=16000)
        env = lab.start_asterisk(path)
        gateway = lab.GatewayProcess(path, workdir / "gateway.log")
        rates = RATES[: args.max_steps]
        try:
            async with sipp.phones(env.cfg, workdir / "phones", ring_ms=0) as phones:
                print(f"phones up; Asterisk instance {env.cfg.asterisk.instance}; {args.positions} positions",
                      flush=True)
                print("(1) highest zero-failure call-setup rate, 1 s calls", flush=True)
                alone, _ = await ramp(env, workdir, args.seconds, False, rates)
                await gateway.start()
                through, _ = await ramp(env, workdir, args.seconds, True, rates)
                await quiet(gateway)  # the overloaded last step must not leak into the latency run
                print(f"(2) latency at {args.rate} calls/s for {args.latency_seconds:.0f} s", flush=True)
                figures = await latency(env, workdir, phones, args.rate, args.latency_seconds)
        finally:
            await gateway.stop()
            lab.stop_asterisk(env)
    report(alone, through, args.rate, figures)


def report(alone: float, through: float, rate: int, figures: dict[str, list[float]]) -> None:
    print("\n== intake benchmark ==")
    print(f"Asterisk alone (fallback dialplan): {alone:.0f} calls/s sustained with zero failures")
    print(f"through the gateway:                {through:.0f} calls/s sustained with zero failures")
    ratio = through / alone if alone else float("nan")
    print(f"ratio gateway / Asterisk alone:     {ratio:.2f} (target >= 0.50)")
    for key, label, target in (("stored_ms", "INVITE -> incident stored", 20),
                               ("ringing_ms", "INVITE -> dispatcher ringing", 150)):
        values = figures[key]
        print(f"{label:30s} at {rate}/s: n={len(values)} p50={percentile(values, 50):.1f} ms "
              f"p99={percentile(values, 99):.1f} ms max={max(values, default=float('nan')):.1f} ms "
              f"(target p99 <= {target} ms)")


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each ramp step")
    p.add_argument("--rate", type=int, default=50, help="fixed rate for the latency run")
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--positions", type=int, default=700, help="dispatcher positions (one sipp phone answers all)")
    p.add_argument("--max-steps", type=int, default=len(RATES))
    p.add_argument("--quick", action="store_true", help="short smoke run of the benchmark itself")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.latency_seconds, args.max_steps, args.positions = 2.0, 4.0, 2, 50
    return args


if __name__ == "__main__":
    trio.run(main, cli())
