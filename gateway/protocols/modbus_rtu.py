"""Modbus RTU frames for relay boards: read coils (FC01), write one coil (FC05), write coils (FC15). Pure: no I/O.

Theory of operation: an RTU frame is ``unit | function | data | CRC-16 (low byte first)``; there is
no length prefix, so a reader must know how long the frame will be from what it asked (master)
or from the function code and byte count (slave), and frames are separated on the wire by at
least 3.5 character times of silence. The master side is ``encode_request`` → bytes,
``response_length(request, first two bytes)`` → how many bytes to wait for, and
``decode_response(request, frame)`` → a typed response or a ``ProtocolError`` saying what the
peer got wrong. The slave side (the relay-board emulator) is ``request_length(buffer)``,
``decode_request(frame)`` and ``encode_response(response)``.

The CRC is CRC-16/MODBUS (reflected polynomial 0xA001, initial 0xFFFF), table-driven. pymodbus has
one, but importing it loads asyncio, sockets, TLS and subprocess support (0.1 s, 120 modules) into a
codec that does no I/O; the tests check ours against pymodbus's byte for byte and against the
worked examples of the specification. pymodbus's PDU classes are tied to its datastore and
transaction machinery, so the few PDUs we need are packed here with ``struct``. Coil addresses are
the protocol's 0-based addresses.
"""

from __future__ import annotations

import struct

import msgspec

from gateway.errors import ProtocolError

READ_COILS = 0x01
WRITE_COIL = 0x05
WRITE_COILS = 0x0F
EXCEPTION_BIT = 0x80
MAX_READ = 2000  # coils per FC01 request (Modbus application protocol 1.1b3, 6.1)
MAX_WRITE = 1968  # coils per FC15 request (6.11)
ON, OFF = 0xFF00, 0x0000  # FC05 values; anything else is an illegal data value

ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03
DEVICE_FAILURE = 0x04
ACKNOWLEDGE = 0x05
DEVICE_BUSY = 0x06
EXCEPTION_NAMES = {
    ILLEGAL_FUNCTION: "illegal function",
    ILLEGAL_ADDRESS: "illegal data address",
    ILLEGAL_VALUE: "illegal data value",
    DEVICE_FAILURE: "server device failure",
    ACKNOWLEDGE: "acknowledge",
    DEVICE_BUSY: "server device busy",
}
TRANSIENT_EXCEPTIONS = frozenset({ACKNOWLEDGE, DEVICE_BUSY})  # asking again later can help


class CrcError(ProtocolError):
    """A frame arrived whole but its CRC is wrong (line noise, collision): worth asking again."""


class RequestRejected(ProtocolError):
    """A slave cannot serve a request that reached it intact; it answers with exception ``code``."""

    def __init__(self, unit: int, function: int, code: int, why: str) -> None:
        self.unit, self.function, self.code = unit, function, code
        super().__init__(f"unit {unit} function {function}: {why}")


# --- frames ---------------------------------------------------------------------------------

class ReadCoils(msgspec.Struct, frozen=True):
    unit: int
    address: int
    count: int


class WriteCoil(msgspec.Struct, frozen=True):
    unit: int
    address: int
    on: bool


class WriteCoils(msgspec.Struct, frozen=True):
    unit: int
    address: int
    values: tuple[bool, ...]


class CoilsRead(msgspec.Struct, frozen=True):
    """The coil states a slave reported, trimmed to the count asked for."""

    unit: int
    values: tuple[bool, ...]


class CoilWritten(msgspec.Struct, frozen=True):
    unit: int
    address: int
    on: bool


class CoilsWritten(msgspec.Struct, frozen=True):
    unit: int
    address: int
    count: int


class ExceptionReply(msgspec.Struct, frozen=True):
    """The slave understood the request and refused it with an exception code."""

    unit: int
    function: int
    code: int

    @property
    def reason(self) -> str:
        return EXCEPTION_NAMES.get(self.code, f"exception code {self.code}")


Request = ReadCoils | WriteCoil | WriteCoils
Response = CoilsRead | CoilWritten | CoilsWritten | ExceptionReply


def function_of(message: Request | Response) -> int:
    match message:
        case ReadCoils() | CoilsRead():
            return READ_COILS
        case WriteCoil() | CoilWritten():
            return WRITE_COIL
        case WriteCoils() | CoilsWritten():
            return WRITE_COILS
        case ExceptionReply(function=function):
            return function | EXCEPTION_BIT
    raise TypeError(f"not a Modbus message: {message!r}")


# --- CRC and bits -----------------------------------------------------------------------------

