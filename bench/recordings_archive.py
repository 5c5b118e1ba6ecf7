"""Recordings archive benchmark: what a 90-day archive's sweep and daily check cost the live intake.

A real SQLite incident store (WAL, synchronous=FULL, the gateway's ``AsyncStore``) holding --recordings
indexed recordings (wav49 files of --seconds on disk, --expired of them past 90 days, their incidents in the store),
and a writer creating an incident every 20 ms (50 calls/s) through the incident ``Recorder``, as the intake
does. Printed, per phase: the writer's create latency (p50/p99/max, durable), how long the phase took, and
the longest single read it made through the store's thread, queueing included (every incident write waits
behind such a read):
  idle                     the writer alone (the baseline of every ratio);
  first sweep              ``Recordings.sweep`` after a start: every file looked at, the index asked in chunks;
  later sweep              the next sweep: files changed since the first only;
  daily purge and check    ``Recordings.purge``: the archive in pages, expired ones purged, the rest re-hashed
                           at ``[recordings] check_mb_s``;
  one read of every file   what the sweep read before (``SELECT file FROM recordings``, all rows at once);
  one read of the archive  what the purge read before (every live recording at once).

Run: ``python bench/recordings_archive.py [--recordings 300000] [--quick]`` (needs ~4 KB of disk per recording).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.incident import recording_index as rx
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, SqliteStore, Statement, event
from gateway.intake.recordings import Recordings
from gateway.settings import RecordingsConfig
from tests.core.test_recordings import wav49

CALLER = Caller(raw_number="+77011234567", number="+77011234567", display_name="", withheld=False)
WRITE_EVERY_S = 0.02


def incident(incident_id: str, wall: float) -> Incident:
    inc = Incident(id=incident_id, service="102", created_wall=wall, caller=CALLER)
    inc.timeline.append(event("call_arrived"))
    return inc


def build(directory: Path, sync: SqliteStore, count: int, expired: int, seconds: float) -> None:
    """``count`` recordings indexed with their files and incidents; the first ``expired`` are 100 days old."""
    data, now = wav49(seconds), time.time()
    digest = hashlib.sha256(data).hexdigest()
    rows: list[Statement] = []
    for n in range(count):
        rid = f"20260801-{n // 10000:06d}-b.{n:08d}"
        wall = now - (100 if n < expired else 30) * rx.DAY_S + n * 1e-3
        path = directory / f"{rid}.WAV"
        path.write_bytes(data)
        os.utime(path, (wall + seconds, wall + seconds))
        rows += sync.create_statements(incident(rid, wall))
        rows.append(rx.insert(rx.Recording(id=rid, incident_id=rid, file=path.name, codec="gsm", start_wall=wall,
                                           duration_s=seconds, size=len(data), sha256=digest, indexed_wall=wall)))
        if len(rows) >= 6000:
            sync.write(rows)
            rows = []
    sync.write(rows)


class Timed:
    """The store's reads, timed (the longest one is how long an incident write could wait behind it)."""

    def __init__(self, store: AsyncStore) -> None:
        self.longest = 0.0
        self._read = store.read
        store.read = self.read  # type: ignore[method-assign]

    async def read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        began = time.perf_counter()
        try:
            return await self._read(sql, args)
        finally:
            self.longest = max(self.longest, time.perf_counter() - began)


async def phase(name: str, recorder: Recorder, timed: Timed, work: Callable[[], Awaitable[object]],
                base: list[float] | None) -> list[float]:
    """Run ``work`` while the writer creates an incident every 20 ms; print and return the create latencies."""
    latencies: list[float] = []
    timed.longest = 0.0

    async def writer(cancel: trio.CancelScope) -> None:
        n = 0
        while not cancel.cancel_called:
            began = trio.current_time()
            n += 1
            inc = incident(f"20261206-{int(began) % 1000000:06d}-w.{name[:4].strip()}{n:07d}", time.time())
            await recorder.create(Held(inc))
            latencies.append(trio.current_time() - began)
            await trio.sleep_until(began + WRITE_EVERY_S)

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, nursery.cancel_scope)
        await trio.sleep(0.5)
        await work()
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    took = time.perf_counter() - began - 1.0
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    ratio = f", p99 {p99 / base[1]:.1f}x idle" if base else ""
    print(f"  {name:<24} {took:7.2f} s  longest store read {timed.longest * 1000:6.1f} ms  creates n={len(ms)}"
          f" p50 {statistics.median(ms):.1f} ms p99 {p99:.1f} ms max {ms[-1]:.1f} ms{ratio}", flush=True)
    return [statistics.median(ms), p99, ms[-1]]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="recbench-") as tmp:
        directory = Path(tmp) / "recordings"
        directory.mkdir()
        sync = SqliteStore(Path(tmp) / "store.sqlite3")
        sync.apply_schema(rx.SCHEMA)
        began = time.perf_counter()
        build(directory, sync, args.recordings, args.expired, args.seconds)
        print(f"archive: {args.recordings} recordings of {args.seconds:g} s ({args.expired} expired) built in "
              f"{time.perf_counter() - began:.0f} s; check at {args.check_mb_s} MB/s", flush=True)
        store = AsyncStore(sync, commit_window_s=0.02)
        recorder = Recorder(store, Bus())
        timed = Timed(store)
        cfg = RecordingsConfig(check_mb_s=args.check_mb_s)
        recordings = Recordings(cfg, directory, rx.RecordingIndex(store), recorder, lambda *a: None)

        async def nothing() -> None:
            await trio.sleep(args.idle_seconds)

        async def sweep() -> None:
            await recordings.sweep(min_age_s=0)

        async def purge() -> None:
            report = await recordings.purge()
            print(f"  (purged {len(report.purged)}, checked {report.checked}, missing {len(report.missing)},"
                  f" altered {len(report.altered)})")

        async def every_file() -> None:
            await store.read("SELECT file FROM recordings")

        async def archive() -> None:
            await store.read(f"SELECT {rx._COLUMNS} FROM recordings WHERE purged_wall IS NULL ORDER BY start_wall")

        base = await phase("idle", recorder, timed, nothing, None)
        await phase("first sweep", recorder, timed, sweep, base)
        await phase("later sweep", recorder, timed, sweep, base)
        await phase("daily purge and check", recorder, timed, purge, base)
        await phase("one read of every file", recorder, timed, every_file, base)
        await phase("one read of the archive", recorder, timed, archive, base)


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recordings", type=int, default=300_000)
    p.add_argument("--expired", type=int, default=3_000)
    p.add_argument("--seconds", type=float, default=1.0, help="each recording's length (98 kB per minute)")
    p.add_argument("--check-mb-s", type=float, default=50.0)
    p.add_argument("--idle-seconds", type=float, default=3.0, help="the baseline: the writer alone this long")
    p.add_argument("--quick", action="store_true", help="a short smoke run of the benchmark itself")
    args = p.parse_args()
    if args.quick:
        args.recordings, args.expired = 2_000, 100
    return args


if __name__ == "__main__":
    trio.run(main, cli())
