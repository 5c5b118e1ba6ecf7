"""Escalation benchmark: N concurrent incidents (default 1,000) running response scenarios with timers.

Every incident is opened through the desk (a real SQLite store on disk, synchronous=FULL) and runs a
bench scenario: notify one responder with ack "any", ``--timeout`` s per attempt, ``--repeat``
attempts; if nobody acknowledged, escalate to a tier (``--tier-repeat`` attempts); close. A share of
incidents (``--sms-share``) notifies over SMS through the SMPP driver to the SMSC stand-in in its own
process, the rest on the console; a share (``--ack-share``) is acknowledged through
``Engine.acknowledge`` at a random moment of the first wait. The rest time out and escalate.

Prints: timers fired; how late each acknowledgement deadline fired (p50/p99/max); the turnaround from
a deadline to the next attempt being sent; wall time; peak RSS and Python heap (tracemalloc, measured
in a separate pass so its overhead does not distort the timings) per incident; store events and
transactions per second.

Baseline in the same run: one bare Trio task per incident sleeping (``trio.sleep_until``) to exactly
the deadlines the engine fired, replayed on the same schedule, with no engine: the lateness floor of
this machine. Ratios are engine / baseline.

Run: ``python bench/escalation.py [--incidents N] [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.base import Channel  # noqa: E402
from channels.smpp import open_smpp
from gateway.incident.bus import Bus  # noqa: E402
from gateway.incident.desk import Desk, no_caller  # noqa: E402
from gateway.incident.recorder import Recorder  # noqa: E402
from gateway.incident.records import Incident, TimelineEvent  # noqa: E402
from gateway.incident.store import AsyncStore, SqliteStore, Statement  # noqa: E402
from gateway.scenario import catalogue as catalogue_file  # noqa: E402
from gateway.scenario import people as directory_file  # noqa: E402
from gateway.scenario import texts as texts_file  # noqa: E402
from gateway.scenario.catalogue import Catalogue  # noqa: E402
from gateway.scenario.engine import Engine  # noqa: E402
from gateway.scenario.model import Known  # noqa: E402
from gateway.scenario.notifier import Notifier  # noqa: E402
from gateway.scenario.people import Directory  # noqa: E402
from gateway.scenario.texts import Texts  # noqa: E402
from gateway.settings.channels import SmppConfig  # noqa: E402
from sim.smsc import smsc_process as run_smsc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KIND: Final = "category"  # the run kind every bench run uses
SYSTEM_ID, PASSWORD = "esc", "secret"


# --- configuration written to a temp dir -----------------------------------------------------------

def scenario_toml(role: str, channels: str, tier: str, timeout_s: float, repeat: int) -> str:
    return f"""[[steps]]
do = "notify"
roles = ["{role}"]
channels = [{channels}]
template = "incident_new"
ack = "any"
timeout_s = {timeout_s}
repeat = {repeat}

[[steps]]
do = "escalate"
when = {{ last_acked = false }}
tier = "{tier}"

[[steps]]
do = "close"
reason = "bench"
"""


def responders_toml(timeout_s: float, tier_repeat: int) -> str:
    people = "".join(f"""
[[people]]
name = "{name}"
roles = ["{role}"]
{contact}
channels = ["{channel}"]
language = "ru"
""" for name, role, contact, channel in (
        ("duty_console", "bench_duty", 'email = "duty@bench.example"', "email"),
        ("duty_sms", "bench_duty_sms", 'phone = "+77010009001"', "sms"),
        ("super_console", "bench_super", 'email = "super@bench.example"', "email"),
        ("super_sms", "bench_super_sms", 'phone = "+77010009002"', "sms")))
    tiers = "".join(f"""
