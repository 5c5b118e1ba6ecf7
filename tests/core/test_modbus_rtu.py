"""Modbus RTU codec: frames checked against the worked examples of the Modbus specifications."""

from __future__ import annotations

import pytest

from gateway.errors import ProtocolError
from gateway.protocols import modbus_rtu as rtu


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- CRC ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "crc"), [
    ("0207", "4112"),  # Modbus over serial line 1.02, appendix B
    ("010300000 00a".replace(" ", ""), "c5cd"),
    ("110500acff00", "4e8b"),
    ("110f0013000a02cd01", "bf0b"),
    ("110100130025", "0e84"),
])
def test_crc16_matches_published_examples(body: str, crc: str) -> None:
    assert rtu.crc16(h(body)) == h(crc)


# --- master: requests --------------------------------------------------------------------------

def test_encode_read_coils() -> None:
    assert rtu.encode_request(rtu.ReadCoils(0x11, 0x13, 0x25)) == h("110100130025 0e84".replace(" ", ""))


def test_encode_write_coil_on_and_off() -> None:
    assert rtu.encode_request(rtu.WriteCoil(0x11, 0xAC, True)) == h("110500acff004e8b")
    off = rtu.encode_request(rtu.WriteCoil(0x11, 0xAC, False))
    assert off[:6] == h("110500ac0000") and off[6:] == rtu.crc16(off[:6])


def test_encode_write_coils_packs_first_coil_in_low_bit() -> None:
    # Spec example: coils 20..29 = 1011 0011 / 01 → data bytes CD 01.
    values = (True, False, True, True, False, False, True, True, True, False)
    assert rtu.encode_request(rtu.WriteCoils(0x11, 0x13, values)) == h("110f0013000a02cd01bf0b")


@pytest.mark.parametrize("request_", [
    rtu.ReadCoils(0, 0, 1),  # broadcast cannot be read
    rtu.ReadCoils(248, 0, 1),
    rtu.ReadCoils(1, 0, 0),
    rtu.ReadCoils(1, 0, 2001),
    rtu.ReadCoils(1, 0xFFFF, 2),
    rtu.WriteCoil(1, 0x10000, True),
    rtu.WriteCoils(1, 0, ()),
    rtu.WriteCoils(1, 0, (True,) * 1969),
])
def test_encode_rejects_impossible_requests(request_: rtu.Request) -> None:
    with pytest.raises(ValueError):
        rtu.encode_request(request_)


def test_broadcast_writes_are_allowed() -> None:
    assert rtu.encode_request(rtu.WriteCoil(0, 1, True))[0] == 0


# --- master: responses -------------------------------------------------------------------------

def seal(text: str) -> bytes:
    return h(text) + rtu.crc16(h(text))


def test_decode_read_coils_response_trims_padding() -> None:
    frame = h("110105cd6bb20e1b45e6")
    got = rtu.decode_response(rtu.ReadCoils(0x11, 0x13, 0x25), frame)
    assert isinstance(got, rtu.CoilsRead) and len(got.values) == 37
    assert got.values[:8] == (True, False, True, True, False, False, True, True)  # 0xCD
    assert got.values[32:] == (True, True, False, True, True)  # 0x1B, 5 bits used


def test_decode_write_responses_echo_the_request() -> None:
    assert rtu.decode_response(rtu.WriteCoil(0x11, 0xAC, True),
                               h("110500acff004e8b")) == rtu.CoilWritten(0x11, 0xAC, True)
    values = (True,) * 10
    assert rtu.decode_response(rtu.WriteCoils(0x11, 0x13, values),
                               seal("110f0013000a")) == rtu.CoilsWritten(0x11, 0x13, 10)


def test_decode_exception_reply() -> None:
    got = rtu.decode_response(rtu.ReadCoils(0x0A, 0, 8), seal("0a8102"))
    assert got == rtu.ExceptionReply(0x0A, rtu.READ_COILS, rtu.ILLEGAL_ADDRESS)
    assert isinstance(got, rtu.ExceptionReply) and got.reason == "illegal data address"
    assert rtu.ExceptionReply(1, 1, 0x30).reason == "exception code 48"


