"""Loudspeaker/siren relays on RS-485 Modbus RTU lines: switch a zone, read the coils back, report.

Theory of operation: each line is one serial port (pyserial opens and configures it; reads
and writes go straight to its non-blocking descriptor under ``trio.lowlevel.wait_readable``/
``wait_writable``). Modbus RTU is strictly one request, one response, so every line has one
lock and a transaction (wait out the 3.5-character silence, send, read the whole answer or
time out, retry on silence or damage) holds it from the first byte sent to the last byte read.
Transactions are shielded from cancellation: a frame cut in half would leave the board's answer
on the wire to be mistaken for the next one's. A zone is a set of (line, unit, coils); switching
it writes each board's coils (FC15 per contiguous run, FC05 for a lone coil) and reads them back
(FC01): the receipt says what actually switched, not what was asked.

``deliver`` sounds a pattern (``gateway.protocols.siren_patterns``): it performs the first switch, confirms
it by read-back and returns the receipt; the rest of the pattern runs in a task of the driver's
nursery. A later message for the same zone stops that task before switching. When the driver
closes, running patterns are stopped and their zones switched off, so no relay is left
energised with nobody to switch it off. A later step that fails to switch is reported through
``on_update`` (once per run) as a failed receipt.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec
import serial
import trio

from channels.base import ChannelHealth, Message, Receipt, UpdateCallback, failed
from gateway.errors import AlertError, ChannelError, ConfigError, GatewayError, ProtocolError
from gateway.protocols import modbus_rtu as rtu
from gateway.protocols.siren_patterns import Plan, plan_for
from gateway.settings.base import Base
from gateway.settings.channels import SirenLine

SHUTDOWN_OFF_S = 5.0  # bound on switching zones off when the driver closes


class SirenTarget(Base, frozen=True):
    """Relays of one zone on one board: 0-based coil addresses as on the wire."""

    line: str
    unit: int
    coils: list[int]


class SirenConfig(Base, frozen=True):
    lines: list[SirenLine]
    zones: dict[str, list[SirenTarget]]
    poll_interval_s: float = 10.0  # how often every board is asked for its coils (health)
    max_per_second: float = 10.0
    max_batch: int = 32


class UnitSilent(ChannelError):
    """A board did not answer within the response timeout on any try."""


class LineStats(msgspec.Struct, kw_only=True):
    """Counters for one line; ``wire_time_s`` is what the frames exchanged so far must take at
    the line's baud rate, inter-frame silences included."""

    requests: int = 0
    request_bytes: int = 0
    responses: int = 0
    response_bytes: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    retries: int = 0
    wire_time_s: float = 0.0


def config_problems(cfg: SirenConfig) -> list[str]:
    """Cross-field checks the schema cannot express, each naming the key."""
    p: list[str] = []
    names = [line.name for line in cfg.lines]
    if len(set(names)) != len(names):
        p.append(f"sirens.lines: duplicate line names in {names}")
    for i, line in enumerate(cfg.lines):
        if not line.port or line.baudrate <= 0:
            p.append(f"sirens.lines[{i}]: expected a port path and a positive baudrate")
        if line.response_timeout_s <= 0 or not 0 <= line.retries <= 10:
            p.append(f"sirens.lines[{i}]: expected response_timeout_s > 0 and retries 0-10")
    for zone, targets in cfg.zones.items():
        if not targets:
            p.append(f"sirens.zones.{zone}: expected at least one (line, unit, coils)")
        for i, t in enumerate(targets):
            p.extend(f"sirens.zones.{zone}[{i}]: {msg}" for msg in _target_problems(t, set(names)))
    if cfg.poll_interval_s <= 0 or cfg.max_per_second <= 0 or cfg.max_batch < 1:
        p.append("sirens: expected poll_interval_s > 0, max_per_second > 0, max_batch >= 1")
    return p


def _target_problems(t: SirenTarget, lines: set[str]) -> list[str]:
    p = []
    if t.line not in lines:
        p.append(f"line {t.line!r} is not in sirens.lines")
    if not 1 <= t.unit <= 247:
        p.append(f"unit must be 1-247, got {t.unit}")
    if not t.coils or len(set(t.coils)) != len(t.coils) or not all(0 <= c <= 0xFFFF for c in t.coils):
        p.append(f"coils must be distinct addresses 0-65535, got {t.coils}")
    elif max(t.coils) - min(t.coils) >= rtu.MAX_READ:
        p.append(f"coils must lie within {rtu.MAX_READ} of each other to be read back at once")
    return p