[[tiers]]
name = "{name}"
roles = ["{role}"]
channels = [{channels}]
template = "escalated"
ack = "any"
timeout_s = {timeout_s}
repeat = {tier_repeat}
""" for name, role, channels in (("console_tier", "bench_super", '"console"'),
                                 ("sms_tier", "bench_super_sms", '"sms", "console"')))
    return people + tiers


def template_toml(word: str) -> str:
    return "".join(f'[{lang}]\nsubject = "{word} {{incident}}"\ntext = "{word}: {{category}}, {{address}}, '
                   f'{{priority}}. {{incident}}."\n' for lang in ("kk", "ru", "en"))


CATEGORIES = "".join(f"""
[[categories]]
name = "{name}"
title = {{ kk = "{name}", ru = "{name}", en = "{name}" }}
priority = 5
scenario = "{scenario}"
""" for name, scenario in (("unclassified", "bench_console"), ("bench_console", "bench_console"),
                           ("bench_sms", "bench_sms")))


@dataclass(frozen=True)
class Config:
    catalogue: Catalogue
    directory: Directory
    texts: Texts


def write_config(work: Path, timeout_s: float, repeat: int, tier_repeat: int) -> Config:
    """Write and load the bench catalogue, directory and texts (loaded and checked like the gateway's)."""
    (work / "scenarios").mkdir(parents=True)
    (work / "templates").mkdir()
    (work / "categories.toml").write_text(CATEGORIES)
    (work / "scenarios" / "bench_console.toml").write_text(
        scenario_toml("bench_duty", '"console"', "console_tier", timeout_s, repeat))
    (work / "scenarios" / "bench_sms.toml").write_text(
        scenario_toml("bench_duty_sms", '"sms", "console"', "sms_tier", timeout_s, repeat))
    (work / "responders.toml").write_text(responders_toml(timeout_s, tier_repeat))
    for name, word in (("incident_new", "New"), ("escalated", "Escalated")):
        (work / "templates" / f"{name}.toml").write_text(template_toml(word))
    directory = directory_file.load(work / "responders.toml")
    texts = texts_file.load(work / "templates")
    known = Known(roles=directory.roles, people=frozenset(directory.people), templates=texts.names,
                  tiers=frozenset(directory.tiers), centres=frozenset(directory.centres))
    catalogue = catalogue_file.load(work / "categories.toml", work / "scenarios", known)
    return Config(catalogue, directory, texts)


# --- the SMSC stand-in -----------------------------------------------------------------------------

@asynccontextmanager
async def smsc_process(work: Path) -> AsyncIterator[tuple[int, Path]]:
    """sim.smsc in its own process; yields (SMPP port, stats file written when it exits)."""
    stats = work / "smsc-stats.json"
    async with run_smsc("--system-id", SYSTEM_ID, "--password", PASSWORD, "--no-text", "--no-counts",
                                 "--stats", str(stats), ready_timeout_s=20) as (_, ready):
        yield int(ready["port"]), stats


# --- the engine under test -------------------------------------------------------------------------

class CountingStore(SqliteStore):
    """The real SQLite store, counting transactions (group commits) and reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, synchronous="FULL")
        self.commits = 0
        self.commit_s = 0.0
        self.reads = 0

    def write(self, statements: list[Statement]) -> None:
        start = time.perf_counter()
        super().write(statements)
        self.commit_s += time.perf_counter() - start
        self.commits += 1

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        self.reads += 1
        return super()._read(sql, args)


@dataclass
class Bench:
    desk: Desk
    engine: Engine
    sync: CountingStore
    recorder: Recorder
    nursery: trio.Nursery
    progress: Progress


@asynccontextmanager
async def running_engine(path: Path, config: Config, channels: dict[str, Channel]) -> AsyncIterator[Bench]:
    sync = CountingStore(path)
    store = AsyncStore(sync)
    try:
        async with trio.open_nursery() as nursery:
            recorder = Recorder(store, Bus())
            engine = Engine(recorder=recorder, catalogue=config.catalogue, directory=config.directory,
                            notifier=Notifier(channels, config.texts), tz="Asia/Almaty")
            await nursery.start(engine.run)
            progress = Progress()
            recorder.listeners.append(progress.on_change)
            yield Bench(Desk(store, recorder), engine, sync, recorder, nursery, progress)
            nursery.cancel_scope.cancel()
    finally:
        sync.close()


async def open_incidents(desk: Desk, n: int, sms_every: int) -> list[Incident]:
    """N incidents opened at once through the desk; every ``sms_every``-th notifies over SMS."""
    opened: list[Incident | None] = [None] * n

    async def one(i: int) -> None:
        category = "bench_sms" if sms_every and i % sms_every == 0 else "bench_console"
        opened[i] = await desk.open(service="102", source="api", caller=no_caller(), kind="reported",
                                    actor="bench", category=category, priority=5)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return [x for x in opened if x is not None]


async def start_runs(engine: Engine, incidents: list[Incident]) -> None:
    """Start every incident's run at once (each start is a durable write)."""
    async def one(incident: Incident) -> None:
        scenario = engine.catalogue.scenario_for(incident.category).name
        await engine.start(incident, KIND, scenario, incident.category, reason="bench")

    async with trio.open_nursery() as nursery:
        for incident in incidents:
            nursery.start_soon(one, incident)


class Progress:
    """Recorder listener counting timeline events by kind, to wait for N of a kind without polling."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._waiters: list[tuple[str, int, trio.Event]] = []

    def on_change(self, incident: Incident, last: TimelineEvent) -> None:
        self.counts[last.kind] += 1
        for kind, n, event in self._waiters:
            if self.counts[kind] >= n:
                event.set()

    async def wait_for(self, kind: str, n: int, bound_s: float) -> bool:
        """True once ``n`` events of ``kind`` were written; False if ``bound_s`` passed first."""
        event = trio.Event()
        self._waiters.append((kind, n, event))
        if self.counts[kind] >= n:
            event.set()
        with trio.move_on_after(bound_s):
            await event.wait()
            return True
        return False


def all_done(engine: Engine) -> bool:
    """Finished runs leave ``engine.runs`` (they live on in the store)."""
    return all(run.phase == "done" for run in engine.runs.values())


class Watcher:
    """Recorder listener: keeps the exact deadline of every wait that ran out (for the baseline) and
    acknowledges the chosen incidents at a random moment of their first wait, as a responder would."""

    def __init__(self, bench: Bench, chosen: set[str], rng: random.Random, window_s: float) -> None:
        self.bench, self.chosen, self.rng, self.window_s = bench, chosen, rng, window_s
        self.results: Counter[str] = Counter()
        self.waiting: dict[str, float] = {}  # incident id -> deadline of its current wait
        self.fired: dict[str, list[float]] = {}

    def on_change(self, incident: Incident, last: TimelineEvent) -> None:
        run = self.bench.engine.runs.get(f"{incident.id}/{KIND}")
        if last.kind == "awaiting_ack" and run is not None:
            self.waiting[incident.id] = run.deadline_wall
        elif last.kind == "ack_timeout" and incident.id in self.waiting:
            self.fired.setdefault(incident.id, []).append(self.waiting.pop(incident.id))
        if last.kind == "awaiting_ack" and last.data.get("attempt") == 1 and incident.id in self.chosen:
            self.chosen.discard(incident.id)
            self.bench.nursery.start_soon(self._later, incident.id, self.rng.uniform(0.2, self.window_s))

    async def _later(self, incident_id: str, delay: float) -> None:
        await trio.sleep(delay)
        run = self.bench.engine.runs.get(f"{incident_id}/{KIND}")
        if run is None:
            self.results["run already gone"] += 1
            return
        target = run.targets[0]
        self.results[await self.bench.engine.acknowledge(target.token, by=target.person, via="console")] += 1


@dataclass
class EngineResult:
    n: int
    origin: float  # wall time the runs were started
    finished: bool
    lateness: list[float]
    wall_s: float
    rss_before_kb: int
    rss_peak_kb: int
    commits: int
    commit_s: float
    reads: int
    acks: Counter[str]
    fired: dict[str, list[float]]  # incident id -> the exact deadlines that ran out, in order
    timelines: dict[str, list[TimelineEvent]] = field(default_factory=dict)
    smsc: dict[str, object] = field(default_factory=dict)


async def engine_pass(args: argparse.Namespace, work: Path, config: Config,
                      channels: dict[str, Channel]) -> EngineResult:
    rng = random.Random(args.seed)
    sms_every = round(1 / args.sms_share) if args.sms_share > 0 else 0
    bound = args.timeout * (args.repeat + args.tier_repeat) + 60 + args.incidents / 20
    rss_before = peak_rss_kb()
    async with running_engine(work / "incidents.sqlite3", config, channels) as bench:
        incidents = await open_incidents(bench.desk, args.incidents, sms_every)
        chosen = {i.id for i in incidents if rng.random() < args.ack_share}
        watcher = Watcher(bench, chosen, rng, args.timeout - 1.0)
        bench.recorder.listeners.append(watcher.on_change)
        # What-if: the incidents kept live in the recorder, so steps need no store reads.
        held = [await bench.recorder.acquire(i.id) for i in incidents] if args.hold_incidents else []
        commits0, commit_s0, reads0 = bench.sync.commits, bench.sync.commit_s, bench.sync.reads
        origin = time.time()
        await start_runs(bench.engine, incidents)
        finished = await bench.progress.wait_for("scenario_finished", len(incidents), bound)
        finished = finished and all_done(bench.engine)
        wall = time.time() - origin
        result = EngineResult(len(incidents), origin, finished, list(bench.engine.lateness_s), wall, rss_before,
                              peak_rss_kb(), bench.sync.commits - commits0, bench.sync.commit_s - commit_s0,
                              bench.sync.reads - reads0, watcher.results, watcher.fired)
        for h in held:
            bench.recorder.release(h)
        result.timelines = {i.id: bench.sync.get(i.id).timeline for i in incidents}
    return result


# --- figures from the stored timelines -------------------------------------------------------------

def turnarounds(timeline: list[TimelineEvent]) -> list[float]:
    """Deadline -> the next attempt (or step) sent, or the run finished: what a responder waits for."""
    out, deadline, timed_out = [], 0.0, False
    for e in timeline:
        if e.kind == "ack_timeout":
            timed_out = True
        elif timed_out and e.kind in ("awaiting_ack", "scenario_finished"):
            out.append(e.wall - deadline)
            timed_out = False
        if e.kind == "awaiting_ack":
            deadline = float(e.data["deadline"])  # type: ignore[arg-type]
    return out


def events_in(timelines: dict[str, list[TimelineEvent]], since: float) -> list[float]:
    return [e.wall for timeline in timelines.values() for e in timeline if e.wall >= since]


def busiest_second(walls: list[float]) -> int:
    return max(Counter(int(w) for w in walls).values(), default=0)


# --- the baseline: bare Trio timers on the same deadlines ------------------------------------------

async def baseline(chains: list[list[float]], origin: float) -> list[float]:
    """One task per incident sleeping to the same deadlines, shifted to now; returns lateness (s)."""
    late: list[float] = []
    shift = time.time() + 0.5 - origin

    async def sleeper(deadlines: list[float]) -> None:
        for wall in deadlines:
            await trio.sleep_until(trio.current_time() + (wall - time.time()))
            late.append(time.time() - wall)

    async with trio.open_nursery() as nursery:
        for chain in chains:
            nursery.start_soon(sleeper, [d + shift for d in chain])
    return late


# --- Python heap per incident (tracemalloc), a separate pass ---------------------------------------

async def heap_pass(args: argparse.Namespace, work: Path, config: Config,
                    channels: dict[str, Channel]) -> tuple[float, float]:
    """(engine heap bytes per incident with every run waiting, bare sleeping task heap bytes)."""
    sms_every = round(1 / args.sms_share) if args.sms_share > 0 else 0
    async with running_engine(work / "heap.sqlite3", config, channels) as bench:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        incidents = await open_incidents(bench.desk, args.incidents, sms_every)
        await start_runs(bench.engine, incidents)
        await bench.progress.wait_for("awaiting_ack", len(incidents), args.timeout * 4)
        await trio.sleep(0.5)  # in-flight writes and SMPP receipts settle; every run is still waiting
        gc.collect()
        engine_bytes = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(incidents))
        tracemalloc.stop()
    gc.collect()
    tracemalloc.start()
    async with trio.open_nursery() as nursery:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(args.incidents):
            nursery.start_soon(trio.sleep_until, trio.current_time() + 3600)
        await trio.sleep(0.1)
        task_bytes = (tracemalloc.get_traced_memory()[0] - before) / args.incidents
        nursery.cancel_scope.cancel()
    tracemalloc.stop()
    return engine_bytes, task_bytes


# --- report ----------------------------------------------------------------------------------------

def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ratio(a: float, b: float) -> str:
    return f"{a / b:8.1f}x" if b > 0 else "      n/a"


def report(args: argparse.Namespace, r: EngineResult, base: list[float], heap: tuple[float, float]) -> None:
    late_ms = [x * 1000 for x in r.lateness]
    base_ms = [x * 1000 for x in base]
    turn_ms = [x * 1000 for t in r.timelines.values() for x in turnarounds(t)]
    outcomes = Counter(str(e.data.get("outcome")) for t in r.timelines.values() for e in t
                       if e.kind == "scenario_finished")
    walls = events_in(r.timelines, r.origin)
    print(f"runs: {r.n:,} incidents, all finished: {'yes' if r.finished else 'NO'} in {r.wall_s:.1f} s wall; "
          f"outcomes {dict(outcomes)}; acknowledgements {dict(r.acks)}")
    print(f"SMSC stand-in: {r.smsc.get('messages', 0)} messages ({r.smsc.get('submitted', 0)} submit_sm) "
          "accepted over SMPP")
    print(f"timers fired: engine {len(late_ms):,}, baseline {len(base_ms):,}")
    print(f"{'figure':<34}{'engine':>12}{'baseline':>12}{'ratio':>10}")
    for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        e, b = (max(late_ms, default=math.nan), max(base_ms, default=math.nan)) if q == 1.0 else \
            (pct(late_ms, q), pct(base_ms, q))
        print(f"{'deadline lateness ' + name + ' (ms)':<34}{e:12.2f}{b:12.2f}{ratio(e, b):>10}")
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        print(f"{'deadline -> next sent ' + name + ' (ms)':<34}{pct(turn_ms, q):12.1f}{'':>12}{'':>10}")
    print(f"{'deadline -> next sent max (ms)':<34}{max(turn_ms, default=math.nan):12.1f}")
    engine_heap, task_heap = heap
    rss_per = (r.rss_peak_kb - r.rss_before_kb) * 1024 / r.n
    print(f"{'Python heap per incident (KiB)':<34}{engine_heap / 1024:12.2f}{task_heap / 1024:12.2f}"
          f"{ratio(engine_heap, task_heap):>10}")
    print(f"{'peak RSS growth per incident (KiB)':<34}{rss_per / 1024:12.2f}")
    print(f"{'peak RSS of the process (MB)':<34}{r.rss_peak_kb / 1024:12.1f}")
    active = max(walls, default=r.origin) - r.origin
    print(f"{'timeline events written':<34}{len(walls):12,}")
    print(f"{'store events/s (mean, busiest s)':<34}{len(walls) / max(active, 1e-9):12,.0f}{busiest_second(walls):12,}")
    print(f"{'store transactions (mean ms each)':<34}{r.commits:12,}{r.commit_s / max(1, r.commits) * 1000:12.2f}")
    print(f"{'store reads per timeline event':<34}{r.reads / max(1, len(walls)):12.2f}")


# --- main ------------------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> None:
    print(f"== {args.incidents:,} incidents: notify (ack any, {args.timeout:g} s x {args.repeat}), escalate "
          f"({args.timeout:g} s x {args.tier_repeat}) unless acknowledged, close; {args.sms_share:.0%} over SMS "
          f"(SMPP to sim.smsc), {args.ack_share:.0%} acknowledged in the first wait; store synchronous=FULL"
          f"{'; incidents held live (what-if)' if args.hold_incidents else ''}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="ecgw-bench-esc-") as tmp:
        work = Path(tmp)
        config = write_config(work / "config", args.timeout, args.repeat, args.tier_repeat)
        async with smsc_process(work) as (port, stats_file):
            smpp = SmppConfig(system_id=SYSTEM_ID, password=PASSWORD, port=port)
            async with open_smpp(smpp) as sms:
                channels: dict[str, Channel] = {"sms": sms} if args.sms_share > 0 else {}
                result = await engine_pass(args, work, config, channels)
                chains = [result.fired.get(incident_id, []) for incident_id in result.timelines]
                base = await baseline(chains, result.origin)
                heap = await heap_pass(args, work, config, channels)
        if stats_file.exists():
            result.smsc = json.loads(stats_file.read_text())
        report(args, result, base, heap)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--incidents", type=int, default=None, help="concurrent incidents (default 1,000)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 incidents, notify x1 and escalate x1 (about 25 s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="acknowledgement timeout per attempt, s (>= 5)")
    parser.add_argument("--repeat", type=int, default=None, help="notify attempts (default 3)")
    parser.add_argument("--tier-repeat", type=int, default=None, help="escalation attempts (default 2)")
    parser.add_argument("--sms-share", type=float, default=0.1, help="share of incidents notified over SMS")
    parser.add_argument("--ack-share", type=float, default=0.3, help="share acknowledged during the first wait")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hold-incidents", action="store_true",
                        help="what-if: keep every incident live in the recorder during the run (no store reads)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.incidents = args.incidents or (200 if quick else 1000)
    args.repeat = args.repeat or (1 if quick else 3)
    args.tier_repeat = args.tier_repeat or (1 if quick else 2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    trio.run(run, args)


if __name__ == "__main__":
    main()
