"""SMPP 3.4 PDU types: what each command carries, as frozen Structs (pure, no I/O).

Theory of operation: one ``Pdu`` subclass per command we speak, its ``command_id`` a class
constant and its mandatory fields and the TLVs we use typed attributes; TLVs we do not know
ride along raw in ``other_tlvs``. The bind, bind response and short-message bodies are shared
by private bases (``_Bind``, ``_BindResp``, ``_ShortMessage``) because the wire layout is the
same for each family. ``Status`` names the command_status codes and ``PduError`` is what a
frame we cannot read raises. Turning these into octets and back is ``smpp_pdu_body`` (one
body) and ``smpp_pdu`` (whole frames on a stream); importers use ``smpp_pdu``, which
re-exports everything here.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import msgspec

from gateway.errors import ProtocolError

INTERFACE_VERSION = 0x34


class Status(enum.IntEnum):
    """command_status values of SMPP 3.4 section 5.1.3."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RINVPRTFLG = 0x06
    ESME_RINVREGDLVFLG = 0x07
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RCANCELFAIL = 0x11
    ESME_RREPLACEFAIL = 0x13
    ESME_RMSGQFUL = 0x14
    ESME_RINVSERTYP = 0x15
    ESME_RINVNUMDESTS = 0x33
    ESME_RINVDLNAME = 0x34
    ESME_RINVDESTFLAG = 0x40
    ESME_RINVSUBREP = 0x42
    ESME_RINVESMCLASS = 0x43
    ESME_RCNTSUBDL = 0x44
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVSRCNPI = 0x49
    ESME_RINVDSTTON = 0x50
    ESME_RINVDSTNPI = 0x51
    ESME_RINVSYSTYP = 0x53
    ESME_RINVREPFLAG = 0x54
    ESME_RINVNUMMSGS = 0x55
    ESME_RTHROTTLED = 0x58
    ESME_RINVSCHED = 0x61
    ESME_RINVEXPIRY = 0x62
    ESME_RINVDFTMSGID = 0x63
    ESME_RX_T_APPN = 0x64
    ESME_RX_P_APPN = 0x65
    ESME_RX_R_APPN = 0x66
    ESME_RQUERYFAIL = 0x67
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_ROPTPARNOTALLWD = 0xC1
    ESME_RINVPARLEN = 0xC2
    ESME_RMISSINGOPTPARAM = 0xC3
    ESME_RINVOPTPARAMVAL = 0xC4
    ESME_RDELIVERYFAILURE = 0xFE
    ESME_RUNKNOWNERR = 0xFF


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED`` for 0x58; vendor codes the table lacks as ``0x00000400``."""
    try:
        return Status(status).name
    except ValueError:
        return f"0x{status:08X}"


class PduError(ProtocolError):
    """The peer sent bytes that are not a PDU we understand.

    ``status`` is what a generic_nack should carry and ``sequence`` the sequence number to
    answer (0 if unknown). ``in_sync`` says whether the bad frame was skipped whole (an
    unknown command id, a malformed body) so decoding can go on, or whether the stream
    cannot be framed any more (a bad command_length) and the connection must be closed.
    """

    def __init__(self, message: str, *, status: int, sequence: int = 0, in_sync: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.sequence = sequence
        self.in_sync = in_sync


# --- PDUs -------------------------------------------------------------------------------

class Pdu(msgspec.Struct, frozen=True, kw_only=True):
    """Header fields every PDU has; ``command_id`` is fixed per class."""

    command_id: ClassVar[int]
    sequence: int
    status: int = 0


class _Bind(Pdu, frozen=True, kw_only=True):
    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


class BindTransmitter(_Bind, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x00000002


class BindReceiver(_Bind, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x00000001


class BindTransceiver(_Bind, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x00000009


class _BindResp(Pdu, frozen=True, kw_only=True):
    system_id: str = ""
    sc_interface_version: int | None = None  # TLV 0x0210


class BindTransmitterResp(_BindResp, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000002


class BindReceiverResp(_BindResp, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000001


class BindTransceiverResp(_BindResp, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000009


class _ShortMessage(Pdu, frozen=True, kw_only=True):
    """The body submit_sm and deliver_sm share, with the TLVs we use typed and others kept raw."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    user_message_reference: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_payload: bytes | None = None
    receipted_message_id: str | None = None
    message_state: int | None = None
    network_error_code: bytes | None = None
    other_tlvs: tuple[tuple[int, bytes], ...] = ()


class SubmitSm(_ShortMessage, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x00000004


class DeliverSm(_ShortMessage, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x00000005


class SubmitSmResp(Pdu, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000004
    message_id: str = ""


class DeliverSmResp(Pdu, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000005
    message_id: str = ""


class EnquireLink(Pdu, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x00000015


class EnquireLinkResp(Pdu, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000015


class Unbind(Pdu, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x00000006


class UnbindResp(Pdu, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000006


class GenericNack(Pdu, frozen=True, kw_only=True):
    command_id: ClassVar[int] = 0x80000000
