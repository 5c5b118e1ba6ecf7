"""Mobile-originated SMS over SMPP 3.4: what a deliver_sm that is not a receipt says (pure, no I/O).

Theory of operation: an SMSC hands an ESME the texts people send to its number as deliver_sm
with message type 0 in esm_class bits 2-5 (receipts and acknowledgements use the other types).
``decode_mo`` turns one such PDU into an ``MoPart``: sender, characters and, for a part of a
concatenated message, its reference (from a UDH or the sar_* TLVs). ``Reassembler`` joins the
parts of one message by (sender, reference, total); a message whose parts stop coming is still
handed over after ``max_age_s`` with the gaps marked, because a text to 112 is never thrown away.

An SMSC that did not get our deliver_sm_resp sends the deliver_sm again. SMPP 3.4 gives a
mobile-originated message no id of its own; an SMSC that names it puts its message id in
``receipted_message_id``, and a text carries the id of the part whose arrival completed it (the one
whose answer waits on the gateway, so the one an SMSC resends), for ``protocols.replay``.

Decoding never raises: a data_coding we cannot read, or a UDH that runs past the message,
becomes a visible marker in the text plus a flag, so the dispatcher still sees that *something*
arrived from that number. ``mo_pdus`` builds the deliver_sm an SMSC would send (for ``sim.smsc``).
"""

from __future__ import annotations

import codecs

import msgspec

from gateway.errors import ProtocolError
from gateway.protocols import smpp_text as T
from gateway.protocols.smpp_pdu_types import DeliverSm

ESM_TYPE_MASK = 0x3C  # esm_class bits 2-5: the message type
ESM_TYPE_DEFAULT = 0x00  # an ordinary (mobile-originated) message
CODING_IA5 = 0x01
CODING_BINARY = (0x02, 0x04)
CODING_CYRILLIC = 0x06
MAX_PENDING = 1000  # concatenation groups waiting for parts; the oldest is handed over beyond this
GAP = "[…]"


class MoPart(msgspec.Struct, frozen=True, kw_only=True):
    """One deliver_sm's text; ``concat`` is set for a part of a longer message."""

    sender: str
    destination: str
    text: str
    concat: T.Concat | None = None
    flags: tuple[str, ...] = ()
    message_id: str = ""  # the SMSC's, when it gives one


class MoText(msgspec.Struct, frozen=True, kw_only=True):
    """A whole message (or what arrived of it, ``complete`` false)."""

    sender: str
    destination: str
    text: str
    parts: int = 1
    complete: bool = True
    flags: tuple[str, ...] = ()
    message_id: str = ""  # the SMSC's id of the part that arrived last ("" if it gives none)


def is_mobile_originated(pdu: DeliverSm) -> bool:
    """True for a person's text, false for receipts and SME acknowledgements."""
    return pdu.esm_class & ESM_TYPE_MASK == ESM_TYPE_DEFAULT


def decode_mo(pdu: DeliverSm) -> MoPart:
    """The text of one mobile-originated deliver_sm. Never raises (see the module docstring)."""
    flags: list[str] = []
    body = pdu.message_payload if pdu.message_payload is not None else pdu.short_message
    concat: T.Concat | None = None
    if pdu.esm_class & T.ESM_UDHI and body:
        try:
            concat, body = T.split_udh(body)
        except ProtocolError:  # keep the octets as they came
            flags.append("bad_udh")
    if concat is None and pdu.sar_msg_ref_num is not None and pdu.sar_total_segments and pdu.sar_segment_seqnum:
        concat = T.Concat(pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum)
    if concat is not None and not 1 <= concat.seq <= concat.total:
        flags.append("bad_concat")
        concat = None
    text = decode_body(pdu.data_coding, body, flags)
    return MoPart(sender=pdu.source_addr, destination=pdu.destination_addr, text=text, concat=concat,
                  flags=tuple(flags), message_id=pdu.receipted_message_id or "")


def decode_body(data_coding: int, body: bytes, flags: list[str]) -> str:
    """Characters of a message body by SMPP 3.4 data_coding (5.2.19) and the GSM 03.38 coding groups."""
    coding = _alphabet(data_coding)
    if coding == T.CODING_UCS2:
        if len(body) % 2:
            flags.append("odd_ucs2_length")
        return body.decode("utf-16-be", errors="replace")
    if coding == T.CODING_GSM:
        return T.gsm_decode(body)
    if coding in (T.CODING_LATIN1, CODING_IA5):
        return body.decode("latin-1")
    if coding == CODING_CYRILLIC:
        return codecs.decode(body, "iso8859_5")
    flags.append(f"data_coding_0x{data_coding:02x}")
    return f"[undecodable SMS: data_coding 0x{data_coding:02X}, {len(body)} octets: {body[:70].hex()}]"


