"""Relay-board emulator: Modbus RTU slaves on the far end of a serial line (a socat pty pair).

Several boards (units) share one line, as on an RS-485 bus: each answers FC01/05/15 for its own
unit like a real relay board (exception replies for bad addresses and values, silence for frames
with a bad CRC or for other units, broadcast writes to unit 0 obeyed without an answer) and
records every coil write with a wall-clock timestamp. A pty does not throttle to the baud rate,
so answers are paced: each is sent when the request's bytes, the 3.5-character silence and the
answer's bytes would have taken on a real line.

Fault knobs (``RelayBoards`` attributes, or stdin commands in the CLI): a unit that never
answers, a bad CRC on the next N answers, a stuck coil that ignores writes.

In-process: ``async with relay_line(units=(1, 2, 3), coils=8) as line:`` gives ``line.port`` for
the driver and ``line.boards`` for records and faults. As a process::

    python -m sim.relayboard [--port /dev/pts/N] --units 1,2,3 --coils 8 [--baudrate 19200]

prints one JSON line when ready (without ``--port`` it starts its own socat pair and prints the
driver's end as ``port``), then reads commands on stdin: ``silent U``, ``answer U``,
``bad-crc N``, ``stick U:C on|off``, ``unstick U:C``, ``records`` (prints them as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TextIO

import msgspec
import serial
import trio

from gateway.errors import ChannelError, ProtocolError
from gateway.protocols import modbus_rtu as rtu

PTY_LINE = re.compile(rb"PTY is (\S+)")
FRAME_GAP_S = 0.02  # a pty delivers a frame in one piece; allow scheduling jitter before calling it ended


class Switch(msgspec.Struct, frozen=True):
    """One coil write as a board received it; ``applied`` is False when a stuck coil ignored it."""

    t: float
    unit: int
    coil: int
    on: bool
    applied: bool = True


class Board:
    """One relay board: ``coils`` outputs, some of which may be stuck."""

    def __init__(self, unit: int, coils: int) -> None:
        self.unit = unit
        self.coils = [False] * coils
        self.stuck: dict[int, bool] = {}

    def serve(self, request: rtu.Request, record: Callable[[Switch], None], now: float) -> rtu.Response:
        match request:
            case rtu.ReadCoils(_, address, count):
                if address + count > len(self.coils):
                    return rtu.ExceptionReply(self.unit, rtu.READ_COILS, rtu.ILLEGAL_ADDRESS)
                return rtu.CoilsRead(self.unit, tuple(self.coils[address:address + count]))
            case rtu.WriteCoil(_, address, on):
                if address >= len(self.coils):
                    return rtu.ExceptionReply(self.unit, rtu.WRITE_COIL, rtu.ILLEGAL_ADDRESS)
                self._set(address, on, record, now)
                return rtu.CoilWritten(self.unit, address, on)
            case rtu.WriteCoils(_, address, values):
                if address + len(values) > len(self.coils):
                    return rtu.ExceptionReply(self.unit, rtu.WRITE_COILS, rtu.ILLEGAL_ADDRESS)
                for i, on in enumerate(values):
                    self._set(address + i, on, record, now)
                return rtu.CoilsWritten(self.unit, address, len(values))
        raise TypeError(f"not a Modbus request: {request!r}")

    def _set(self, coil: int, on: bool, record: Callable[[Switch], None], now: float) -> None:
        applied = coil not in self.stuck
        if applied:
            self.coils[coil] = on
        record(Switch(now, self.unit, coil, on, applied))


class RelayBoards:
    """The boards on one line, their records and fault knobs. ``handle`` is pure apart from them."""

    def __init__(self, units: Iterable[int], coils: int, *, clock: Callable[[], float] = time.time) -> None:
        self.boards = {unit: Board(unit, coils) for unit in units}
        self.switches: list[Switch] = []
        self.requests = 0  # intact frames addressed to one of our units
        self.answers = 0
        self.silent: set[int] = set()  # units that never answer
        self.bad_crc_next = 0  # damage the CRC of this many coming answers
        self.sink: Callable[[Switch], None] | None = None  # e.g. append to a JSON-lines file
        self._clock = clock

    def stick(self, unit: int, coil: int, on: bool) -> None:
        """Make ``coil`` hold ``on`` whatever is written to it."""
        board = self.boards[unit]
        board.stuck[coil] = on
        board.coils[coil] = on

    def unstick(self, unit: int, coil: int) -> None:
        self.boards[unit].stuck.pop(coil, None)

    def state(self, unit: int) -> list[bool]:
        return list(self.boards[unit].coils)

    def switches_of(self, unit: int) -> list[Switch]:
        return [s for s in self.switches if s.unit == unit]

    def handle(self, frame: bytes) -> bytes | None:
        """The answer to one request frame, or None where a real board stays silent."""
        try:
            request = rtu.decode_request(frame)
        except rtu.RequestRejected as exc:
            return self._answer(rtu.ExceptionReply(exc.unit, exc.function, exc.code))
        except ProtocolError:
            return None  # bad CRC or too short: the bus is noisy, nobody answers
        if request.unit == 0:
            self._broadcast(request)
            return None
        board = self.boards.get(request.unit)
        if board is None:
            return None
        self.requests += 1
        return self._answer(board.serve(request, self._record, self._clock()))

    def _broadcast(self, request: rtu.Request) -> None:
        if not isinstance(request, rtu.ReadCoils):
            for board in self.boards.values():
                board.serve(request, self._record, self._clock())

    def _answer(self, response: rtu.Response) -> bytes | None:
        if response.unit not in self.boards or response.unit in self.silent:
            return None
        frame = rtu.encode_response(response)
        self.answers += 1
        if self.bad_crc_next > 0:
            self.bad_crc_next -= 1
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame

    def _record(self, switch: Switch) -> None:
        self.switches.append(switch)
        if self.sink is not None:
            self.sink(switch)


# --- serving a serial port ----------------------------------------------------------------------

@dataclass
class LineTiming:
    baudrate: int = 19200
    parity: str = "E"
    stopbits: int = 1
    pace: bool = True  # answer no sooner than a real line would allow

    @property
    def bits(self) -> int:
        return rtu.char_bits(self.parity, self.stopbits)

    def answer_delay(self, request: bytes, answer: bytes) -> float:
        wire = rtu.wire_time(len(request) + len(answer), self.baudrate, self.bits)
        return wire + rtu.silence_time(self.baudrate, self.bits) if self.pace else 0.0


@dataclass
class _Port:
    fd: int
    buffer: bytearray = field(default_factory=bytearray)
    first_at: float = 0.0  # when the first byte of the frame in ``buffer`` arrived


async def serve(port: str, boards: RelayBoards, timing: LineTiming, *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests arriving on ``port`` until cancelled or the far end goes away."""
    try:
        handle = serial.Serial(port, timing.baudrate, parity=timing.parity, stopbits=timing.stopbits, timeout=0)
    except (serial.SerialException, ValueError) as exc:
        raise ChannelError(f"relay-board emulator: cannot open {port}: {exc}") from exc
    with handle:
        task_status.started()
        line = _Port(handle.fileno())
        while True:
            got = await _next_frame(line, rtu.silence_time(timing.baudrate, timing.bits))
            if got is None:
                return
            frame, first_at = got
            answer = boards.handle(frame)
            if answer is not None:
                await trio.sleep_until(first_at + timing.answer_delay(frame, answer))
                await _write_all(line.fd, answer)


