"""Intake benchmark: call-setup capacity through the gateway, a minimal Stasis app and Asterisk alone.

Same machine, same run, same Asterisk instance, same sipp callers and answering phones, four columns
(``bench/intake_load.py``): Asterisk alone (the fallback dialplan ringing a phone), a throwaway minimal
Stasis app that only continues each caller into ``ecgw-deliver`` (what Stasis itself costs), the same app
also answering and subscribing to each caller as the gateway must (what those operations cost Asterisk),
and the gateway.
  (1) per column, at a fixed rate (default 50 calls/s for 10 s): CPU per call of Asterisk and of the
      serving process, from /proc/<pid>/stat (utime + stime, first INVITE to 2 s after the last BYE).
      With ``--rounds N`` this is measured N times, each round on a fresh Asterisk instance and store,
      and printed as the median and range; Asterisk's extra work for a column is taken against Asterisk
      alone *in the same round* (the median of those paired differences): on this VM the same code's CPU
      per call drifts by 20-30 % between runs minutes apart, more than most changes it should show;
  (2) per column, the highest call-setup rate with zero failed calls; printed with the ratios to Asterisk
      alone. Through the gateway every step also says how far the records lag: incidents lacking their
      "answered" entry when the step ends, and how long until they all have it (or how many never do);
  (3) through the gateway at the fixed rate: p50/p99 of INVITE -> incident stored and INVITE -> dispatcher
      ringing, from sipp's own wall-clock logs and the incident timelines.
Each caller: INVITE with a PIDF-LO circle, 200 OK, 1 s of talk, BYE. IVR off (as the target says).

Run as root: `python bench/intake.py [--quick] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.intake_load import Cpu, Gateway, Lag, MinimalStasis, Served, asterisk_quiet, cpu_step, record_lag, sipp_load
from gateway.incident.store import SqliteStore
from sim import lab, sipp

RATES = [25, 50, 75, 100, 125, 150, 175, 200, 250, 300, 350, 400, 500, 600, 700, 800, 1000]
SUSTAINED = 0.9  # a step counts only if sipp really placed calls at >= 90 % of the offered rate
LAG_OK_S = 1.0  # a step counts only if every record is final within this long after it ends


@dataclass
class Step:
    rate: int
    calls: int
    failed: int
    achieved: float  # calls per second actually placed: sipp falls behind when the far end stalls
    lag: Lag | None  # None: nobody keeps records in this column

    @property
    def ok(self) -> bool:
        lag = self.lag
        in_time = lag is None or (lag.at_end == 0 or (lag.settled_s is not None and lag.settled_s <= LAG_OK_S))
        served = lag is None or (lag.unanswered == 0 and lag.lost == 0)
        return self.failed == 0 and in_time and served and self.achieved >= SUSTAINED * self.rate

    def line(self, name: str) -> str:
        text = (f"  {name:8s} offered {self.rate:4d}/s, placed {self.achieved:6.1f}/s: {self.calls} calls, "
                f"{self.failed} failed")
        return text + (f"; records: {lag_text(self.lag)}" if self.lag is not None else "")


def lag_text(lag: Lag) -> str:
    text = f"{lag.at_end} lacking 'answered' when the step ended"
    if lag.settled_s is not None:
        text += f", every record final {lag.settled_s:.1f} s later"
    text += f"; {lag.unanswered} hung up before a dispatcher answered" if lag.unanswered else ""
    return text + f"; {lag.lost} LOST" if lag.lost else text


async def step(env: lab.AsteriskInstance, workdir: Path, served: Served, rate: int, seconds: float) -> Step:
    calls = max(10, int(rate * seconds))
    started_wall = time.time()
    failed, achieved = await sipp_load(env.cfg, workdir / f"{served.name}-{rate}", rate, calls)
    lag = await record_lag(Path(env.cfg.store.path), started_wall, calls - failed) if served.records else None
    return Step(rate, calls, failed, achieved, lag)


async def ramp(env: lab.AsteriskInstance, workdir: Path, served: Served, seconds: float,
               rates: list[int]) -> tuple[float, list[Step]]:
    best, steps = 0.0, []
    for rate in rates:
        result = await step(env, workdir, served, rate, seconds)
        steps.append(result)
        print(result.line(served.name), flush=True)
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


@dataclass
class Column:
    served: Served
    cpu: Cpu | None = None
    best: float = 0.0


async def measure(env: lab.AsteriskInstance, workdir: Path, column: Column, args: argparse.Namespace,
                  cpu_only: bool) -> None:
    """One column: CPU per call at the fixed rate, then the ramp; the serving process left running."""
    served = column.served
    await served.start()
    column.cpu = await cpu_step(env, served, workdir, args.rate, args.cpu_seconds)
    cpu = column.cpu
    print(f"  {served.name:8s} CPU per call at {args.rate}/s ({cpu.calls} calls, {cpu.failed} failed): "
          f"Asterisk {cpu.asterisk_ms:.2f} ms, app {cpu.app_ms:.2f} ms (main thread {cpu.app_main_ms:.2f} ms, other "
          f"threads {cpu.app_ms - cpu.app_main_ms:.2f} ms; just before, idle: Asterisk "
          f"{cpu.idle_asterisk_ms_s:.1f} ms/s, app {cpu.idle_app_ms_s:.1f} ms/s)", flush=True)
    if cpu_only:
        return
    await asterisk_quiet(env)
    column.best, _ = await ramp(env, workdir, served, args.seconds, RATES[: args.max_steps])


async def main(args: argparse.Namespace) -> None:
    rounds: list[list[Column]] = []
    figures: dict[str, list[float]] = {}
    for number in range(args.rounds):
        if args.rounds > 1:
            print(f"-- round {number + 1} of {args.rounds}" + (" (CPU only)" if number else ""), flush=True)
        columns, got = await one_round(args, cpu_only=args.cpu_only or number > 0)
        rounds.append(columns)
        if number == 0:  # latency is measured in the first round only
            figures = got
    report(rounds, args.rate, figures)


async def one_round(args: argparse.Namespace, cpu_only: bool) -> tuple[list[Column], dict[str, list[float]]]:
    """Every column on a fresh Asterisk instance and store: CPU per call, then (unless ``cpu_only``) the
    ramp, and the latency through the gateway."""
    with tempfile.TemporaryDirectory(prefix="ecgw-bench-") as tmp:
        workdir = Path(tmp)
        path = lab.write_config(workdir, positions=args.positions, ivr=False, ring_timeout=10, overflow=120,
                                fallback_positions=1, rtp_ports=16000)
        env = lab.start_asterisk(path)
        gateway = lab.GatewayProcess(path, workdir / "gateway.log")
        # The gateway first: on start it registers every call it did not see from Asterisk's CEL log,
        # which after the other columns would be thousands of calls to catch up on.
        columns = [Column(Gateway(gateway)), Column(MinimalStasis(path, workdir / "minimal-ops.log", ops=True)),
                   Column(MinimalStasis(path, workdir / "minimal.log")), Column(Served())]
        columns = [c for c in columns if c.served.name in args.columns.split(",")]
        figures: dict[str, list[float]] = {"stored_ms": [], "ringing_ms": []}
        try:
            async with sipp.phones(env.cfg, workdir / "phones", ring_ms=0) as phones:
                print(f"phones up; Asterisk instance {env.cfg.asterisk.instance}; {args.positions} positions",
                      flush=True)
                print("(1) CPU per call at a fixed rate" + ("" if cpu_only else
                      ", then (2) the highest zero-failure rate, 1 s calls"), flush=True)
                await measure(env, workdir, columns[0], args, cpu_only)
                if columns[0].served is gateway_column(columns) and not cpu_only:
                    await quiet(gateway)  # the overloaded last step must not leak into the latency run
                    print(f"(3) latency at {args.rate} calls/s for {args.latency_seconds:.0f} s", flush=True)
                    figures = await latency(env, workdir, phones, args.rate, args.latency_seconds)
                for before, column in zip(columns, columns[1:], strict=False):
                    await asterisk_quiet(env)
                    await before.served.stop()
                    await measure(env, workdir, column, args, cpu_only)
        finally:
            for column in columns:
                await column.served.stop()
            lab.stop_asterisk(env)
    return columns, figures


def gateway_column(columns: list[Column]) -> Served | None:
    return next((c.served for c in columns if c.served.name == "gateway"), None)


def report(rounds: list[list[Column]], rate: int, figures: dict[str, list[float]]) -> None:
    """Calls/s from the first round; CPU per call as the median over the rounds (range in brackets with more
    than one); Asterisk's extra work per column against Asterisk alone in the same round."""
    columns = rounds[0]
    alone = columns[-1].best if columns[-1].served.name == "asterisk" else 0.0
    print(f"\n== intake benchmark ({len(rounds)} round{'s' if len(rounds) > 1 else ''}) ==")
    print(f"{'':38s} {'calls/s':>7s} {'ratio':>5s} {'Asterisk ms/call':>18s} {'extra':>5s} {'app ms/call':>17s}")
    for at in reversed(range(len(columns))):
        cpus = [r[at].cpu for r in rounds if r[at].cpu is not None]
        extra = [cpu.asterisk_ms - base.asterisk_ms for r in rounds
                 if (cpu := r[at].cpu) is not None and (base := r[-1].cpu) is not None
                 and r[-1].served.name == "asterisk"]
        ratio = columns[at].best / alone if alone else float("nan")
        print(f"{columns[at].served.label:38s} {columns[at].best:7.0f} {ratio:5.2f} "
              f"{spread([c.asterisk_ms for c in cpus]):>18s} {median(extra):5.2f} "
              f"{spread([c.app_ms for c in cpus]):>17s}")
    print(f"(calls/s: sustained with zero failures; CPU at {rate} calls/s; extra: Asterisk's CPU per call beyond "
          "Asterisk alone, paired by round; gateway target ratio >= 0.50, <= 4 ms gateway and <= 1 ms extra "
          "Asterisk per call)")
    for key, label, target in (("stored_ms", "INVITE -> incident stored", 20),
                               ("ringing_ms", "INVITE -> dispatcher ringing", 150)):
        values = figures[key]
        print(f"{label:30s} at {rate}/s: n={len(values)} p50={percentile(values, 50):.1f} ms "
              f"p99={percentile(values, 99):.1f} ms max={max(values, default=float('nan')):.1f} ms "
              f"(target p99 <= {target} ms)")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """"5.10" for one value, "5.10 (4.90-5.80)" for several: the median and the range."""
    if len(values) < 2:
        return f"{median(values):.2f}"
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each ramp step")
    p.add_argument("--rate", type=int, default=50, help="fixed rate for the CPU and latency runs")
    p.add_argument("--cpu-seconds", type=float, default=10.0, help="duration of each column's CPU run")
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--positions", type=int, default=700, help="dispatcher positions (one sipp phone answers all)")
    p.add_argument("--max-steps", type=int, default=len(RATES))
    p.add_argument("--quick", action="store_true", help="short smoke run of the benchmark itself")
    p.add_argument("--columns", default="gateway,minimal+,minimal,asterisk", help="which columns, comma-separated")
    p.add_argument("--rounds", type=int, default=1, help="measure CPU per call this many times (fresh instances)")
    p.add_argument("--cpu-only", action="store_true", help="only the CPU per call at the fixed rate")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.quick:
        args.seconds, args.cpu_seconds, args.latency_seconds, args.max_steps, args.positions = 2.0, 2.0, 4.0, 2, 50
    return args


if __name__ == "__main__":
    trio.run(main, cli())