def _alphabet(data_coding: int) -> int | None:
    if data_coding in (T.CODING_GSM, CODING_IA5, T.CODING_LATIN1, CODING_CYRILLIC, T.CODING_UCS2):
        return data_coding
    group = data_coding & 0xF0
    if group == 0xF0:  # data coding / message class: bit 2 says 8-bit data, else the default alphabet
        return None if data_coding & 0x04 else T.CODING_GSM
    if group == 0x10:  # GSM general data coding with a message class, uncompressed (0x2X/0x3X are compressed)
        return {0x00: T.CODING_GSM, 0x08: T.CODING_UCS2}.get(data_coding & 0x0C)
    if group in (0xC0, 0xD0):  # message waiting indication, default alphabet
        return T.CODING_GSM
    if group == 0xE0:  # message waiting indication, UCS-2
        return T.CODING_UCS2
    return None


class _Group:
    __slots__ = ("first_at", "parts", "flags", "destination", "last_id")

    def __init__(self, first_at: float, destination: str) -> None:
        self.first_at, self.destination = first_at, destination
        self.parts: dict[int, str] = {}
        self.flags: set[str] = set()
        self.last_id = ""


class Reassembler:
    """Joins concatenated parts. Times are the caller's clock (seconds), so tests need no loop."""

    def __init__(self, max_age_s: float = 120.0, max_pending: int = MAX_PENDING) -> None:
        self.max_age_s, self.max_pending = max_age_s, max_pending
        self._groups: dict[tuple[str, int, int], _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, part: MoPart, now: float) -> tuple[MoText | None, list[MoText]]:
        """The message ``part`` completes (itself, when not a part of one), and any older ones
        handed over unfinished to keep the number of waiting groups bounded."""
        if part.concat is None or part.concat.total <= 1:
            return MoText(sender=part.sender, destination=part.destination, text=part.text, flags=part.flags,
                          message_id=part.message_id), []
        key = (part.sender, part.concat.ref, part.concat.total)
        group = self._groups.get(key)
        pushed_out: list[MoText] = []
        if group is None:
            if len(self._groups) >= self.max_pending:
                pushed_out.append(self._flush(next(iter(self._groups))))
            group = self._groups[key] = _Group(now, part.destination)
        if part.concat.seq in group.parts:
            group.flags.add("duplicate_part")  # an SMSC retry: the first copy stands
        else:
            group.parts[part.concat.seq] = part.text
            group.last_id = part.message_id
        group.flags.update(part.flags)
        return (self._flush(key) if len(group.parts) == part.concat.total else None), pushed_out

    def expire(self, now: float) -> list[MoText]:
        """Messages whose missing parts waited longer than ``max_age_s``: handed over with gaps marked."""
        old = [key for key, g in self._groups.items() if now - g.first_at >= self.max_age_s]
        return [self._flush(key) for key in old]

    def _flush(self, key: tuple[str, int, int]) -> MoText:
        group = self._groups.pop(key)
        sender, _, total = key
        text = "".join(group.parts.get(i, GAP) for i in range(1, total + 1))
        complete = len(group.parts) == total
        flags = sorted(group.flags | (set() if complete else {"parts_missing"}))
        return MoText(sender=sender, destination=group.destination, text=text, parts=total, complete=complete,
                      flags=tuple(flags), message_id=group.last_id)


def mo_pdus(source: str, destination: str, text: str, *, ref: int, data_coding: int | None = None,
            body: bytes | None = None) -> list[DeliverSm]:
    """The deliver_sm PDUs (sequence 0) an SMSC sends for a text a handset sent: encoded and split
    like submit_sm, or ``body`` as given with ``data_coding`` (to drill codings we cannot read)."""
    if body is not None:
        return [DeliverSm(sequence=0, source_addr_ton=1, source_addr_npi=1, source_addr=source,
                          destination_addr=destination, data_coding=data_coding or 0, short_message=body)]
    encoded = T.encode_text(text, ref=ref)
    coding = encoded.data_coding if data_coding is None else data_coding
    return [DeliverSm(sequence=0, source_addr_ton=1, source_addr_npi=1, source_addr=source,
                      destination_addr=destination, esm_class=encoded.esm_class, data_coding=coding,
                      short_message=part) for part in encoded.parts]
