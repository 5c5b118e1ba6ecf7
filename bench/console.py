"""Console benchmark: what a dispatcher's browser and the API cost with a full store and a busy centre.

A real ``gateway run`` (the shipped config, its own store, no Asterisk) with ``--stored`` incidents already in
its store (default 100,000, written before it starts). Then, in one run:

- server time: ``GET /incidents`` (the list the console loads) and ``GET /incidents/{id}`` (a card, audited)
  for random stored incidents, each ``--reads`` times, timed at the client on loopback; baseline ``GET
  /health`` (open on loopback, no store read per incident) in the same run;
- incident stored -> visible: incidents created through ``POST /incidents`` at ``--rate`` per second for
  ``--seconds`` (a busy hour's 50/s, as walk-in reports: no Asterisk here), while one dispatcher's console
  in Debian's Chromium and ``--clients`` other SSE clients (``GET /events``) are connected. Latency is the
  client's wall clock at arrival minus the incident's ``created_wall`` (the same machine's clock): in the
  browser, when its row appears in the queue; in the SSE clients, when the event arrives. Baseline: the same
  rate with a single SSE client and no browser, in the same run.

Targets (issue 12): browser p99 <= 250 ms; list and card p99 server time <= 50 ms.
Run: ``python bench/console.py [--stored N] [--clients N] [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from gateway.incident.records import Caller, Incident, Location
from gateway.incident.store import SqliteStore, event
from sim.lab import REPO, GatewayProcess, shipped_config

PASSWORD = "bench pass phrase"


def fill_store(path: Path, n: int) -> list[str]:
    """``n`` closed incidents over the last 30 days, written before the gateway starts; returns their ids."""
    store, now, ids = SqliteStore(path, synchronous="OFF"), time.time(), []
    rng = random.Random(7)
    for start in range(0, n, 5000):
        batch = []
        for i in range(start, min(n, start + 5000)):
            created = now - 30 * 86400 + i * (30 * 86400 / n)
            incident = Incident(
                id=f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(created))}-bench.{i:08d}", service="112",
                created_wall=created, state="closed", status="closed", priority=rng.randint(1, 9),
                caller=Caller(raw_number=f"+7701{i:07d}", number=f"+7701{i:07d}", display_name="", withheld=False),
                locations=[Location(source="pidf-lo", shape="circle", lat=43.2 + rng.random() / 10,
                                    lon=76.9 + rng.random() / 10, radius_m=25.0)], best_location=0,
                timeline=[event("call_arrived", "caller"), event("answered", "pos1"), event("hung_up", "caller")])
            batch += store.create_statements(incident)
            ids.append(incident.id)
        store.write(batch)
    store.close()
    return ids


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    middle, top = statistics.median(ordered) * 1000, ordered[-1] * 1000
    return f"p50 {middle:.1f} ms, p99 {p99 * 1000:.1f} ms, max {top:.1f} ms (n={len(ordered)})"


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


async def timed(client: httpx.AsyncClient, paths: list[str]) -> list[float]:
    spent = []
    for path in paths:
        started = time.perf_counter()
        reply = await client.get(path)
        spent.append(time.perf_counter() - started)
        assert reply.status_code in (200, 503), (path, reply.status_code)
    return spent


async def server_times(client: httpx.AsyncClient, ids: list[str], reads: int) -> dict[str, list[float]]:
    rng = random.Random(11)
    return {"health (baseline)": await timed(client, ["/health"] * reads),
            "incident list (200)": await timed(client, ["/incidents?limit=200"] * reads),
            "incident card": await timed(client, [f"/incidents/{rng.choice(ids)}" for _ in range(reads)])}


async def sse_client(url: str, headers: dict[str, str], seen: dict[str, float],
                     *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """One ``GET /events`` stream; the first arrival of each incident id, by this machine's wall clock."""
    async with httpx.AsyncClient(timeout=None, headers=headers) as client, \
            client.stream("GET", url + "/events") as reply:
        task_status.started()
        rest = b""
        async for chunk in reply.aiter_raw():  # not line by line: 200 clients in one process must keep up
            now, data = time.time(), rest + chunk
            at = data.find(b'"id":"')
            while at >= 0 and (end := data.find(b'"', at + 6)) >= 0:
                seen.setdefault(data[at + 6:end].decode(), now)
                at = data.find(b'"id":"', end)
            rest = data[at:] if at >= 0 else b""


