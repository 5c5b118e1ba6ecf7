"""Event files written by Asterisk's AlarmReceiver() application. Pure, apart from ``read_event_file``.

Theory of operation: AlarmReceiver answers an alarm panel, collects Contact ID messages (it
checks each checksum and message type before sending the kiss-off tone) and, when the panel hangs
up, writes one file per call into ``eventspooldir``, named ``event-XXXXXX`` (one file per event
with ``logindividualevents = yes``)::

    <two blank lines>
    [metadata]

    PROTOCOL=ADEMCO_CONTACT_ID
    CHECKSUM=yes
    CALLINGFROM=87172123456
    CALLERNAME=School 12
    TIMESTAMP=Mon Mar 04, 2024 @ 10:15:02 +05

    [events]

    1234181131010158

Not every Asterisk version writes CHECKSUM, so unknown metadata keys are ignored. CALLINGFROM and
CALLERNAME are "<unknown>" when caller ID is missing; they are read here as "". TIMESTAMP follows
alarmreceiver.conf's ``timestampformat`` and is kept as text. With ``no_group_meta = yes`` there
are no section headers and each event line reads ``event=1234181131010158``; both layouts are
read. A call that delivered no valid message still leaves a file, with PROTOCOL=UNKNOWN_FORMAT.

Asterisk creates the file before writing it, so a reader must wait until it is closed; a file
cut off before its [events] header raises, and can be read again later.

A bad event line goes into ``errors`` with its line number and the rest of the call is kept: one
garbled message must not hide the panic alarm next to it. Only a file that cannot be a Contact ID
event file at all raises.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from gateway.errors import ProtocolError
from gateway.protocols.contact_id import ContactIdError, ContactIdEvent, parse

SUPPORTED_PROTOCOL = "ADEMCO_CONTACT_ID"
_UNKNOWN = "<unknown>"  # what AlarmReceiver writes when the caller ID has no number or name


class EventFileError(ProtocolError):
    """The text is not a readable AlarmReceiver event file (no [events] section, no PROTOCOL line)."""


class UnsupportedProtocolError(EventFileError):
    """The file holds another Ademco format (Express 4+1, High Speed...) or none was recognised."""

    def __init__(self, source: str, protocol: str) -> None:
        self.protocol = protocol
        why = (
            "AlarmReceiver did not recognise the panel's format, so the call delivered no event"
            if protocol == "UNKNOWN_FORMAT"
            else f"only {SUPPORTED_PROTOCOL} is supported"
        )
        super().__init__(f"{source}: PROTOCOL={protocol}: {why}")


class ReceivedCall(msgspec.Struct, frozen=True, kw_only=True):
    """One alarm panel call as AlarmReceiver recorded it."""

    protocol: str
    calling_from: str  # caller ID number as Asterisk wrote it, "" when unknown
    caller_name: str  # "" when unknown
    timestamp: str  # in alarmreceiver.conf's timestampformat, not parsed
    events: list[ContactIdEvent]  # in the order received; a panel that missed a kiss-off repeats one
    errors: list[str]  # "line N: why" for every line that could not be used


_Lines = list[tuple[int, str]]  # (line number, text)
_Split = tuple[dict[str, str], _Lines, _Lines]  # metadata, event lines, problems


def parse_event_file(text: str, *, source: str = "event file") -> ReceivedCall:
    """Read one event file's text. ``source`` (e.g. the path) prefixes file-level error messages.

    Raises ``EventFileError`` when a sectioned file has no [events] section or there is no
    PROTOCOL line, ``UnsupportedProtocolError`` for any protocol but ADEMCO_CONTACT_ID. Bad
    event lines never raise: they are listed in ``errors``.
    """
    lines = text.removeprefix("\ufeff").splitlines()
    if any(_section(line.strip()) is not None for line in lines):
        metadata, event_lines, errors = _split_sections(lines, source)
    else:
        metadata, event_lines, errors = _split_flat(lines)
    protocol = metadata.get("PROTOCOL")
    if protocol is None:
        raise EventFileError(f"{source}: no PROTOCOL= line, so this is not an AlarmReceiver event file")
    if protocol != SUPPORTED_PROTOCOL:
        raise UnsupportedProtocolError(source, protocol)
    events: list[ContactIdEvent] = []
    for number, digits in event_lines:
        try:
            events.append(parse(digits))
        except ContactIdError as exc:
            errors.append((number, str(exc)))
    return ReceivedCall(
        protocol=protocol,
        calling_from=_known(metadata.get("CALLINGFROM", "")),
        caller_name=_known(metadata.get("CALLERNAME", "")),
        timestamp=metadata.get("TIMESTAMP", ""),
        events=events,
        errors=[f"line {number}: {why}" for number, why in sorted(errors, key=lambda e: e[0])],
    )


def read_event_file(path: str | os.PathLike[str]) -> ReceivedCall:
    """Read and parse the event file at ``path``. Raises ``OSError`` if it cannot be read, else as
    ``parse_event_file``."""
    file = Path(path)
    # Caller names arrive as whatever bytes the network sent; a stray byte must not lose the call.
    return parse_event_file(file.read_text(encoding="utf-8", errors="replace"), source=str(file))


def _split_sections(lines: list[str], source: str) -> _Split:
    metadata: dict[str, str] = {}
    events: _Lines = []
    errors: _Lines = []
    section: str | None = None
    saw_events = False
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        header = _section(line)
        if header is not None:
            section = header.lower()
            saw_events = saw_events or section == "events"
            if section not in ("metadata", "events"):
                errors.append((number, f"unexpected section [{header}]; its lines are ignored"))
        elif section == "events":
            events.append((number, line))
        elif section == "metadata":
            _metadata_line(number, line, metadata, errors)
        elif section is None:
            errors.append((number, f"{line!r} comes before any section"))
    if not saw_events:
        raise EventFileError(
            f"{source}: no [events] section (the file is cut short or was not written by AlarmReceiver)"
        )
    return metadata, events, errors


def _split_flat(lines: list[str]) -> _Split:
    # no_group_meta layout: metadata and "event=" lines, no headers.
    metadata: dict[str, str] = {}
    events: _Lines = []
    errors: _Lines = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "event":
            events.append((number, value.strip()))
        else:
            _metadata_line(number, line, metadata, errors)
    return metadata, events, errors


def _metadata_line(number: int, line: str, metadata: dict[str, str], errors: _Lines) -> None:
    key, sep, value = line.partition("=")
    if not sep or not key.strip():
        errors.append((number, f"metadata line {line!r} is not KEY=value"))
        return
    metadata[key.strip().upper()] = value.strip()


def _section(line: str) -> str | None:
    if len(line) > 2 and line.startswith("[") and line.endswith("]"):
        return line[1:-1].strip()
    return None


def _known(value: str) -> str:
    return "" if value == _UNKNOWN else value