# --- one line -----------------------------------------------------------------------------------

class _Line:
    """One serial port and its transaction lock; owns the port once opened."""

    def __init__(self, cfg: SirenLine) -> None:
        self.cfg = cfg
        self.bits = rtu.char_bits(cfg.parity, cfg.stopbits)
        self.silence = rtu.silence_time(cfg.baudrate, self.bits)
        self.stats = LineStats()
        self.answered: dict[int, str] = {}  # unit -> "" if its last transaction got an answer, else why not
        self._lock = trio.Lock()
        self._quiet_at = 0.0  # when the line has been silent for 3.5 characters
        try:
            self._port = serial.Serial(cfg.port, cfg.baudrate, bytesize=8, parity=cfg.parity,
                                       stopbits=cfg.stopbits, timeout=0, write_timeout=0, exclusive=True)
        except (serial.SerialException, ValueError) as exc:
            raise ChannelError(f"siren line {cfg.name}: cannot open {cfg.port}: {exc}") from exc
        self._fd = self._port.fileno()

    def close(self) -> None:
        self._port.close()

    def _wire(self, nbytes: int) -> float:
        return rtu.wire_time(nbytes, self.cfg.baudrate, self.bits)

    async def transact(self, request: rtu.Request) -> rtu.Response:
        """Send ``request`` and return the board's answer (an ExceptionReply included).

        Raises UnitSilent after every try timed out, ProtocolError (CrcError included) when the
        last try got a damaged or wrong answer, ChannelError when the port fails."""
        with trio.CancelScope(shield=True):
            async with self._lock:
                try:
                    response = await self._with_retries(request)
                except GatewayError as exc:
                    self.answered[request.unit] = str(exc)
                    raise
        self.answered[request.unit] = ""
        return response

    async def _with_retries(self, request: rtu.Request) -> rtu.Response:
        frame = rtu.encode_request(request)
        last: GatewayError = UnitSilent("no try made")
        for attempt in range(1 + self.cfg.retries):
            self.stats.retries += attempt > 0
            try:
                return await self._attempt(request, frame)
            except UnitSilent as exc:
                self.stats.timeouts += 1
                last = exc
            except ProtocolError as exc:
                self.stats.bad_frames += 1
                last = exc
        raise last

    async def _attempt(self, request: rtu.Request, frame: bytes) -> rtu.Response:
        await trio.sleep_until(self._quiet_at)
        self._discard_input()
        await self._write(frame)
        sent_at = trio.current_time()
        self.stats.requests += 1
        self.stats.request_bytes += len(frame)
        self.stats.wire_time_s += self._wire(len(frame)) + self.silence
        # A UART needs the request's wire time to send it; the answer may take the longest one's.
        longest = rtu.response_length(request, b"")
        answer = await self._receive(request, sent_at + self._wire(len(frame) + longest) + self.cfg.response_timeout_s)
        self._quiet_at = trio.current_time() + self.silence
        if not answer:
            raise UnitSilent(f"unit {request.unit} on line {self.cfg.name} did not answer")
        self.stats.responses += 1
        self.stats.response_bytes += len(answer)
        self.stats.wire_time_s += self._wire(len(answer)) + self.silence
        return rtu.decode_response(request, answer)

    async def _receive(self, request: rtu.Request, deadline: float) -> bytes:
        answer = bytearray()
        with trio.move_on_at(deadline):
            while len(answer) < (rtu.response_length(request, answer) if len(answer) >= 2 else 2):
                answer += await self._read_some()
        return bytes(answer)

    async def _read_some(self) -> bytes:
        await trio.lowlevel.wait_readable(self._fd)
        try:
            data = os.read(self._fd, 512)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise ChannelError(f"siren line {self.cfg.name}: read failed: {exc}") from exc
        if not data:
            raise ChannelError(f"siren line {self.cfg.name}: port {self.cfg.port} closed")
        return data

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)
            except OSError as exc:
                raise ChannelError(f"siren line {self.cfg.name}: write failed: {exc}") from exc

    def _discard_input(self) -> None:
        # Whatever is waiting now answers nothing we are about to ask (a late reply, noise).
        while True:
            try:
                if not os.read(self._fd, 512):
                    return
            except (BlockingIOError, OSError):
                return


# --- zones --------------------------------------------------------------------------------------

class _Target(msgspec.Struct, frozen=True):
    line: _Line
    unit: int
    coils: tuple[int, ...]

    @property
    def where(self) -> str:
        return f"line {self.line.cfg.name} unit {self.unit}"