def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> bytes:
    """CRC-16/MODBUS of ``data`` in wire order (low byte first)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc.to_bytes(2, "little")


def _seal(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + crc16(body)


def pack_bits(values: tuple[bool, ...]) -> bytes:
    """Coils to bytes, first coil in the least significant bit of the first byte."""
    packed = bytearray((len(values) + 7) // 8)
    for i, on in enumerate(values):
        if on:
            packed[i // 8] |= 1 << (i % 8)
    return bytes(packed)


def unpack_bits(data: bytes, count: int) -> tuple[bool, ...]:
    """The first ``count`` coils of ``data`` (least significant bit first)."""
    return tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(min(count, len(data) * 8)))


def _check_unit(unit: int, *, broadcast: bool = False) -> None:
    if not (0 if broadcast else 1) <= unit <= 247:
        raise ValueError(f"Modbus unit must be 1-247, got {unit}")


def _check_span(address: int, count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise ValueError(f"coil count must be 1-{limit}, got {count}")
    if not 0 <= address <= 0xFFFF - count + 1:
        raise ValueError(f"coils {address}..{address + count - 1} outside 0-65535")


# --- master side ------------------------------------------------------------------------------

def encode_request(request: Request) -> bytes:
    """The RTU frame for ``request``. Raises ValueError for arguments no slave could accept."""
    match request:
        case ReadCoils(unit, address, count):
            _check_unit(unit)
            _check_span(address, count, MAX_READ)
            return _seal(unit, struct.pack(">BHH", READ_COILS, address, count))
        case WriteCoil(unit, address, on):
            _check_unit(unit, broadcast=True)
            _check_span(address, 1, 1)
            return _seal(unit, struct.pack(">BHH", WRITE_COIL, address, ON if on else OFF))
        case WriteCoils(unit, address, values):
            _check_unit(unit, broadcast=True)
            _check_span(address, len(values), MAX_WRITE)
            packed = pack_bits(values)
            return _seal(unit, struct.pack(">BHHB", WRITE_COILS, address, len(values), len(packed)) + packed)
    raise TypeError(f"not a Modbus request: {request!r}")


def response_length(request: Request, head: bytes | bytearray) -> int:
    """Bytes the whole response will take, given its first two bytes (unit, function)."""
    if len(head) >= 2 and head[1] & EXCEPTION_BIT:
        return 5
    if isinstance(request, ReadCoils):
        return 5 + (request.count + 7) // 8
    return 8


def decode_response(request: Request, frame: bytes) -> Response:
    """The slave's answer to ``request``.

    Raises CrcError for a damaged frame, ProtocolError for a short frame, a different unit,
    a different function or an answer that does not echo the request.
    """
    if len(frame) < max(5, response_length(request, frame)):  # cut off: its CRC cannot be checked
        raise ProtocolError(f"short frame from unit {request.unit}: {frame.hex(' ')!r}")
    if crc16(frame[:-2]) != frame[-2:]:
        raise CrcError(f"bad CRC from unit {frame[0]}: {frame.hex(' ')}")
    unit, function = frame[0], frame[1]
    if unit != request.unit:
        raise ProtocolError(f"asked unit {request.unit}, unit {unit} answered")
    expected = function_of(request)
    if function == expected | EXCEPTION_BIT:
        _expect_length(frame, 5, request)
        return ExceptionReply(unit, expected, frame[2])
    if function != expected:
        raise ProtocolError(f"asked unit {unit} for function {expected}, it answered function {function}")
    _expect_length(frame, response_length(request, frame), request)
    return _decode_body(request, frame[2:-2])


def _expect_length(frame: bytes, length: int, request: Request) -> None:
    if len(frame) > length:
        raise ProtocolError(f"overlong frame from unit {request.unit}: {len(frame)} bytes, expected {length}")


def _decode_body(request: Request, body: bytes) -> Response:
    match request:
        case ReadCoils(unit, _, count):
            if body[0] != (count + 7) // 8:
                raise ProtocolError(f"unit {unit} sent byte count {body[0]} for {count} coils")
            return CoilsRead(unit, unpack_bits(body[1:], count))
        case WriteCoil(unit, address, on):
            echo = struct.unpack(">HH", body)
            if echo != (address, ON if on else OFF):
                raise ProtocolError(f"unit {unit} echoed coil {echo[0]}={echo[1]:#06x} for coil {address}")
            return CoilWritten(unit, address, on)
        case WriteCoils(unit, address, values):
            echo = struct.unpack(">HH", body)
            if echo != (address, len(values)):
                raise ProtocolError(f"unit {unit} echoed coils {echo} for {address}+{len(values)}")
            return CoilsWritten(unit, address, len(values))
    raise TypeError(f"not a Modbus request: {request!r}")


# --- slave side -------------------------------------------------------------------------------

def request_length(buffer: bytes | bytearray) -> int | None:
    """Bytes the request at the start of ``buffer`` takes, or None until enough has arrived.

    Raises RequestRejected for a function this codec does not know: its length cannot be
    known, so the slave has to wait for the line to fall silent to find the frame's end.
    """
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (READ_COILS, WRITE_COIL):
        return 8
    if function == WRITE_COILS:
        return 9 + buffer[6] if len(buffer) >= 7 else None
    raise RequestRejected(buffer[0], function, ILLEGAL_FUNCTION, "function not supported")


def decode_request(frame: bytes) -> Request:
    """A request as a slave sees it. Raises CrcError, ProtocolError (too short: ignore it, as a
    real slave does) or RequestRejected (answer with its exception code)."""
    if len(frame) < 4:
        raise ProtocolError(f"short request frame: {frame.hex(' ')!r}")
    if crc16(frame[:-2]) != frame[-2:]:
        raise CrcError(f"bad CRC in request: {frame.hex(' ')}")
    unit, function, body = frame[0], frame[1], frame[2:-2]
    if function == READ_COILS and len(body) == 4:
        address, count = struct.unpack(">HH", body)
        _check_request_span(unit, function, address, count, MAX_READ)
        return ReadCoils(unit, address, count)
    if function == WRITE_COIL and len(body) == 4:
        address, value = struct.unpack(">HH", body)
        if value not in (ON, OFF):
            raise RequestRejected(unit, function, ILLEGAL_VALUE, f"coil value {value:#06x}")
        return WriteCoil(unit, address, value == ON)
    if function == WRITE_COILS and len(body) >= 5:
        return _decode_write_coils(unit, body)
    if function in (READ_COILS, WRITE_COIL, WRITE_COILS):
        raise RequestRejected(unit, function, ILLEGAL_VALUE, f"malformed {len(body)}-byte body")
    raise RequestRejected(unit, function, ILLEGAL_FUNCTION, "function not supported")


def _decode_write_coils(unit: int, body: bytes) -> WriteCoils:
    address, count, byte_count = struct.unpack(">HHB", body[:5])
    if byte_count != (count + 7) // 8 or len(body) != 5 + byte_count:
        raise RequestRejected(unit, WRITE_COILS, ILLEGAL_VALUE, f"byte count {byte_count} for {count} coils")
    _check_request_span(unit, WRITE_COILS, address, count, MAX_WRITE)
    return WriteCoils(unit, address, unpack_bits(body[5:], count))


def _check_request_span(unit: int, function: int, address: int, count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise RequestRejected(unit, function, ILLEGAL_VALUE, f"quantity {count}")
    if address + count > 0x10000:
        raise RequestRejected(unit, function, ILLEGAL_ADDRESS, f"coils {address}+{count} past 65535")


def encode_response(response: Response) -> bytes:
    """The RTU frame a slave sends for ``response``."""
    match response:
        case CoilsRead(unit, values):
            packed = pack_bits(values)
            return _seal(unit, struct.pack(">BB", READ_COILS, len(packed)) + packed)
        case CoilWritten(unit, address, on):
            return _seal(unit, struct.pack(">BHH", WRITE_COIL, address, ON if on else OFF))
        case CoilsWritten(unit, address, count):
            return _seal(unit, struct.pack(">BHH", WRITE_COILS, address, count))
        case ExceptionReply(unit, function, code):
            return _seal(unit, bytes([function | EXCEPTION_BIT, code]))
    raise TypeError(f"not a Modbus response: {response!r}")


# --- line timing ------------------------------------------------------------------------------

def char_bits(parity: str, stopbits: int) -> int:
    """Bits per character on the wire: start, 8 data, parity if any, stop bits (11 in Modbus's
    standard framings 8E1 and 8N2)."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def wire_time(nbytes: int, baudrate: int, bits: int = 11) -> float:
    """Seconds ``nbytes`` take on the wire."""
    return nbytes * bits / baudrate