def test_bad_crc_is_a_crc_error() -> None:
    frame = bytearray(h("110500acff004e8b"))
    frame[-1] ^= 0x01
    with pytest.raises(rtu.CrcError):
        rtu.decode_response(rtu.WriteCoil(0x11, 0xAC, True), bytes(frame))
    assert issubclass(rtu.CrcError, ProtocolError)


@pytest.mark.parametrize(("request_", "frame", "words"), [
    (rtu.WriteCoil(0x11, 0xAC, True), h("1105"), "short frame"),
    (rtu.WriteCoil(0x11, 0xAC, True), b"", "short frame"),
    (rtu.WriteCoil(0x11, 0xAC, True), h("110500acff"), "short frame"),  # cut off, not a CRC error
    (rtu.WriteCoil(0x12, 0xAC, True), h("110500acff004e8b"), "asked unit 18, unit 17 answered"),
    (rtu.ReadCoils(0x11, 0xAC, 1), h("110500acff004e8b"), "answered function 5"),
    (rtu.WriteCoil(0x11, 0xAD, True), h("110500acff004e8b"), "echoed coil 172"),
    (rtu.WriteCoil(0x11, 0xAC, False), h("110500acff004e8b"), "echoed coil 172"),
    (rtu.WriteCoils(0x11, 0x13, (True,) * 9), seal("110f0013000a"), "echoed coils"),
    (rtu.ReadCoils(0x11, 0, 9), seal("11010103"), "short frame"),  # one data byte where two are due
    (rtu.ReadCoils(0x11, 0, 8), seal("1101020300"), "overlong frame"),
    (rtu.ReadCoils(0x11, 0, 16), seal("1101030300"), "byte count 3"),
    (rtu.ReadCoils(0x11, 0, 8), seal("118102ff"), "overlong"),  # exception replies are 5 bytes
])
def test_decode_response_names_the_fault(request_: rtu.Request, frame: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words) as info:
        rtu.decode_response(request_, frame)
    assert not isinstance(info.value, rtu.CrcError)


def test_response_length_from_the_first_two_bytes() -> None:
    assert rtu.response_length(rtu.ReadCoils(1, 0, 8), h("0101")) == 6
    assert rtu.response_length(rtu.ReadCoils(1, 0, 9), b"") == 7
    assert rtu.response_length(rtu.WriteCoils(1, 0, (True,) * 9), h("010f")) == 8
    assert rtu.response_length(rtu.WriteCoil(1, 0, True), h("0185")) == 5


# --- slave side --------------------------------------------------------------------------------

def test_request_length_waits_for_enough_bytes() -> None:
    write = rtu.encode_request(rtu.WriteCoils(1, 0, (True,) * 17))
    assert rtu.request_length(write[:1]) is None
    assert rtu.request_length(write[:6]) is None
    assert rtu.request_length(write[:7]) == len(write) == 12
    assert rtu.request_length(h("0101")) == rtu.request_length(h("0105")) == 8


def test_request_length_rejects_unknown_functions() -> None:
    with pytest.raises(rtu.RequestRejected) as info:
        rtu.request_length(h("0103"))
    assert (info.value.unit, info.value.function, info.value.code) == (1, 3, rtu.ILLEGAL_FUNCTION)


@pytest.mark.parametrize("request_", [
    rtu.ReadCoils(7, 3, 20), rtu.WriteCoil(7, 9, True), rtu.WriteCoil(7, 9, False),
    rtu.WriteCoils(7, 1, (True, False, True)), rtu.WriteCoil(0, 2, True),
])
def test_requests_round_trip(request_: rtu.Request) -> None:
    assert rtu.decode_request(rtu.encode_request(request_)) == request_


