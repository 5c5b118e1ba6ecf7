"""Warning recipients: people who get public warnings, with their addresses, language, home zones
and channel preference. Parsing and validation are pure; a bad row is reported, never fatal.

CSV columns (header row required, order free): ``ref, name, phone, email, telegram, language,
zones, channels``. ``zones`` and ``channels`` are ``;``-separated; ``channels`` is the order of
preference among ``sms, email, telegram, voice`` (the first reachable one is used, the next ones
are the fail-over).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.protocols.ani import e164
from gateway.protocols.text import repair

Kind = Literal["sms", "email", "telegram", "voice"]
KINDS: tuple[Kind, ...] = ("sms", "email", "telegram", "voice")
LANGUAGES = ("kk", "ru", "en")
COLUMNS = ("ref", "name", "phone", "email", "telegram", "language", "zones", "channels")
REQUIRED = ("ref", "language", "zones", "channels")
MAX_ROWS = 5_000_000
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
TELEGRAM_RE = re.compile(r"^-?\d{1,20}$")
REF_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
LIMITS = {"name": 200, "email": 254, "telegram": 64}  # as Recipient's Meta says, for CSV rows too


class Recipient(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One person warnings reach. ``flags`` says what was repaired on the way in (``control_chars`` in a
    field: NUL, bidi overrides, zero-width characters dropped), set by us, never taken from a client."""

    ref: Annotated[str, Meta(max_length=64)]
    name: Annotated[str, Meta(max_length=200)] = ""
    phone: Annotated[str, Meta(max_length=32)] = ""
    email: Annotated[str, Meta(max_length=254)] = ""
    telegram: Annotated[str, Meta(max_length=64)] = ""
    language: Literal["kk", "ru", "en"]
    zones: Annotated[list[Annotated[str, Meta(max_length=100)]], Meta(max_length=100)]
    channels: Annotated[list[Kind], Meta(max_length=10)]
    flags: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=20)] = []


class RowError(msgspec.Struct, frozen=True, kw_only=True):
    row: int
    ref: str
    problem: str


def problems(r: Recipient, known_zones: Iterable[str]) -> list[str]:
    """Why a recipient cannot be stored (empty when fine)."""
    found: list[str] = [f"{field}: at most {most} characters" for field, most in LIMITS.items()
                        if len(getattr(r, field)) > most]
    if not REF_RE.match(r.ref):
        found.append("ref: expected 1-64 letters, digits or _.:-")
    unknown = [z for z in r.zones if z not in set(known_zones)]
    if not r.zones:
        found.append("zones: expected at least one home zone")
    elif unknown:
        found.append(f"zones: unknown zone {unknown[0]!r}")
    if not r.channels:
        found.append("channels: expected at least one of sms, email, telegram, voice")
    for kind in r.channels:
        if not address_of(r, kind):
            found.append(f"channels: {kind} preferred but no {_field(kind)} given")
    if r.email and not EMAIL_RE.match(r.email):
        found.append(f"email: not an e-mail address: {r.email[:60]!r}")
    if r.telegram and not TELEGRAM_RE.match(r.telegram):
        found.append("telegram: expected a numeric chat id")
    if len(r.name) > 200:
        found.append("name: longer than 200 characters")
    return found


def normalised(r: Recipient, known_zones: Iterable[str]) -> tuple[Recipient, list[str]]:
    """A recipient from the API, cleaned as a CSV row would be: E.164 phone, one entry per
    channel, trimmed text; and its problems (empty when it can be stored)."""
    phone = r.phone.strip()
    if phone:
        phone, flags = e164(phone)
        if not phone:
            return r, [f"phone: not a usable number ({', '.join(flags)})"]
    clean = repaired(msgspec.structs.replace(r, phone=phone, channels=list(dict.fromkeys(r.channels))))
    return clean, problems(clean, known_zones)


