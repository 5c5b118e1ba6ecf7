"""Audience count benchmark: the composer asks ``POST /warnings/audience`` each time an officer changes the
area or the channels, so its one query must stay interactive on a large recipient list.

N recipients (default 100,000) spread over the shipped zones (one or two home zones each, a mix of channel
preferences) in a fresh warnings store; then ``Outbox.count_audience`` for one zone, three zones and every
zone, each timed over several runs (median and worst). Target: well inside the composer's 300 ms pause at
100,000 for every zone (the count runs on its own connection, so a fan-out never waits for it).

Run: ``python bench/audience.py [--recipients N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.settings import project_path  # noqa: E402
from gateway.warning import zones as zone_file  # noqa: E402
from gateway.warning.outbox import Outbox  # noqa: E402
from gateway.warning.recipients import Kind, Recipient  # noqa: E402

PREFERENCES: tuple[list[Kind], ...] = (["sms"], ["sms", "email"], ["telegram", "sms"], ["email"], ["voice", "sms"])


def fill(outbox: Outbox, count: int, zones: list[str]) -> None:
    batch: list[Recipient] = []
    for i in range(count):
        home = [zones[i % len(zones)]] + ([zones[(i * 7 + 3) % len(zones)]] if i % 3 == 0 else [])
        prefer = PREFERENCES[i % 5]
        batch.append(Recipient(ref=f"r{i}", phone=f"+7701{i:07d}", language="ru", zones=list(dict.fromkeys(home)),
                               email=f"r{i}@example.kz" if "email" in prefer else "",
                               telegram=str(100000 + i) if "telegram" in prefer else "", channels=prefer))
        if len(batch) == 10_000:
            outbox.put_recipients(batch)
            batch = []
    if batch:
        outbox.put_recipients(batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    zones = zone_file.load(project_path("config/zones.toml")).names()
    kinds = ["sms", "email", "telegram", "voice"]
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "warnings.sqlite3")
        started = time.perf_counter()
        fill(outbox, args.recipients, zones)
        print(f"{args.recipients:,} recipients stored in {time.perf_counter() - started:.1f} s")
        for chosen in (zones[:1], zones[:3], zones):
            times, result = [], None
            for _ in range(args.runs):
                t0 = time.perf_counter()
                result = outbox.count_audience(chosen, kinds)
                times.append((time.perf_counter() - t0) * 1000)
            print(f"{len(chosen)} zone(s): median {statistics.median(times):.1f} ms, worst {max(times):.1f} ms, "
                  f"answer {result}")
        outbox.close()


if __name__ == "__main__":
    main()