async def _next_frame(line: _Port, silence: float) -> tuple[bytes, float] | None:
    """The next request and when its first byte came: as long as its function says, or whatever
    came before the line fell silent (unknown functions, fragments). None when the far end has gone."""
    while True:
        if line.buffer:
            try:
                need = rtu.request_length(line.buffer)
            except rtu.RequestRejected:
                need = None  # unknown length: the frame ends when the line falls silent
            if need is not None and len(line.buffer) >= need:
                return _take(line, need)
        got = await _read_within(line, max(silence, FRAME_GAP_S) if line.buffer else None)
        if got is None:
            return None
        if not got and line.buffer:  # silence ended a partial or unknown frame
            return _take(line, len(line.buffer))


def _take(line: _Port, size: int) -> tuple[bytes, float]:
    frame, first_at = bytes(line.buffer[:size]), line.first_at
    del line.buffer[:size]
    line.first_at = trio.current_time()  # for bytes already behind this frame, if any
    return frame, first_at


async def _read_within(line: _Port, timeout: float | None) -> bytes | None:
    """Bytes read (b"" if ``timeout`` passed first); None at end of file or a hung-up pty."""
    with trio.move_on_after(timeout if timeout is not None else float("inf")):
        await trio.lowlevel.wait_readable(line.fd)
        try:
            data = os.read(line.fd, 1024)
        except BlockingIOError:
            return b""
        except OSError:
            return None  # EIO: the pty's other side is gone
        if not data:
            return None
        if not line.buffer:
            line.first_at = trio.current_time()
        line.buffer += data
        return data
    return b""


async def _write_all(fd: int, data: bytes) -> None:
    """Send an answer; give it up if the driver's side stops reading or goes away, as a real
    board talks on whether anyone listens."""
    view = memoryview(data)
    with trio.move_on_after(1.0):
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
            except OSError:
                return


# --- socat --------------------------------------------------------------------------------------