def repaired(r: Recipient) -> Recipient:
    """Its texts as every path keeps them (``text.repair``: control, bidi and zero-width characters
    dropped), with ``flags`` naming the fields that needed it; the client's own ``flags`` are ignored."""
    fields = {"name": r.name, "email": r.email, "telegram": r.telegram}
    clean = {field: repair(value) for field, value in fields.items()}
    zones = [repair(z) for z in r.zones]
    flags = [f"{field}_{flag}" for field, (_, found) in clean.items() for flag in found]
    flags += [f"zones_{flag}" for flag in sorted({f for _, found in zones for f in found})]
    return msgspec.structs.replace(r, **{field: text for field, (text, _) in clean.items()},
                                   zones=list(dict.fromkeys(z for z, _ in zones if z)), flags=flags)


def address_of(r: Recipient, kind: str) -> str:
    return {"sms": r.phone, "voice": r.phone, "email": r.email, "telegram": r.telegram}.get(kind, "")


def _field(kind: str) -> str:
    return {"sms": "phone", "voice": "phone", "email": "email", "telegram": "telegram chat id"}[kind]


def parse_csv(text: str, known_zones: Iterable[str]) -> tuple[list[Recipient], list[RowError]]:
    """Every good row as a Recipient and every bad row with its line number and problem."""
    good: list[Recipient] = []
    bad: list[RowError] = []
    for item in iter_csv(text, known_zones):
        (good if isinstance(item, Recipient) else bad).append(item)  # type: ignore[arg-type]
    return good, bad


def iter_csv(text: str, known_zones: Iterable[str]) -> Iterator[Recipient | RowError]:
    """Rows one by one, so a million-row file is never held as objects all at once."""
    zones = frozenset(known_zones)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        yield RowError(row=1, ref="", problem=f"header: missing column(s) {', '.join(missing)}; "
                                              f"expected {', '.join(COLUMNS)}")
        return
    reader.fieldnames = header
    seen: set[str] = set()
    n = 1
    try:
        for n, row in enumerate(reader, start=2):
            if n > MAX_ROWS + 1:
                yield RowError(row=n, ref="", problem=f"more than {MAX_ROWS} rows: the rest is ignored")
                return
            yield _unique(_row(n, row, zones), n, seen)
    except csv.Error as exc:  # e.g. an unbalanced quote swallowing the rest of the file
        yield RowError(row=n + 1, ref="", problem=f"CSV syntax: {exc}; the rest of the file is ignored")


def _unique(item: Recipient | RowError, n: int, seen: set[str]) -> Recipient | RowError:
    if isinstance(item, Recipient):
        if item.ref in seen:
            return RowError(row=n, ref=item.ref, problem="ref: duplicate of an earlier row")
        seen.add(item.ref)
    return item


def _row(n: int, row: dict[str | None, str | list[str] | None], zones: frozenset[str]) -> Recipient | RowError:
    if None in row:
        return RowError(row=n, ref=_text(row.get("ref")), problem="more fields than the header has")
    ref = _text(row.get("ref"))
    language = _text(row.get("language")).lower()
    if language not in LANGUAGES:
        return RowError(row=n, ref=ref, problem=f"language: expected kk, ru or en, got {language[:10]!r}")
    channels = [c.strip().lower() for c in _text(row.get("channels")).split(";") if c.strip()]
    wrong = [c for c in channels if c not in KINDS]
    if wrong:
        return RowError(row=n, ref=ref, problem=f"channels: unknown channel {wrong[0][:20]!r}")
    phone = _text(row.get("phone"))
    if phone:
        phone, flags = e164(phone)
        if not phone:
            return RowError(row=n, ref=ref, problem=f"phone: not a usable number ({', '.join(flags)})")
    recipient = repaired(Recipient(
        ref=ref, name=_text(row.get("name")), phone=phone, email=_text(row.get("email")),
        telegram=_text(row.get("telegram")), language=language,  # type: ignore[arg-type]
        zones=[z.strip() for z in _text(row.get("zones")).split(";") if z.strip()],
        channels=list(dict.fromkeys(channels)),  # type: ignore[arg-type]
    ))
    found = problems(recipient, zones)
    return RowError(row=n, ref=ref, problem="; ".join(found)) if found else recipient


def _text(value: str | list[str] | None) -> str:
    return value.strip() if isinstance(value, str) else ""
