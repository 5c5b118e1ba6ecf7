"""SMS segment arithmetic: which encoding a text needs, how many parts it takes, the parts.

Theory of operation: a text that uses only the GSM 03.38 default alphabet (plus its
extension table) travels as 7-bit septets; anything else forces UCS-2, counted here in
UTF-16 code units because that is what the handset and the SMSC count (a character outside
the Basic Multilingual Plane, such as an emoji, is a surrogate pair: two units). Kazakh and
Russian letters are not in the GSM alphabet, so every kk/ru warning is UCS-2.

A single message holds 160 septets or 70 units. Once a text is longer, every part carries a
6-byte concatenation header (UDH) and holds 153 septets or 67 units. An extension character
is an escape septet followed by its code, and a surrogate pair is two units: neither may be
cut in half across two parts, so a part can end one short of its capacity and the part count
is not always ``ceil(units / capacity)``. ``split`` is therefore the one source of truth and
``segments`` counts what it produces.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, in code order (0x00..0x7F); 0x1B is the escape to the
# extension table and is not a character a text may contain.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_BASIC_SET = frozenset(_GSM_BASIC) - {"\x1b"}
# The extension table: each costs an escape septet plus its own.
_GSM_EXTENDED_SET = frozenset("\f^{}\\[~]|€")

GSM_SINGLE = 160
GSM_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67


class Segments(msgspec.Struct, frozen=True):
    """How a text goes on the wire.

    ``units`` is septets for GSM-7 and UTF-16 code units for UCS-2; ``per_segment`` is the
    capacity of one part (160/70 when the text fits one message, 153/67 when concatenated).
    """

    encoding: Encoding
    units: int
    segments: int
    per_segment: int


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM 03.38 default alphabet or its extension table."""
    return all(ch in _GSM_BASIC_SET or ch in _GSM_EXTENDED_SET for ch in text)


def encoding(text: str) -> Encoding:
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def _cost(ch: str, enc: Encoding) -> int:
    if enc == "GSM-7":
        return 2 if ch in _GSM_EXTENDED_SET else 1
    return 2 if ord(ch) > 0xFFFF else 1


def units(text: str) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text occupies."""
    enc = encoding(text)
    return sum(_cost(ch, enc) for ch in text)


def _limits(enc: Encoding) -> tuple[int, int]:
    return (GSM_SINGLE, GSM_PART) if enc == "GSM-7" else (UCS2_SINGLE, UCS2_PART)


def split(text: str) -> list[str]:
    """The parts of ``text`` as they would be sent: one part if it fits a single message,
    otherwise parts of at most 153 septets / 67 units, never cutting an escape pair or a
    surrogate pair. An empty text is one empty part (an empty SMS is still one message)."""
    enc = encoding(text)
    single, part = _limits(enc)
    if sum(_cost(ch, enc) for ch in text) <= single:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        cost = _cost(ch, enc)
        if used + cost > part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += cost
    if current:
        parts.append("".join(current))
    return parts


def segments(text: str) -> Segments:
    """Encoding, size and part count of ``text`` (see the module docstring for the rules)."""
    enc = encoding(text)
    single, part = _limits(enc)
    size = sum(_cost(ch, enc) for ch in text)
    if size <= single:
        return Segments(enc, size, 1, single)
    return Segments(enc, size, len(split(text)), part)


def capacity(enc: Encoding, parts: int) -> int:
    """The most units ``parts`` segments can carry (ignoring pairs pushed to the next part)."""
    single, part = _limits(enc)
    return single if parts <= 1 else part * parts


def overflow(text: str, max_segments: int) -> int:
    """How many units must go for ``text`` to fit ``max_segments`` parts (0 if it fits).

    Counted from the real split, so an escape or surrogate pair pushed to the next part is
    accounted for: cutting exactly this many units from the end makes the text fit."""
    if segments(text).segments <= max_segments:
        return 0
    enc = encoding(text)
    kept = sum(_cost(ch, enc) for part in split(text)[:max_segments] for ch in part)
    return sum(_cost(ch, enc) for ch in text) - kept


# Typography that word processors put into English text and that would force the whole
# message into UCS-2 (70 instead of 160 characters per part) for no visible gain.
_GSM_FOLD = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
    "–": "-", "—": "-", "−": "-", "…": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ",
})


def to_gsm(text: str) -> str:
    """``text`` with typographic quotes, dashes and spaces replaced by GSM-7 ones, but only
    if that makes the whole text GSM-7; otherwise ``text`` unchanged (Cyrillic stays UCS-2
    anyway, and its «» quotes are kept)."""
    folded = text.translate(_GSM_FOLD)
    return folded if folded != text and is_gsm7(folded) else text