@pytest.mark.parametrize("response", [
    rtu.CoilsRead(3, (True, False, True)), rtu.CoilWritten(3, 4, True),
    rtu.CoilsWritten(3, 0, 8), rtu.ExceptionReply(3, rtu.WRITE_COILS, rtu.DEVICE_BUSY),
])
def test_responses_round_trip(response: rtu.Response) -> None:
    requests: dict[type, rtu.Request] = {
        rtu.CoilsRead: rtu.ReadCoils(3, 0, 3), rtu.CoilWritten: rtu.WriteCoil(3, 4, True),
        rtu.CoilsWritten: rtu.WriteCoils(3, 0, (True,) * 8), rtu.ExceptionReply: rtu.WriteCoils(3, 0, (True,)),
    }
    assert rtu.decode_response(requests[type(response)], rtu.encode_response(response)) == response


@pytest.mark.parametrize(("frame", "code"), [
    (seal("0105000a1234"), rtu.ILLEGAL_VALUE),  # FC05 value other than FF00/0000
    (seal("010100000000"), rtu.ILLEGAL_VALUE),  # read zero coils
    (seal("0101000007d1"), rtu.ILLEGAL_VALUE),  # read 2001 coils
    (seal("0101fff00020"), rtu.ILLEGAL_ADDRESS),  # past 65535
    (seal("010f0000000a0103"), rtu.ILLEGAL_VALUE),  # byte count 1 for 10 coils
    (seal("010f0000"), rtu.ILLEGAL_VALUE),  # truncated body
    (seal("0103000000 01".replace(" ", "")), rtu.ILLEGAL_FUNCTION),
])
def test_decode_request_rejections_carry_an_exception_code(frame: bytes, code: int) -> None:
    with pytest.raises(rtu.RequestRejected) as info:
        rtu.decode_request(frame)
    assert info.value.code == code and info.value.unit == 1


def test_decode_request_damage() -> None:
    with pytest.raises(rtu.CrcError):
        rtu.decode_request(h("0105000aff000000"))
    with pytest.raises(ProtocolError, match="short"):
        rtu.decode_request(h("0105"))


# --- switching helpers and timing --------------------------------------------------------------

def test_switch_requests_use_runs_and_leave_gaps_alone() -> None:
    got = rtu.switch_requests(2, (0, 1, 2, 5, 7, 8), True)
    assert got == [rtu.WriteCoils(2, 0, (True,) * 3), rtu.WriteCoil(2, 5, True), rtu.WriteCoils(2, 7, (True,) * 2)]
    assert rtu.coil_runs(()) == []


def test_readback_request_and_mismatch() -> None:
    read = rtu.readback_request(2, (3, 5, 6))
    assert read == rtu.ReadCoils(2, 3, 4)
    back = rtu.CoilsRead(2, (True, False, False, True))  # coil 4 is not ours; 5 did not switch
    assert rtu.not_switched((3, 5, 6), True, back, read.address) == [5]
    assert rtu.not_switched((3, 5, 6), False, back, read.address) == [3, 6]


def test_line_timing() -> None:
    assert rtu.char_bits("E", 1) == rtu.char_bits("N", 2) == 11
    assert rtu.char_bits("N", 1) == 10
    assert rtu.wire_time(8, 19200) == pytest.approx(8 * 11 / 19200)
    assert rtu.silence_time(19200) == pytest.approx(3.5 * 11 / 19200)
    assert rtu.silence_time(9600, 10) == pytest.approx(3.5 * 10 / 9600)
    assert rtu.silence_time(38400) == 0.00175  # fixed above 19,200 baud


def test_crc_and_bits_agree_with_pymodbus_byte_for_byte() -> None:
    """Our CRC and bit packing (the codec imports no driver library) against pymodbus's own."""
    import random

    from pymodbus.framer.rtu import FramerRTU
    from pymodbus.pdu.utils import pack_bitstring, unpack_bitstring

    rng = random.Random(7)
    for size in list(range(0, 40)) + [255, 256, 1000]:
        data = bytes(rng.randrange(256) for _ in range(size))
        assert rtu.crc16(data) == FramerRTU.compute_CRC(data).to_bytes(2, "big"), data.hex()
    for count in range(1, 70):
        coils = tuple(rng.random() < 0.5 for _ in range(count))
        assert rtu.pack_bits(coils) == pack_bitstring(list(coils))
        assert rtu.unpack_bits(rtu.pack_bits(coils), count) == coils == tuple(
            unpack_bitstring(pack_bitstring(list(coils)))[:count])