async def create(client: httpx.AsyncClient, rate: float, seconds: float) -> dict[str, float]:
    """Incidents through ``POST /incidents`` at ``rate`` per second; id -> the store's ``created_wall``."""
    made: dict[str, float] = {}

    async def one(n: int) -> None:
        reply = await client.post("/incidents", json={"service": "102", "note": f"bench {n}"})
        body = reply.json()
        made[body["id"]] = body["created_wall"]

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n in range(int(rate * seconds)):
            await trio.sleep_until(start + n / rate)
            nursery.start_soon(one, n)
    return made


async def browser(url: str, seconds: float, ready: trio.Event) -> dict[str, int]:
    command = [sys.executable, str(REPO / "bench" / "console_page.py"), url, "marat", PASSWORD, str(seconds)]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    lines: list[bytes] = []
    buffer = b""
    assert process.stdout is not None
    async for chunk in process.stdout:
        buffer += chunk
        *done, buffer = buffer.split(b"\n")
        lines += done
        if b"logged in" in done:
            ready.set()
    await process.wait()
    return json.loads(lines[-1]) if process.returncode == 0 else {}  # type: ignore[no-any-return]


async def fan_out(url: str, headers: dict[str, str], client: httpx.AsyncClient, *, clients: int, with_browser: bool,
                  rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """(SSE latencies of every client and incident, browser latencies) while incidents arrive at ``rate``."""
    seen: list[dict[str, float]] = [{} for _ in range(clients)]
    arrived: dict[str, int] = {}
    ready, done = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        for box in seen:
            await nursery.start(sse_client, url, headers, box)
        if with_browser:
            async def watch() -> None:
                arrived.update(await browser(url, seconds + 8, ready))
                done.set()
            nursery.start_soon(watch)
            with trio.fail_after(60):
                await ready.wait()
        made = await create(client, rate, seconds)
        await trio.sleep(3)  # the last ones reach everyone
        if with_browser:
            with trio.move_on_after(60):
                await done.wait()
        nursery.cancel_scope.cancel()
    sse = [box[i] - made[i] for box in seen for i in made if i in box]
    missing = sum(1 for box in seen for i in made if i not in box)
    assert missing == 0, f"{missing} SSE arrivals missing"
    return sse, [arrived[i] / 1000 - made[i] for i in made if i in arrived]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.workdir) as directory:
        work = Path(directory)
        started = time.time()
        ids = fill_store(work / "gateway.sqlite3", args.stored)
        print(f"store: {len(ids):,} incidents written in {time.time() - started:.1f} s")
        gateway = GatewayProcess(shipped_config(work), work / "gateway.log", need_ari=False)
        await gateway.start(timeout=180)
        try:
            print(f"gateway log: {work / 'gateway.log'}")
            subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(gateway.path), "users", "reset",
                            "marat", "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, cwd=REPO)
            headers = gateway.host_headers()
            async with httpx.AsyncClient(base_url=gateway.url, headers={**headers, "X-ECGW-User": "marat"}, timeout=60,
                                         limits=httpx.Limits(max_connections=200)) as client:
                await report(gateway.url, headers, client, ids, args)
        finally:
            await gateway.stop()


async def report(url: str, headers: dict[str, str], client: httpx.AsyncClient, ids: list[str],
                 args: argparse.Namespace) -> None:
    times = await server_times(client, ids, args.reads)
    base = p99(times["health (baseline)"])
    for name, values in times.items():
        print(f"{name:<22} {percentiles(values)}; p99 x{p99(values) / base:.1f} of /health")
    solo, _ = await fan_out(url, headers, client, clients=1, with_browser=False, rate=args.rate, seconds=args.seconds)
    sse, seen = await fan_out(url, headers, client, clients=args.clients, with_browser=True, rate=args.rate,
                              seconds=args.seconds)
    print(f"stored -> SSE, 1 client (baseline) {percentiles(solo)}")
    print(f"stored -> SSE, {args.clients} clients   {percentiles(sse)}; p99 x{p99(sse) / p99(solo):.1f} of baseline")
    print(f"stored -> row in Chromium    {percentiles(seen)}; p99 x{p99(seen) / p99(solo):.1f} of baseline")
    card, listing = p99(times["incident card"]) * 1000, p99(times["incident list (200)"]) * 1000
    print(f"targets: browser p99 <= 250 ms: {p99(seen) * 1000:.0f} ms; list/card p99 <= 50 ms: {listing:.1f} / "
          f"{card:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--workdir", default=None, help="where the store and the gateway's log go (default: /tmp)")
    trio.run(main, parser.parse_args())