def silence_time(baudrate: int, bits: int = 11) -> float:
    """The inter-frame silence: 3.5 character times, fixed at 1.75 ms above 19,200 baud
    (Modbus over serial line 1.02, 2.5.1.1)."""
    return 0.00175 if baudrate > 19200 else 3.5 * bits / baudrate


# --- switching a set of relays on one board ---------------------------------------------------

def switch_requests(unit: int, coils: tuple[int, ...], on: bool) -> list[Request]:
    """Writes that set ``coils`` (sorted, distinct) on ``unit``: one FC15 per contiguous run and
    FC05 for a lone coil, so coils between them that belong to someone else are not touched."""
    requests: list[Request] = []
    for start, count in coil_runs(coils):
        if count == 1:
            requests.append(WriteCoil(unit, start, on))
        else:
            requests.append(WriteCoils(unit, start, (on,) * count))
    return requests


def coil_runs(coils: tuple[int, ...]) -> list[tuple[int, int]]:
    """Sorted distinct coils → (first, count) of each contiguous run."""
    runs: list[tuple[int, int]] = []
    for coil in coils:
        if runs and runs[-1][0] + runs[-1][1] == coil:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((coil, 1))
    return runs


def readback_request(unit: int, coils: tuple[int, ...]) -> ReadCoils:
    """One FC01 covering ``coils`` (sorted, distinct, spanning at most MAX_READ)."""
    return ReadCoils(unit, coils[0], coils[-1] - coils[0] + 1)


def not_switched(coils: tuple[int, ...], on: bool, readback: CoilsRead, first: int) -> list[int]:
    """The coils whose read-back state is not ``on``; ``first`` is the read's start address."""
    return [coil for coil in coils if readback.values[coil - first] != on]
