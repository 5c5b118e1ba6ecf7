"""Asterisk's CEL log as ``cel_custom`` writes it (``dialplans/cel_custom.conf``): bytes in, events out. Pure.

Theory of operation: the log is RFC 4180 CSV, every field quoted and a quote inside a value doubled, one
record per CEL event ending in a newline. A value may hold a newline (a caller number sent as ``%0A``
arrives decoded), so a record is not a line: it is a line beginning with the layout's name
(``"ecgw-cel-1",``) and every following line that does not. No value can forge that beginning: any quote
in a value is written doubled. The last record read so far is whole once its newline ends it outside
quotes (an even number of quote characters, since every field is quoted) or the next record begins;
a torn write (Asterisk killed mid-record) becomes one malformed record when the next one begins.

``Reader.receive_data`` takes bytes as they were read from the file; ``next_row`` hands out each
whole record as a ``CelEvent``, or a ``Malformed`` saying what is wrong with it, or None until more
bytes arrive. ``consumed`` is the file offset just past the last record handed out. Nothing here
raises on what Asterisk (or a caller, through the values) wrote.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re

import msgspec

LAYOUT = "ecgw-cel-1"  # the first column of every row: cel_custom.conf's literal
FIELDS = ("layout", "kind", "user_type", "wall", "unique_id", "linked_id", "channel", "context", "exten", "peer",
          "extra", "number", "name")
MARK = f'"{LAYOUT}",'.encode()
NEXT = b"\n" + MARK
MAX_RECORD = 16 * 1024  # a real row is a few hundred bytes; more without an end is not a row
MAX_VALUE = 1024
KIND = re.compile(r"^[A-Z][A-Z_]{1,31}$")
UNIQUE_ID = re.compile(r"^[0-9A-Za-z_.-]{1,150}$")  # "<epoch>.<n>", with asterisk.conf's systemname before it


class CelEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One CEL event: ``kind`` is the event (``CHAN_START``, ``ANSWER``, ``HANGUP``, ``LINKEDID_END``,
    ``USER_DEFINED``), ``user_type`` a user event's name, ``wall`` seconds since the epoch; ``offset`` is
    where its record starts in the log."""

    offset: int
    kind: str
    user_type: str
    wall: float
    unique_id: str
    linked_id: str
    channel: str
    context: str
    exten: str
    peer: str
    extra: str
    number: str
    name: str

    def extra_fields(self) -> dict[str, object]:
        """The event's extra data (JSON in Asterisk 12 and later), or {} when it has none or is not JSON."""
        try:
            found = json.loads(self.extra) if self.extra else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


class Malformed(msgspec.Struct, frozen=True, kw_only=True):
    """A record that is not a CEL event of our layout: where it starts, why, and its first bytes."""

    offset: int
    reason: str
    excerpt: str


class Reader:
    """Incremental reader of the CEL log: bytes in as read, whole records out (see the module's doc)."""

    def __init__(self, offset: int = 0) -> None:
        self._buf = b""
        self._pos = 0
        self._base = offset  # file offset of _buf[0]
        self.consumed = offset

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole record."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        if self._pos:
            self._base += self._pos
            self._buf, self._pos = self._buf[self._pos:], 0
        self._buf += data

    def next_row(self) -> CelEvent | Malformed | None:
        """The next whole record, or None until more bytes arrive."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return None
        following = buf.find(NEXT, pos)
        if following != -1:
            end = following + 1
        elif buf.endswith(b"\n") and buf.count(b'"', pos) % 2 == 0:
            end = len(buf)
        elif len(buf) - pos > MAX_RECORD:
            end = buf.rfind(b"\n", pos) + 1 or len(buf)  # no record is this long: drop it up to a line's end
        else:
            return None
        self._pos, offset = end, self._base + pos
        self.consumed = self._base + end
        return parse(buf[pos:end], offset)


def parse(record: bytes, offset: int = 0) -> CelEvent | Malformed:
    """One record (with its newline) as a CelEvent, or Malformed with the reason."""
    text = record.decode("utf-8", "replace")
    if not record.startswith(MARK):
        return _bad(offset, text, f"does not begin with the layout {LAYOUT!r} (a torn write, or another layout)")
    if not text.endswith("\n"):
        return _bad(offset, text, "no newline at its end (a torn write)")
    if '""' not in text and text.count("\n") == 1 and text.endswith('"\n'):
        values = text[1:-2].split('","')  # the common row: no quote and no newline inside a value
    else:
        try:
            rows = list(csv.reader(io.StringIO(text[:-1], newline=""), strict=True))
        except csv.Error as exc:
            return _bad(offset, text, f"not CSV: {exc}")
        values = rows[0] if len(rows) == 1 else []
    if len(values) != len(FIELDS):
        return _bad(offset, text, f"expected {len(FIELDS)} fields, found {len(values)}")
    problem = _problem(values, len(text) > MAX_VALUE)
    if problem:
        return _bad(offset, text, problem)
    _, kind, user_type, wall, unique_id, linked_id, channel, context, exten, peer, extra, number, name = values
    return CelEvent(offset=offset, kind=kind, user_type=user_type, wall=float(wall), unique_id=unique_id,
                    linked_id=linked_id, channel=channel, context=context, exten=exten, peer=peer, extra=extra,
                    number=number, name=name)


def _bad(offset: int, text: str, reason: str) -> Malformed:
    return Malformed(offset=offset, reason=reason, excerpt=text[:120])


def _problem(values: list[str], long: bool) -> str:
    """What makes a split record unusable ("" if nothing); ``long``: the record may hold an overlong value."""
    if long:
        for key, value in zip(FIELDS, values, strict=True):
            if len(value) > MAX_VALUE:
                return f"{key} longer than {MAX_VALUE} characters"
    _, kind, _, wall_text, unique_id, linked_id = values[:6]
    if not KIND.match(kind):
        return f"event type {kind[:40]!r} is not an event name"
    try:
        wall = float(wall_text)
    except ValueError:
        return f"event time {wall_text[:40]!r} is not a number"
    if not math.isfinite(wall) or wall <= 0:
        return f"event time {wall_text[:40]!r} is not a time"
    for key, value in (("unique_id", unique_id), ("linked_id", linked_id)):
        if not UNIQUE_ID.match(value):
            return f"{key} {value[:40]!r} is not an Asterisk unique id"
    return ""
