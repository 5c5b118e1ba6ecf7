"""The caller's facts (ANI and ALI) the dialplan hands the gateway once per call, in the Stasis arguments.

Why not ari.conf ``channelvars``: Asterisk copies every listed variable into each new snapshot of the channel
(every dialplan step makes one) and writes them into every event and every ``GET /channels`` row. Ten of them
cost ~1 ms of Asterisk CPU per call (measured, ``bench/intake.py``), more than Stasis itself. Only the
variables adoption needs to find a call stay there (``ECGW_ROLE``, ``ECGW_INCIDENT``).

Theory of operation: the dialplan sets ``ECGW_FACTS`` to ``key=value&key_len=N&...`` (``dialplan_value``) and
passes it as the third Stasis argument. Each value is ``URIENCODE``d, so no comma, quote or backslash is left
for Stasis' argument parser to split on or strip, and cut to a length (``FIELDS``) so the whole line fits
Asterisk's 8 KiB buffer for an application's data (and each encoded value its 4 KiB buffer for a function's
result). ``key_len`` is the variable's whole length in bytes: a value that came cut, garbled or not at all is
listed in ``Facts.missing`` and the gateway reads that variable by REST. A call adopted after a restart has no
StasisStart arguments: the gateway reads ``ECGW_FACTS`` itself by REST, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

# key in the line -> (channel variable, longest value passed inline, in bytes). The longest line:
# 3 * (20 + 40 + 128 + 800 + 40 + 1200 + 100 + 100) + keys and lengths ~ 7.4 KB < 8 KiB.
FIELDS: dict[str, tuple[str, int]] = {
    "svc": ("ECGW_SERVICE", 20),
    "pres": ("ECGW_PRES", 40),
    "cid": ("ECGW_CALL_ID", 128),  # the incident keeps 128 characters of it
    "hdr": ("ECGW_GEOLOC_HDR", 800),
    "fmt": ("ECGW_LOCATION_FORMAT", 40),
    "loc": ("ECGW_LOCATION", 1200),
    "conf": ("ECGW_LOCATION_CONFIDENCE", 100),
    "meth": ("ECGW_LOCATION_METHOD", 100),
}
VARIABLE = "ECGW_FACTS"
# What URIENCODE never writes: a character other than letters, digits, its marks and "%", or a "%" not
# followed by two hex digits. (Two character-class scans: a third of the time of one alternation per character.)
_NOT_ENCODED = re.compile(r"[^A-Za-z0-9\-_.!~*'()%]|%(?![0-9A-Fa-f]{2})")
INLINE_ONLY = frozenset({"cid"})  # only its first 128 characters are ever kept: never read in full


@dataclass
class Facts:
    """Channel variable -> value, and the variables still to be read in full (by REST)."""

    values: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def var(self, name: str) -> str:
        return self.values.get(name, "")

    def fill(self, name: str, value: str) -> None:
        """The whole value of a variable listed in ``missing``, read by REST."""
        self.values[name] = value
        if name in self.missing:
            self.missing.remove(name)


def dialplan_value() -> str:
    """What the dialplan sets ``ECGW_FACTS`` to (Asterisk expressions)."""
    parts = []
    for key, (var, cap) in FIELDS.items():
        parts.append(f"{key}=${{URIENCODE(${{{var}:0:{cap}}})}}")
        parts.append(f"{key}_len=${{LEN(${{{var}}})}}")
    return "&".join(parts)


def parse(line: str | None) -> Facts:
    """The facts in a StasisStart's third argument (or ``ECGW_FACTS`` read by REST); None or "" when there is
    none (an older dialplan, an adopted call): every variable is then missing. Never raises: whatever cannot
    be read is missing, and read in full by REST."""
    pairs = _pairs(line or "")
    facts = Facts()
    for key, (var, _cap) in FIELDS.items():
        value = _value(pairs, key)
        if value is None:
            if key not in INLINE_ONLY or _NOT_ENCODED.search(pairs.get(key, "%")) is not None:
                facts.missing.append(var)
            else:
                facts.values[var] = _text(_bytes(pairs[key]))
            continue
        facts.values[var] = value
    return facts


def _pairs(line: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in line.split("&"):
        key, sep, value = item.partition("=")
        if sep and key not in pairs:
            pairs[key] = value
    return pairs


def _value(pairs: dict[str, str], key: str) -> str | None:
    """The value, if it came whole: its declared length matches what decodes."""
    raw, length = pairs.get(key), pairs.get(f"{key}_len", "")
    if raw is None or not (length.isascii() and length.isdigit()) or _NOT_ENCODED.search(raw) is not None:
        return None
    data = _bytes(raw)
    return _text(data) if len(data) == int(length) else None


def _bytes(raw: str) -> bytes:
    return unquote_to_bytes(raw) if "%" in raw else raw.encode("ascii")  # checked: ASCII only


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
