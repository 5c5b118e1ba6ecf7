"""Fallback-call reconciliation benchmark: how long the gateway takes to read Asterisk's CEL log and register
the calls the fallback dialplan served while it was down.

A CEL log as Asterisk 22's cel_custom writes it (``dialplans/cel_custom.conf``; rows as in
``tests/data/cel/asterisk22-fallback.csv``) with ``--served`` calls the gateway served (unmarked: read
and forgotten) and ``--fallback`` calls the fallback dialplan answered (marked: each becomes an
incident), interleaved; then ``FallbackCalls.reconcile`` on a fresh store on disk with full fsync
(as ``gateway run`` has it), three ways: the first read (everything registered), a second read
(nothing new: resumes at its cursor), and a read of the whole log again with the cursor gone
(every call found known, nothing written).

Run: ``python bench/fallback.py [--served 100000] [--fallback 1000]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.incident.bus import Bus
from gateway.incident.recorder import Recorder
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.fallback import FallbackCalls
from gateway.metrics import Metrics
from gateway.protocols.cel import LAYOUT
from gateway.settings import parse

CFG = parse({"services": [{"name": "112", "dialled": ["112"]}],
             "dispatch": {"positions": [{"name": "pos1", "contact": "sip:pos1@127.0.0.1:5070"}]}})


def row(out: csv.Writer, kind: str, wall: float, uid: str, linked: str, channel: str, *, user: str = "",
        extra: str = "", number: str = "") -> None:
    out.writerow([LAYOUT, kind, user, f"{wall:.6f}", uid, linked, channel, "ecgw-emergency", "s", "", extra,
                  number, "Caller"])


def call(out: csv.Writer, n: int, t: float, marked: bool) -> None:
    """One call: the caller, two positions rung, one answers, the caller hangs up (9 rows; 7 unmarked)."""
    uid, caller, leg = f"{int(t)}.{n}", f"PJSIP/operator-trunk-{n:08x}", f"PJSIP/ecgw-pos-pos1-{n:08x}"
    number = f"+7701{n % 10_000_000:07d}"
    row(out, "CHAN_START", t, uid, uid, caller, number=number)
    if marked:
        named = time.strftime("%Y%m%d-%H%M%S", time.gmtime(int(t)))
        row(out, "USER_DEFINED", t + 0.005, uid, uid, caller, user="ecgw_fallback", number=number,
            extra=json.dumps({"extra": f"112 {named}-{uid} allowed_not_screened {n}@127.0.0.1"}))
        row(out, "CHAN_START", t + 0.006, f"{uid}1", uid, "PJSIP/ecgw-pos-pos2-00000000")
    row(out, "CHAN_START", t + 0.006, f"{uid}2", uid, leg)
    row(out, "ANSWER", t + 2.0, f"{uid}2", uid, leg)
    row(out, "ANSWER", t + 2.001, uid, uid, caller, number=number)
    row(out, "HANGUP", t + 30.0, uid, uid, caller, number=number,
        extra=json.dumps({"hangupcause": 16, "hangupsource": caller, "dialstatus": "ANSWER"}))
    row(out, "HANGUP", t + 30.001, f"{uid}2", uid, leg)
    row(out, "LINKEDID_END", t + 30.001, f"{uid}2", uid, leg)


def cel_log(served: int, fallback: int, start: float) -> bytes:
    text = io.StringIO()
    out = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    every = max(1, (served + fallback) // max(1, fallback))
    for n in range(served + fallback):
        call(out, n, start + n * 0.01, marked=n % every == 0 and n // every < fallback)
    return text.getvalue().encode()


async def run(served: int, fallback: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = cel_log(served, fallback, time.time() - 3600)
        path = Path(tmp) / "ecgw-cel.csv"
        path.write_bytes(data)
        store = AsyncStore(SqliteStore(Path(tmp) / "gateway.sqlite3"))
        calls = FallbackCalls(CFG, path, store, Recorder(store, Bus()), Metrics())
        print(f"CEL log: {len(data) / 1e6:.1f} MB, {served:,} served + {fallback:,} fallback calls")
        for what in ("first read", "second read (cursor)", "whole log again (no cursor)"):
            if what.startswith("whole"):
                await store.write([("DELETE FROM cel_cursor", ())])
                calls = FallbackCalls(CFG, path, store, Recorder(store, Bus()), Metrics())
            began, cpu = time.perf_counter(), time.process_time()
            report = await calls.reconcile()
            took, cpu = time.perf_counter() - began, time.process_time() - cpu
            rate = report.rows / took if report.rows else 0.0
            print(f"  {what:30s} {took:7.2f} s (CPU {cpu:6.2f} s)  rows {report.rows:>9,} ({rate:,.0f}/s)  "
                  f"registered {report.registered:>6,}  known {report.known:>6,}  malformed {report.malformed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--served", type=int, default=100_000)
    parser.add_argument("--fallback", type=int, default=1_000)
    args = parser.parse_args()
    trio.run(run, args.served, args.fallback)


if __name__ == "__main__":
    main()
