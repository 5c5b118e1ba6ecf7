"""SMS text for SMPP: data coding by content, concatenation, and delivery-receipt text.

Pure functions, no I/O. ``encode_text`` uses the GSM 03.38 default alphabet (unpacked
septets, data_coding 0) when every character has a septet and UCS-2 big-endian (data_coding
8) otherwise, which Kazakh and Russian always need; a text longer than one short message
(160 septets / 70 UTF-16 units) is split at 153 septets / 67 units per part, each part
behind an 8-bit-reference concatenation UDH (esm_class 0x40), never inside an escape pair
or a surrogate pair. ``parse_receipt`` reads the de-facto receipt text of SMPP 3.4
Appendix B. Re-exported by ``gateway.protocols.smpp_pdu``.
"""

from __future__ import annotations

import functools
import re

import msgspec

from gateway.errors import ProtocolError

CODING_GSM = 0x00
CODING_LATIN1 = 0x03
CODING_UCS2 = 0x08
ESM_UDHI = 0x40
ESM_DELIVERY_RECEIPT = 0x04
_LIMITS = {CODING_GSM: (160, 153), CODING_UCS2: (140, 134)}  # octets: whole message, one part after the UDH

_GSM_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
                  "|": 0x40, "€": 0x65}
# str.translate into septets; characters outside the alphabet become U+FFFF so one isascii()
# tells whether the text is GSM (ASCII ones like the backtick would otherwise pass through).
_GSM_ENCODE: dict[int, str] = {code: "\uffff" for code in range(128)}
_GSM_ENCODE.update({ord(ch): chr(septet) for septet, ch in enumerate(_GSM_BASIC) if septet != 0x1B})
_GSM_ENCODE.update({ord(ch): "\x1b" + chr(code) for ch, code in _GSM_EXTENSION.items()})
_GSM_DECODE = {septet: ch for septet, ch in enumerate(_GSM_BASIC)}
_GSM_DECODE_EXT = {code: ch for ch, code in _GSM_EXTENSION.items()}


class EncodedText(msgspec.Struct, frozen=True):
    """A text ready for submit_sm: one short_message per part (each with its UDH if several)."""

    data_coding: int
    esm_class: int
    parts: list[bytes]


def gsm_encode(text: str) -> bytes | None:
    """Unpacked GSM 03.38 septets (one per octet, extension characters as ESC pairs), or None
    when a character has no septet."""
    septets = text.translate(_GSM_ENCODE)
    return septets.encode("ascii") if septets.isascii() else None


def gsm_decode(data: bytes) -> str:
    out = []
    escape = False
    for octet in data:
        if escape:
            out.append(_GSM_DECODE_EXT.get(octet, " "))  # 3GPP 23.038: unknown extension -> space
            escape = False
        elif octet == 0x1B:
            escape = True
        else:
            out.append(_GSM_DECODE.get(octet, "?"))
    return "".join(out)


def _split(encoded: bytes, size: int, coding: int) -> list[bytes]:
    parts = []
    pos = 0
    while pos < len(encoded):
        cut = min(pos + size, len(encoded))
        if cut < len(encoded):
            # Never split an ESC pair (GSM) or a surrogate pair (UCS-2) across two parts.
            if coding == CODING_GSM and encoded[cut - 1] == 0x1B:
                cut -= 1
            elif coding == CODING_UCS2 and 0xD8 <= encoded[cut - 2] <= 0xDB:
                cut -= 2
        parts.append(encoded[pos:cut])
        pos = cut
    return parts


@functools.lru_cache(maxsize=256)
def _chunks(text: str) -> tuple[int, tuple[bytes, ...]]:
    # A warning goes to a million people in two or three languages: encode each text once.
    raw = gsm_encode(text)
    coding = CODING_GSM
    if raw is None:
        raw, coding = text.encode("utf-16-be"), CODING_UCS2
    whole, part = _LIMITS[coding]
    return coding, (raw,) if len(raw) <= whole else tuple(_split(raw, part, coding))