class _Outcome(msgspec.Struct, frozen=True):
    where: str
    error: str = ""  # empty: every coil read back as written
    retryable: bool = False


async def switch_target(target: _Target, on: bool) -> _Outcome:
    """Write ``target``'s coils to ``on`` and read them back."""
    try:
        for request in rtu.switch_requests(target.unit, target.coils, on):
            answer = await target.line.transact(request)
            if isinstance(answer, rtu.ExceptionReply):
                return _refused(target, answer)
        read = rtu.readback_request(target.unit, target.coils)
        answer = await target.line.transact(read)
    except (ChannelError, ProtocolError) as exc:  # silence, damage, a failing port: all may pass
        return _Outcome(target.where, f"{target.where}: {exc}", retryable=True)
    if isinstance(answer, rtu.ExceptionReply):
        return _refused(target, answer)
    assert isinstance(answer, rtu.CoilsRead)  # decode_response answers FC01 with CoilsRead
    wrong = rtu.not_switched(target.coils, on, answer, read.address)
    if wrong:
        state = "on" if on else "off"
        return _Outcome(target.where, f"{target.where}: coils {wrong} did not switch {state}")
    return _Outcome(target.where)


def _refused(target: _Target, answer: rtu.ExceptionReply) -> _Outcome:
    return _Outcome(target.where, f"{target.where}: refused function {answer.function}: {answer.reason}",
                    retryable=answer.code in rtu.TRANSIENT_EXCEPTIONS)


async def switch_zone(targets: Sequence[_Target], on: bool) -> list[_Outcome]:
    """Switch every target; lines work in parallel, each line's lock orders its frames."""
    outcomes: list[_Outcome | None] = [None] * len(targets)

    async def one(i: int) -> None:
        outcomes[i] = await switch_target(targets[i], on)

    async with trio.open_nursery() as nursery:
        for i in range(len(targets)):
            nursery.start_soon(one, i)
    return [o for o in outcomes if o is not None]


def _receipt(message: Message, outcomes: list[_Outcome], provider_id: str) -> Receipt:
    bad = [o for o in outcomes if o.error]
    if not bad:
        return Receipt(idempotency_key=message.idempotency_key, state="delivered", provider_id=provider_id)
    receipt = failed(message, "; ".join(o.error for o in bad), retryable=any(o.retryable for o in bad))
    return msgspec.structs.replace(receipt, provider_id=provider_id)


# --- the channel --------------------------------------------------------------------------------

class _Run(msgspec.Struct):
    scope: trio.CancelScope
    done: trio.Event


