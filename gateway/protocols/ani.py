"""ANI: the caller's number and name as received, normalised for Kazakhstan (pure).

Kazakhstan shares country code +7 with Russia; national numbers have 10 digits and are dialled
domestically with trunk prefix 8. Whatever arrives, the dispatcher must still get the call:
normalisation never raises, it flags.
"""

from __future__ import annotations

import re
import unicodedata

from gateway.protocols.caller import Caller
from gateway.settings import AniConfig

WITHHELD_WORDS = {"", "anonymous", "restricted", "private", "unavailable", "unknown", "withheld", "s"}
MAX_RAW = 64
MAX_NAME = 48
# Kazakh mobile (70x, 747, 75x, 76x, 77x) and geographic (7xx) ranges all start with 7 after +7.
KZ_NATIONAL = re.compile(r"^7\d{9}$")


def normalise(raw_number: str, display_name: str, presentation: str = "", cfg: AniConfig = AniConfig()) -> Caller:
    """Build a Caller from whatever the network delivered."""
    flags: list[str] = []
    printable = _printable(raw_number)
    raw = printable[:MAX_RAW]
    if printable != raw_number:
        flags.append("number_control_chars")  # NUL, bidi overrides, zero-width: shown differently than stored
    if len(raw_number) > MAX_RAW:
        flags.append("number_too_long")
    name, name_flags = sanitise_name(display_name)
    flags.extend(name_flags)
    restricted = presentation.startswith("prohib") or presentation.startswith("unavailable")
    if raw.strip().lower() in WITHHELD_WORDS:
        return Caller(raw_number=raw, number="", display_name=name, withheld=True, flags=flags + ["withheld"])
    number, number_flags = e164(raw, cfg)
    flags.extend(number_flags)
    if restricted:
        flags.append("presentation_restricted")
    return Caller(raw_number=raw, number=number, display_name=name, withheld=restricted, flags=flags)


def e164(raw: str, cfg: AniConfig = AniConfig()) -> tuple[str, list[str]]:
    """E.164 form of a number (``+7...``) and flags; "" when the digits make no sense."""
    text = raw.strip()
    text = re.sub(r"^sips?:", "", text).split("@")[0].split(";")[0]
    stripped = re.sub(r"[\s().\-/]", "", text)
    if not re.fullmatch(r"\+?\d+", stripped):
        return "", ["number_not_numeric"]
    cc, trunk, n = cfg.country_code, cfg.trunk_prefix, cfg.national_length
    if stripped.startswith("+"):
        digits = stripped[1:]
        return _international(digits, cc, n)
    if stripped.startswith("00"):
        return _international(stripped[2:], cc, n)
    if stripped.startswith("810"):  # the old post-Soviet international prefix
        return _international(stripped[3:], cc, n)
    if len(stripped) == n + 1 and stripped.startswith(trunk):
        return _checked(cc, stripped[1:])
    if len(stripped) == n + 1 and stripped.startswith(cc):
        return _checked(cc, stripped[1:])
    if len(stripped) == n:
        return _checked(cc, stripped)
    if len(stripped) <= 6:
        return "", ["short_number"]
    return "", ["number_unrecognised"]


def _international(digits: str, cc: str, n: int) -> tuple[str, list[str]]:
    if not 7 <= len(digits) <= 15:
        return "", ["number_bad_length"]
    if digits.startswith(cc):  # country codes are prefix-free: this is a home number
        if len(digits) != len(cc) + n:
            return "", ["number_bad_length"]
        return _checked(cc, digits[len(cc):])
    return "+" + digits, ["foreign_number"]


def _checked(cc: str, national: str) -> tuple[str, list[str]]:
    flags = [] if cc != "7" or KZ_NATIONAL.match(national) else ["not_kazakhstan_range"]
    return f"+{cc}{national}", flags


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())


def sanitise_name(name: str) -> tuple[str, list[str]]:
    """A display name safe to show and store: no control characters, markup or SIP escapes."""
    flags: list[str] = []
    text = unicodedata.normalize("NFC", name)
    text = text.replace('\\"', '"').replace("\\\\", "\\")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    cleaned = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in text)
    if cleaned != text:
        flags.append("name_control_chars")
    without_markup = re.sub(r"[<>]", "", cleaned)
    if without_markup != cleaned:
        flags.append("name_markup")
    collapsed = " ".join(without_markup.split())
    if len(collapsed) > MAX_NAME:
        flags.append("name_truncated")
        collapsed = collapsed[:MAX_NAME].rstrip()
    if collapsed.lower() in WITHHELD_WORDS:
        collapsed = ""
    return collapsed, flags