def encode_text(text: str, *, ref: int) -> EncodedText:
    """GSM when every character has a septet, else UCS-2; split with an 8-bit-reference
    concatenation UDH (``ref`` 0..255, chosen by the caller per message) when too long for one
    short message. Raises ValueError beyond 255 parts."""
    coding, chunks = _chunks(text)
    if len(chunks) == 1:
        return EncodedText(coding, 0, [chunks[0]])
    if len(chunks) > 255:
        raise ValueError(f"text needs {len(chunks)} parts; concatenation allows 255")
    header = bytes((5, 0x00, 3, ref & 0xFF, len(chunks)))
    return EncodedText(coding, ESM_UDHI, [header + bytes((i,)) + c for i, c in enumerate(chunks, 1)])


def text_units(text: str) -> tuple[int, int]:
    """(data_coding, units): septets for GSM, UTF-16 code units for UCS-2 (what templates budget)."""
    raw = gsm_encode(text)
    return (CODING_GSM, len(raw)) if raw is not None else (CODING_UCS2, len(text.encode("utf-16-be")) // 2)


class Concat(msgspec.Struct, frozen=True):
    """A concatenation header: part ``seq`` of ``total`` of message ``ref``."""

    ref: int
    total: int
    seq: int


def split_udh(short_message: bytes) -> tuple[Concat | None, bytes]:
    """Strip a user data header; return its concatenation element (8- or 16-bit reference) if any."""
    if not short_message or 1 + short_message[0] > len(short_message):
        raise ProtocolError("UDH length runs past the short message")
    end = 1 + short_message[0]
    pos, concat = 1, None
    while pos + 2 <= end:
        iei, length = short_message[pos], short_message[pos + 1]
        value = short_message[pos + 2:pos + 2 + length]
        if iei == 0x00 and length == 3:
            concat = Concat(value[0], value[1], value[2])
        elif iei == 0x08 and length == 4:
            concat = Concat(int.from_bytes(value[:2], "big"), value[2], value[3])
        pos += 2 + length
    return concat, short_message[end:]


def decode_text(data_coding: int, payload: bytes) -> str:
    """The characters of a short message body (UDH already removed)."""
    if data_coding == CODING_UCS2:
        return payload.decode("utf-16-be", errors="replace")
    if data_coding in (CODING_LATIN1, 0x01):
        return payload.decode("latin-1")
    return gsm_decode(payload)


# --- delivery receipts (SMPP 3.4 Appendix B) -------------------------------------------

MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN",
                  8: "REJECTD"}
STATE_CODES = {name: code for code, name in MESSAGE_STATES.items()}
FINAL_FAILURES = frozenset({"EXPIRED", "DELETED", "UNDELIV", "UNKNOWN", "REJECTD"})


class DeliveryReceipt(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    stat: str
    err: str = ""
    sub: str = ""
    dlvrd: str = ""
    submit_date: str = ""
    done_date: str = ""
    text: str = ""


_RECEIPT_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.IGNORECASE)


def parse_receipt(text: str) -> DeliveryReceipt:
    """Parse "id:… sub:… dlvrd:… submit date:… done date:… stat:DELIVRD err:… text:…".

    Keys are matched case-insensitively and in any order (SMSCs differ). Raises ProtocolError
    when ``id`` or ``stat`` is missing."""
    head, _, rest = text.partition(" text:")
    if not rest and text.lower().startswith("text:"):
        head, rest = "", text[5:]
    fields = {key.lower().replace(" ", "_"): value for key, value in _RECEIPT_FIELD.findall(head)}
    if "id" not in fields or "stat" not in fields:
        raise ProtocolError(f"not a delivery receipt: {text[:80]!r}")
    return DeliveryReceipt(message_id=fields["id"], stat=fields["stat"].upper(), err=fields.get("err", ""),
                           sub=fields.get("sub", ""), dlvrd=fields.get("dlvrd", ""),
                           submit_date=fields.get("submit_date", ""), done_date=fields.get("done_date", ""),
                           text=rest)


def format_receipt(r: DeliveryReceipt) -> str:
    """The receipt text an SMSC puts in a deliver_sm short_message."""
    return (f"id:{r.message_id} sub:{r.sub or '001'} dlvrd:{r.dlvrd or '001'} submit date:{r.submit_date} "
            f"done date:{r.done_date} stat:{r.stat} err:{r.err or '000'} text:{r.text[:20]}")
