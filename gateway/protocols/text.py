"""Text from people and other systems made safe to keep and show: one set of rules for every path
(calls' display names aside, which have SIP's own escapes: ``ani.sanitise_name``).

What goes: C0/C1 controls (NUL included), lone surrogates, private-use and unassigned code points, and
format characters such as bidi overrides (U+202E) and zero-width spaces, which make a number or a name
read differently on screen from what is stored. What stays: ZWNJ/ZWJ (emoji sequences and some
scripts need them), and, in multi-line text, line breaks (CR LF, CR, U+2028/2029 become LF).
Everything is NFC. Nothing is cut here: the caller decides whether a text over its limit is refused
(the API) or shortened with a flag (an SMS or a Telegram message, which cannot be sent back).
"""

from __future__ import annotations

import re
import unicodedata

KEEP_FORMAT = frozenset({"\u200c", "\u200d"})  # ZWNJ/ZWJ
DROPPED = frozenset({"Cc", "Cs", "Co", "Cn"})
CONTROL_CHARS = "control_chars"  # the flag a repaired text carries


def repair(text: str, *, lines: bool = False) -> tuple[str, list[str]]:
    """``text`` as we keep it, stripped of surrounding space, and ``["control_chars"]`` when anything
    was dropped or replaced. ``lines``: keep line breaks (a note, a message); else they become spaces."""
    normal = unicodedata.normalize("NFC", _without_surrogates(text).replace("\r\n", "\n").replace("\r", "\n"))
    kept = []
    for ch in normal:
        category = unicodedata.category(ch)
        if ch == "\n" or category in ("Zl", "Zp"):
            kept.append("\n" if lines else " ")
        elif ch == "\t":
            kept.append(" ")
        elif category in DROPPED or (category == "Cf" and ch not in KEEP_FORMAT):
            continue
        else:
            kept.append(ch)
    cleaned = "".join(kept)
    flags = [CONTROL_CHARS] if cleaned != normal else []
    if lines:
        cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in cleaned.split("\n")))
    return cleaned.strip(), flags


def _without_surrogates(text: str) -> str:
    """Lone surrogates (from a JSON ``\\ud800`` escape) cannot be encoded or stored."""
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return text
    return "".join(ch for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF)