class SirenChannel:
    """Siren zones on Modbus RTU relay boards. Made by ``open_sirens``, which owns its lines and tasks."""

    name = "siren"

    def __init__(self, cfg: SirenConfig, lines: dict[str, _Line], nursery: trio.Nursery,
                 on_update: UpdateCallback | None) -> None:
        self.max_per_second = cfg.max_per_second
        self.max_batch = cfg.max_batch
        self._cfg = cfg
        self._lines = lines
        self._nursery = nursery
        self._on_update = on_update
        self._zones = {zone: [_Target(lines[t.line], t.unit, tuple(sorted(t.coils))) for t in targets]
                       for zone, targets in cfg.zones.items()}
        self._runs: dict[str, _Run] = {}
        # One message at a time per zone, so a superseded pattern is always stopped, never orphaned.
        self._zone_locks = {zone: trio.Lock() for zone in cfg.zones}
        self._seq = 0

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        """Sound each message's pattern in its zone; one receipt each, in order. Messages for the
        same zone are taken in order (the last one wins); different zones switch concurrently."""
        receipts: list[Receipt | None] = [None] * len(messages)
        by_zone: dict[str, list[int]] = {}
        for i, m in enumerate(messages):
            by_zone.setdefault(m.address, []).append(i)

        async def zone_in_order(indexes: list[int]) -> None:
            for i in indexes:
                receipts[i] = await self._deliver_one(messages[i])

        async with trio.open_nursery() as nursery:
            for indexes in by_zone.values():
                nursery.start_soon(zone_in_order, indexes)
        return [r for r in receipts if r is not None]

    async def _deliver_one(self, message: Message) -> Receipt:
        targets = self._zones.get(message.address)
        if targets is None:
            return failed(message, f"unknown siren zone {message.address!r}", retryable=False)
        try:
            plan = plan_for(message.options)
        except AlertError as exc:
            return failed(message, str(exc), retryable=False)
        self._seq += 1
        provider_id = f"{message.address}#{self._seq}"
        if not plan.steps:  # "none": this message asks for no change
            return Receipt(idempotency_key=message.idempotency_key, state="delivered", provider_id=provider_id)
        async with self._zone_locks[message.address]:
            await self._stop(message.address)
            started = trio.current_time()
            outcomes = await switch_zone(targets, plan.steps[0].on)
            if len(plan.steps) > 1:
                run = self._runs[message.address] = _Run(trio.CancelScope(), trio.Event())
                self._nursery.start_soon(self._run_rest, message, plan, started, run, provider_id)
        return _receipt(message, outcomes, provider_id)

    async def _run_rest(self, message: Message, plan: Plan, started: float, run: _Run, provider_id: str) -> None:
        reported = False
        try:
            with run.scope:
                for step in plan.steps[1:]:
                    await trio.sleep_until(started + step.at_s)
                    receipt = _receipt(message, await switch_zone(self._zones[message.address], step.on), provider_id)
                    if receipt.state == "failed" and not reported and self._on_update is not None:
                        reported = True
                        self._on_update(msgspec.structs.replace(receipt, error=f"at {step.at_s:g} s: {receipt.error}"))
        finally:
            run.done.set()
            if self._runs.get(message.address) is run:
                del self._runs[message.address]

    async def _stop(self, zone: str) -> None:
        run = self._runs.get(zone)
        if run is not None:
            run.scope.cancel()
            await run.done.wait()

    async def switch_off_running(self) -> None:
        """Stop every running pattern and switch its zone off (used when the driver closes)."""
        zones = list(self._runs)
        for zone in zones:
            await self._stop(zone)
        async with trio.open_nursery() as nursery:
            for zone in zones:
                nursery.start_soon(switch_zone, self._zones[zone], False)

    async def poll(self) -> None:
        """Ask every board for its coils once; ``health`` reports who answered."""
        async with trio.open_nursery() as nursery:
            for line in self._lines.values():
                nursery.start_soon(self._poll_line, line)

    async def _poll_line(self, line: _Line) -> None:
        for unit, coils in _units_of(self._zones, line).items():
            try:
                await line.transact(rtu.readback_request(unit, coils))
            except (ChannelError, ProtocolError):
                pass  # transact recorded it in line.answered, which is what health reports

    async def poll_forever(self) -> None:
        while True:
            await self.poll()
            await trio.sleep(self._cfg.poll_interval_s)

    async def health(self) -> ChannelHealth:
        """Up when every board answered its last transaction (poll or switch)."""
        problems = []
        for line in self._lines.values():
            for unit in _units_of(self._zones, line):
                status = line.answered.get(unit, "not polled yet")
                if status:
                    problems.append(f"line {line.cfg.name} unit {unit}: {status}")
        return ChannelHealth(up=not problems, detail="; ".join(problems))

    def statistics(self) -> dict[str, LineStats]:
        """Per-line frame counters (the live objects: copy before comparing)."""
        return {name: line.stats for name, line in self._lines.items()}


def _units_of(zones: dict[str, list[_Target]], line: _Line) -> dict[int, tuple[int, ...]]:
    """Each board on ``line`` → the span of coils any zone uses on it."""
    coils: dict[int, set[int]] = {}
    for targets in zones.values():
        for t in targets:
            if t.line is line:
                coils.setdefault(t.unit, set()).update(t.coils)
    return {unit: (min(c), max(c)) if len(c) > 1 else (min(c),) for unit, c in sorted(coils.items())}


@asynccontextmanager
async def open_sirens(config: SirenConfig, *, on_update: UpdateCallback | None = None) -> AsyncIterator[SirenChannel]:
    """Open every line and yield the siren channel; boards are polled every ``poll_interval_s``.

    Raises ConfigError for an inconsistent config and ChannelError when a port cannot be
    opened. On exit, running patterns are stopped, their zones switched off (bounded by
    SHUTDOWN_OFF_S) and the ports closed."""
    problems = config_problems(config)
    if problems:
        raise ConfigError(problems)
    lines: dict[str, _Line] = {}
    try:
        for line_cfg in config.lines:
            lines[line_cfg.name] = _Line(line_cfg)
        async with trio.open_nursery() as nursery:
            channel = SirenChannel(config, lines, nursery, on_update)
            nursery.start_soon(channel.poll_forever)
            try:
                yield channel
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_OFF_S):
                    await channel.switch_off_running()
                nursery.cancel_scope.cancel()
    finally:
        for line in lines.values():
            line.close()