@asynccontextmanager
async def socat_pair(*, timeout_s: float = 5.0) -> AsyncIterator[tuple[str, str]]:
    """Start ``socat -d -d pty,raw,echo=0 pty,raw,echo=0`` and yield its two pty paths; stops it on exit."""
    process = await trio.lowlevel.open_process(
        ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"], stderr=subprocess.PIPE)
    assert process.stderr is not None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(timeout_s):
                paths = await _read_pty_paths(process.stderr)
            nursery.start_soon(_drain, process.stderr)  # socat keeps logging; never let the pipe fill
            yield paths
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            await process.wait()


async def _read_pty_paths(stream: trio.abc.ReceiveStream) -> tuple[str, str]:
    seen = b""
    while len(PTY_LINE.findall(seen)) < 2:
        chunk = await stream.receive_some()
        if not chunk:
            raise ChannelError(f"socat exited before opening two ptys: {seen.decode(errors='replace')}")
        seen += chunk
    first, second = PTY_LINE.findall(seen)[:2]
    return first.decode(), second.decode()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some():
        pass


@dataclass
class RunningLine:
    """An emulated line: the driver opens ``port``; the boards listen on ``board_port``."""

    port: str
    board_port: str
    boards: RelayBoards
    timing: LineTiming


@asynccontextmanager
async def relay_line(units: Iterable[int] = (1, 2, 3), coils: int = 8, *, baudrate: int = 19200,
                     parity: str = "E", stopbits: int = 1, pace: bool = True) -> AsyncIterator[RunningLine]:
    """Boards on a fresh socat pty pair, served in this Trio run until the block exits."""
    boards = RelayBoards(units, coils)
    timing = LineTiming(baudrate, parity, stopbits, pace)
    async with socat_pair() as (driver_side, board_side), trio.open_nursery() as nursery:
        await nursery.start(serve, board_side, boards, timing)
        yield RunningLine(driver_side, board_side, boards, timing)
        nursery.cancel_scope.cancel()


# --- command line -------------------------------------------------------------------------------

def apply_command(boards: RelayBoards, text: str) -> str:
    """One stdin command → a JSON reply line."""
    words = text.split()
    try:
        match words:
            case ["silent", unit]:
                boards.silent.add(int(unit))
            case ["answer", unit]:
                boards.silent.discard(int(unit))
            case ["bad-crc", count]:
                boards.bad_crc_next = int(count)
            case ["stick", where, state] if state in ("on", "off"):
                boards.stick(*_unit_coil(where), state == "on")
            case ["unstick", where]:
                boards.unstick(*_unit_coil(where))
            case ["records"]:
                return json.dumps({"switches": msgspec.to_builtins(boards.switches), "requests": boards.requests,
                                   "answers": boards.answers})
            case _:
                return json.dumps({"error": f"unknown command {text.strip()!r}"})
    except (ValueError, KeyError, IndexError) as exc:
        return json.dumps({"error": f"{text.strip()!r}: {exc!r}"})
    return json.dumps({"ok": text.strip()})


def _unit_coil(where: str) -> tuple[int, int]:
    unit, coil = where.split(":")
    return int(unit), int(coil)


async def _commands(boards: RelayBoards, out: TextIO) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    pending = b""
    async with stdin:
        while chunk := await stdin.receive_some():
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    print(apply_command(boards, line.decode()), file=out, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim.relayboard", description="Modbus RTU relay-board emulator")
    p.add_argument("--port", help="pty or serial port the boards listen on (default: start a socat pair)")
    p.add_argument("--units", default="1", help="comma-separated unit addresses, e.g. 1,2,3")
    p.add_argument("--coils", type=int, default=8, help="relays per board")
    p.add_argument("--baudrate", type=int, default=19200)
    p.add_argument("--parity", choices=["N", "E", "O"], default="E")
    p.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    p.add_argument("--no-pace", action="store_true", help="answer at once instead of at the line's speed")
    p.add_argument("--record", help="append every coil write to this file as JSON lines")
    return p


async def _main(args: argparse.Namespace) -> None:
    boards = RelayBoards([int(u) for u in args.units.split(",")], args.coils)
    timing = LineTiming(args.baudrate, args.parity, args.stopbits, not args.no_pace)
    if args.record:
        boards.sink = _file_sink(args.record)
    async with trio.open_nursery() as nursery:
        if args.port:
            await nursery.start(serve, args.port, boards, timing)
            ready = {"board_port": args.port}
        else:
            line = await nursery.start(_own_line, boards, timing)
            ready = {"port": line.port, "board_port": line.board_port}
        print(json.dumps({**ready, "units": sorted(boards.boards), "coils": args.coils,
                          "baudrate": args.baudrate, "pid": os.getpid()}), flush=True)
        nursery.start_soon(_commands, boards, sys.stdout)
        await _until_terminated()
        nursery.cancel_scope.cancel()  # stops socat too, so no pty pair outlives us


async def _until_terminated() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


def _file_sink(path: str) -> Callable[[Switch], None]:
    out = open(path, "ab")  # noqa: ASYNC230  # left open for the process's life; each line is flushed

    def write(switch: Switch) -> None:
        out.write(msgspec.json.encode(switch) + b"\n")
        out.flush()

    return write


async def _own_line(boards: RelayBoards, timing: LineTiming, *,
                    task_status: trio.TaskStatus[RunningLine] = trio.TASK_STATUS_IGNORED) -> None:
    async with socat_pair() as (driver_side, board_side), trio.open_nursery() as nursery:
        await nursery.start(serve, board_side, boards, timing)
        task_status.started(RunningLine(driver_side, board_side, boards, timing))
        await trio.sleep_forever()


def main(argv: list[str] | None = None) -> None:
    try:
        trio.run(_main, _parser().parse_args(argv))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
