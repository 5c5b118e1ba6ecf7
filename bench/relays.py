"""Relay benchmark: 32 relays on one 19,200-baud RS-485 line switched and confirmed by read-back.

Target (BRIEF.md): within 1.5 x the wire-time limit. The limit is computed from the frames the
driver actually exchanged: every request and answer byte at 11 bits per character (8E1) over the
baud rate, plus the mandated 3.5-character silence after every request and every answer.

A socat pty pair passes bytes as fast as the kernel can, so the relay-board emulator paces its
answers as a real line would: it answers when the request's bytes, the 3.5-character silence and
the answer's bytes would have taken their wire time. The driver keeps the silence before each
request itself. The measured time therefore includes the real line's time plus everything our
software adds (Python, Trio, the pty, scheduling).

Two shapes, each timed as one ``deliver`` per round (switch on, then off, alternately):
  boards:  4 boards x 8 coils -> per board one FC15 write of 8 coils and one FC01 read-back;
  singles: the same 32 relays as 32 one-coil targets -> 32 x (FC05 write + FC01 read-back).

Run: ``python bench/relays.py [--rounds 20] [--in-process]`` (the emulator runs as its own
process by default, as a board would be another machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.base import Message
from channels.sirens import SirenChannel, SirenConfig, SirenTarget, open_sirens
from gateway.protocols import modbus_rtu as rtu
from gateway.settings.channels import SirenLine
from sim.relayboard import relay_line

BAUD = 19200
UNITS = (1, 2, 3, 4)
COILS = 8
TARGET_RATIO = 1.5


def shapes() -> dict[str, list[SirenTarget]]:
    return {
        "boards": [SirenTarget(line="rs485", unit=u, coils=list(range(COILS))) for u in UNITS],
        "singles": [SirenTarget(line="rs485", unit=u, coils=[c]) for u in UNITS for c in range(COILS)],
    }


@asynccontextmanager
async def emulator(in_process: bool) -> AsyncIterator[str]:
    """The driver's end of a line with 4 paced 8-relay boards on the other."""
    if in_process:
        async with relay_line(units=UNITS, coils=COILS, baudrate=BAUD) as line:
            yield line.port
        return
    argv = [sys.executable, "-m", "sim.relayboard", "--units", ",".join(map(str, UNITS)),
            "--coils", str(COILS), "--baudrate", str(BAUD)]
    process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               cwd=Path(__file__).resolve().parent.parent)
    try:
        with trio.fail_after(10):
            ready = json.loads(await _line(process.stdout))
        yield ready["port"]
    finally:
        process.terminate()
        await process.wait()


async def _line(stream: trio.abc.ReceiveStream | None) -> bytes:
    assert stream is not None
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            raise RuntimeError(f"emulator exited before it was ready: {data!r}")
        data += chunk
    return data


async def rounds(channel: SirenChannel, zone: str, count: int) -> list[tuple[float, float]]:
    """(measured s, wire limit s) for each round; every round must be confirmed by read-back."""
    stats = channel.statistics()["rs485"]
    out = []
    for i in range(count):
        pattern = "steady" if i % 2 == 0 else "off"
        message = Message(idempotency_key=f"{zone}-{i}", alert_id="bench", address=zone, language="ru",
                          body="", options={"pattern": pattern, "duration_s": "3600"})
        wire_before, started = stats.wire_time_s, trio.current_time()
        [receipt] = await channel.deliver([message])
        measured = trio.current_time() - started
        if receipt.state != "delivered":
            raise RuntimeError(f"{zone} round {i}: {receipt.error}")
        out.append((measured, stats.wire_time_s - wire_before))
    return out


def report(zone: str, results: list[tuple[float, float]], frames: int) -> dict[str, object]:
    measured = [m for m, _ in results]
    wire = results[0][1]
    median = statistics.median(measured)
    summary = {
        "shape": zone, "rounds": len(results), "transactions_per_round": frames,
        "wire_limit_ms": round(wire * 1000, 2), "median_ms": round(median * 1000, 2),
        "worst_ms": round(max(measured) * 1000, 2), "median_ratio": round(median / wire, 3),
        "worst_ratio": round(max(measured) / wire, 3),
    }
    verdict = "meets" if median / wire <= TARGET_RATIO else "MISSES"
    print(f"  {zone:<8} {frames:>3} transactions/round: wire limit {wire * 1000:7.2f} ms, "
          f"measured median {median * 1000:7.2f} ms (worst {max(measured) * 1000:7.2f} ms), "
          f"ratio {median / wire:.3f} (worst {max(measured) / wire:.3f}) -> {verdict} <= {TARGET_RATIO}")
    return summary


async def main(args: argparse.Namespace) -> None:
    bits = rtu.char_bits("E", 1)
    print(f"32 relays on one {BAUD}-baud line, 8E1 = {bits} bits/character, "
          f"3.5-character silence = {rtu.silence_time(BAUD, bits) * 1000:.3f} ms")
    print("The socat pty does not throttle to the baud rate: the emulator paces every answer at "
          f"{BAUD} baud (request + answer wire time + 3.5-character silence) and the driver keeps the "
          "silence before each request, so the measured time includes the real line's time.")
    print(f"Emulator: {'in this process' if args.in_process else 'a separate process (python -m sim.relayboard)'}")
    summaries = []
    async with emulator(args.in_process) as port:
        cfg = SirenConfig(lines=[SirenLine(name="rs485", port=port, baudrate=BAUD, parity="E")],
                          zones=shapes(), poll_interval_s=3600)
        async with open_sirens(cfg) as channel:
            await channel.poll()  # warm up: every board answered once before timing
            await trio.sleep(0.2)  # and the driver's own first poll (started at open) is over
            stats = channel.statistics()["rs485"]
            for zone, per_round in (("boards", 2 * len(UNITS)), ("singles", 2 * len(UNITS) * COILS)):
                requests = stats.requests
                results = await rounds(channel, zone, args.rounds)
                assert stats.requests - requests == per_round * args.rounds, "retries or extra frames"
                summaries.append(report(zone, results, per_round))
            if stats.timeouts or stats.bad_frames or stats.retries:
                print(f"  note: {stats.timeouts} timeouts, {stats.bad_frames} bad frames, {stats.retries} retries")
    print(json.dumps({"baud": BAUD, "bits_per_char": bits, "target_ratio": TARGET_RATIO, "results": summaries}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--in-process", action="store_true", help="run the emulator inside this Trio run")
    trio.run(main, parser.parse_args())
