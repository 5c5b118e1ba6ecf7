"""SMPP 3.4 PDU bodies: one command's fields to octets and back (pure, no I/O).

Theory of operation: the body is everything after the 16-byte header. ``BODY_ENCODERS``
maps a PDU class to the function that writes its body (C-octet strings checked against the
field limits of SMPP 3.4 section 4, the ``sm_length``-prefixed short message, then TLVs);
``DECODERS`` maps a command id to the class and the function that reads one body through a
``Reader``, a cursor that turns every overrun into a ``PduError`` the caller can answer with
a generic_nack. Unknown TLVs are kept, not refused (SMPP 3.4 section 5.3). The header and
the framing of a byte stream into bodies are ``smpp_pdu``'s.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

from gateway.protocols.smpp_pdu_types import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduError,
    Status,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    _Bind,
    _BindResp,
    _ShortMessage,
)

# TLV tags (SMPP 3.4 section 5.3.2) and how long the fixed-size ones are.
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_USER_MESSAGE_REFERENCE = 0x0204
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_SC_INTERFACE_VERSION = 0x0210
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MESSAGE_STATE = 0x0427
_INT_TLVS = {  # field name -> (tag, size)
    "user_message_reference": (TAG_USER_MESSAGE_REFERENCE, 2),
    "sar_msg_ref_num": (TAG_SAR_MSG_REF_NUM, 2),
    "sar_total_segments": (TAG_SAR_TOTAL_SEGMENTS, 1),
    "sar_segment_seqnum": (TAG_SAR_SEGMENT_SEQNUM, 1),
    "message_state": (TAG_MESSAGE_STATE, 1),
}
_INT_TLV_BY_TAG = {tag: (name, size) for name, (tag, size) in _INT_TLVS.items()}


# --- encoding ---------------------------------------------------------------------------

def _cstr(value: str, limit: int, field: str) -> bytes:
    raw = value.encode("latin-1")
    if len(raw) >= limit:
        raise ValueError(f"{field} longer than {limit - 1} octets: {value!r}")
    return raw + b"\0"


def _encode_bind(p: _Bind) -> bytes:
    return (_cstr(p.system_id, 16, "system_id") + _cstr(p.password, 9, "password")
            + _cstr(p.system_type, 13, "system_type")
            + bytes((p.interface_version, p.addr_ton, p.addr_npi)) + _cstr(p.address_range, 41, "address_range"))


def _encode_bind_resp(p: _BindResp) -> bytes:
    body = _cstr(p.system_id, 16, "system_id")
    if p.sc_interface_version is not None:
        body += struct.pack(">HHB", TAG_SC_INTERFACE_VERSION, 1, p.sc_interface_version)
    return body


def _encode_sm(p: _ShortMessage) -> bytes:
    sm = p.short_message
    if len(sm) > 254:
        raise ValueError(f"short_message is {len(sm)} octets; the limit is 254 (use message_payload)")
    body = b"".join((
        p.service_type.encode("latin-1"), b"\0", bytes((p.source_addr_ton, p.source_addr_npi)),
        _cstr(p.source_addr, 21, "source_addr"), bytes((p.dest_addr_ton, p.dest_addr_npi)),
        _cstr(p.destination_addr, 21, "destination_addr"), bytes((p.esm_class, p.protocol_id, p.priority_flag)),
        p.schedule_delivery_time.encode("latin-1"), b"\0", p.validity_period.encode("latin-1"), b"\0",
        bytes((p.registered_delivery, p.replace_if_present_flag, p.data_coding, p.sm_default_msg_id, len(sm))), sm,
    ))
    if (p.user_message_reference is not None or p.sar_msg_ref_num is not None or p.sar_total_segments is not None
            or p.sar_segment_seqnum is not None or p.message_state is not None):
        for name, (tag, size) in _INT_TLVS.items():
            value = getattr(p, name)
            if value is not None:
                body += struct.pack(">HH", tag, size) + value.to_bytes(size, "big")
    if p.message_payload is not None:
        body += struct.pack(">HH", TAG_MESSAGE_PAYLOAD, len(p.message_payload)) + p.message_payload
    if p.receipted_message_id is not None:
        rid = _cstr(p.receipted_message_id, 65, "receipted_message_id")
        body += struct.pack(">HH", TAG_RECEIPTED_MESSAGE_ID, len(rid)) + rid
    if p.network_error_code is not None:
        body += struct.pack(">HH", TAG_NETWORK_ERROR_CODE, 3) + p.network_error_code
    for tag, value in p.other_tlvs:
        body += struct.pack(">HH", tag, len(value)) + value
    return body


def _encode_message_id(p: SubmitSmResp | DeliverSmResp) -> bytes:
    # SMPP 3.4 4.4.2: a submit_sm_resp carries no body when command_status is non-zero.
    return b"" if p.status and not p.message_id else _cstr(p.message_id, 65, "message_id")


BODY_ENCODERS: dict[type, Callable[..., bytes]] = {
    SubmitSm: _encode_sm, DeliverSm: _encode_sm, SubmitSmResp: _encode_message_id, DeliverSmResp: _encode_message_id,
    BindTransmitter: _encode_bind, BindReceiver: _encode_bind, BindTransceiver: _encode_bind,
    BindTransmitterResp: _encode_bind_resp, BindReceiverResp: _encode_bind_resp, BindTransceiverResp: _encode_bind_resp,
}


# --- decoding ---------------------------------------------------------------------------

class Reader:
    """A cursor over one PDU body in a larger buffer; every overrun is a PduError."""

    __slots__ = ("buf", "pos", "end", "sequence")

    def __init__(self, buf: bytes, pos: int, end: int, sequence: int) -> None:
        self.buf, self.pos, self.end, self.sequence = buf, pos, end, sequence

    def bad(self, what: str) -> PduError:
        return PduError(f"malformed PDU body: {what}", status=Status.ESME_RINVCMDLEN, sequence=self.sequence)

    def cstr(self, field: str) -> str:
        try:
            zero = self.buf.index(0, self.pos, self.end)
        except ValueError:
            raise self.bad(f"{field} is not NUL-terminated") from None
        value = self.buf[self.pos:zero].decode("latin-1")
        self.pos = zero + 1
        return value

    def octets(self, count: int, field: str) -> bytes:
        if self.pos + count > self.end:
            raise self.bad(f"{field} runs past the end of the PDU")
        value = self.buf[self.pos:self.pos + count]
        self.pos += count
        return value

    def tlvs(self) -> list[tuple[int, bytes]]:
        found = []
        while self.pos < self.end:
            if self.pos + 4 > self.end:
                raise self.bad("truncated TLV header")
            tag, length = struct.unpack_from(">HH", self.buf, self.pos)
            self.pos += 4
            found.append((tag, self.octets(length, f"TLV 0x{tag:04X}")))
        return found


def _decode_bind(cls: type[_Bind], r: Reader, status: int) -> Pdu:
    system_id, password, system_type = r.cstr("system_id"), r.cstr("password"), r.cstr("system_type")
    version, ton, npi = r.octets(3, "interface_version")
    return cls(sequence=r.sequence, status=status, system_id=system_id, password=password, system_type=system_type,
               interface_version=version, addr_ton=ton, addr_npi=npi, address_range=r.cstr("address_range"))


def _decode_bind_resp(cls: type[_BindResp], r: Reader, status: int) -> Pdu:
    if r.pos == r.end:  # error responses may omit the body
        return cls(sequence=r.sequence, status=status)
    system_id = r.cstr("system_id")
    version = None
    for tag, value in r.tlvs():
        if tag == TAG_SC_INTERFACE_VERSION and len(value) == 1:
            version = value[0]
    return cls(sequence=r.sequence, status=status, system_id=system_id, sc_interface_version=version)


# The mandatory fields of submit_sm/deliver_sm up to sm_length, matched in one C call: this
# is the hot path of both ends (every submit_sm at the SMSC, every receipt at the driver).
_SM_FIXED = re.compile(rb"([^\0]*)\0(..)([^\0]*)\0(..)([^\0]*)\0(...)([^\0]*)\0([^\0]*)\0(.....)", re.S)
_TLV_HEAD = struct.Struct(">HH")


def _decode_sm(cls: type[_ShortMessage], r: Reader, status: int) -> Pdu:
    buf, end = r.buf, r.end
    m = _SM_FIXED.match(buf, r.pos, end)
    if m is None:
        raise r.bad("mandatory fields run past the end of the PDU")
    service_type, (s_ton, s_npi), source, (d_ton, d_npi), destination, (esm_class, protocol_id, priority), \
        schedule, validity, (registered, replace, coding, default_id, sm_length) = m.groups()
    pos = m.end()
    if pos + sm_length > end:
        raise r.bad("short_message runs past the end of the PDU")
    sm = buf[pos:pos + sm_length]
    pos += sm_length
    fields: dict[str, object] = {}
    others = []
    while pos < end:
        if pos + 4 > end:
            raise r.bad("truncated TLV header")
        tag, length = _TLV_HEAD.unpack_from(buf, pos)
        pos += 4
        if pos + length > end:
            raise r.bad(f"TLV 0x{tag:04X} runs past the end of the PDU")
        value = buf[pos:pos + length]
        pos += length
        known = _INT_TLV_BY_TAG.get(tag)
        if known is not None and length == known[1]:
            fields[known[0]] = int.from_bytes(value, "big")
        elif tag == TAG_RECEIPTED_MESSAGE_ID:
            fields["receipted_message_id"] = value.rstrip(b"\0").decode("latin-1")
        elif tag == TAG_MESSAGE_PAYLOAD:
            fields["message_payload"] = value
        elif tag == TAG_NETWORK_ERROR_CODE and length == 3:
            fields["network_error_code"] = value
        else:  # SMPP 3.4 5.3: unknown optional parameters are ignored, not refused
            others.append((tag, value))
    if others:
        fields["other_tlvs"] = tuple(others)
    return cls(sequence=r.sequence, status=status, service_type=service_type.decode("latin-1"), source_addr_ton=s_ton,
               source_addr_npi=s_npi, source_addr=source.decode("latin-1"), dest_addr_ton=d_ton, dest_addr_npi=d_npi,
               destination_addr=destination.decode("latin-1"), esm_class=esm_class, protocol_id=protocol_id,
               priority_flag=priority, schedule_delivery_time=schedule.decode("latin-1"),
               validity_period=validity.decode("latin-1"), registered_delivery=registered,
               replace_if_present_flag=replace, data_coding=coding, sm_default_msg_id=default_id, short_message=sm,
               **fields)  # type: ignore[arg-type]


def _decode_message_id(cls: type[SubmitSmResp | DeliverSmResp], r: Reader, status: int) -> Pdu:
    if r.pos == r.end:
        return cls(sequence=r.sequence, status=status)
    return cls(sequence=r.sequence, status=status, message_id=r.cstr("message_id"))


def _decode_empty(cls: type[Pdu], r: Reader, status: int) -> Pdu:
    return cls(sequence=r.sequence, status=status)


_BODY_DECODERS: list[tuple[type[Pdu], Callable[..., Pdu]]] = [
        (BindTransmitter, _decode_bind), (BindReceiver, _decode_bind), (BindTransceiver, _decode_bind),
        (BindTransmitterResp, _decode_bind_resp), (BindReceiverResp, _decode_bind_resp),
        (BindTransceiverResp, _decode_bind_resp), (SubmitSm, _decode_sm), (DeliverSm, _decode_sm),
        (SubmitSmResp, _decode_message_id), (DeliverSmResp, _decode_message_id), (EnquireLink, _decode_empty),
        (EnquireLinkResp, _decode_empty), (Unbind, _decode_empty), (UnbindResp, _decode_empty),
        (GenericNack, _decode_empty),
]
DECODERS = {cls.command_id: (cls, fn) for cls, fn in _BODY_DECODERS}
