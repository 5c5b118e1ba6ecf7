"""Ademco Contact ID (SIA DC-05) messages: parse, checksum, encode, classify. Pure: no I/O.

Theory of operation: an alarm panel dials in, the receiver (Asterisk's AlarmReceiver) answers
with a handshake, and the panel sends each event as 16 DTMF digits::

    ACCT MT Q XYZ GG CCC S
    1234 18 1 131 01 015 8

ACCT is the account (4 digits), MT the message type (18, or 98 for old receivers), Q the
qualifier (1 new event or opening, 3 restore or closing, 6 previously reported condition still
present), XYZ the event code, GG the partition (00 = none), CCC the zone, or the user for
opening/closing codes (000 = none), and S the checksum.

Digits are hexadecimal without A: 0-9 and B-F. Digit 0 is worth 10, and S is chosen so that the
values of all 16 digits add up to a multiple of 15. No digit is worth 0, so when the first 15
already add up to a multiple of 15, S is F (15). DTMF has only 16 keys, so the five non-decimal
digits travel as other keys::

    hex notation   B  C  D  E  F     (worth 11-15; DTMF D is never sent)
    DTMF key       *  #  A  B  C

Asterisk writes down the DTMF keys it heard, so ``parse`` reads DTMF keys by default, and
``alphabet="hex"`` reads the notation of panel manuals. B and C mean different values in the two,
so a string is always read in exactly one alphabet. The decoded fields (account, code,
partition, zone) are given in hex notation, the way installers program a panel's account.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.errors import ProtocolError
from gateway.protocols.contact_id_codes import EVENT_CODES as EVENT_CODES
from gateway.protocols.contact_id_codes import GROUPS
from gateway.protocols.contact_id_codes import Category as Category

Alphabet = Literal["dtmf", "hex"]
Qualifier = Literal["new", "restore", "status"]
MESSAGE_LENGTH = 16
MESSAGE_TYPES = ("18", "98")
QUALIFIERS: dict[str, Qualifier] = {"1": "new", "3": "restore", "6": "status"}
_QUALIFIER_DIGITS: dict[str, str] = {name: digit for digit, name in QUALIFIERS.items()}

_DECIMAL = {str(d): d for d in range(1, 10)} | {"0": 10}
_VALUES: dict[Alphabet, dict[str, int]] = {
    "dtmf": _DECIMAL | {"*": 11, "#": 12, "A": 13, "B": 14, "C": 15},
    "hex": _DECIMAL | {"B": 11, "C": 12, "D": 13, "E": 14, "F": 15},
}
_CHARS: dict[Alphabet, dict[int, str]] = {name: {v: c for c, v in table.items()} for name, table in _VALUES.items()}
_SHOWN = {"dtmf": "0-9 * # A B C", "hex": "0-9 B C D E F"}


class ContactIdError(ProtocolError):
    """A Contact ID message, or the fields given to build one, break SIA DC-05."""


class MessageLengthError(ContactIdError):
    """The message is not 16 digits long (or a checksum was asked for other than 15)."""


class DigitError(ContactIdError):
    """The message holds characters that are not Contact ID digits in its alphabet."""


class ChecksumError(ContactIdError):
    """The digits do not add up: the message was garbled on the line. ``expected``/``got`` are checksum digits."""

    def __init__(self, message: str, expected: str, got: str, total: int) -> None:
        self.expected, self.got = expected, got
        super().__init__(
            f"Contact ID message {message!r}: checksum digit is {got!r} but should be {expected!r} "
            f"(digit values add up to {total}, not a multiple of 15)"
        )


class MessageTypeError(ContactIdError):
    """The message type is not Contact ID's 18 or 98."""


class QualifierError(ContactIdError):
    """The qualifier is not 1 (new), 3 (restore) or 6 (status)."""


class FieldError(ContactIdError):
    """``encode`` was given a field that cannot be sent (wrong width, out of range, not a digit)."""


class ContactIdEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded Contact ID message.

    For opening/closing codes (4xx) ``qualifier`` "new" is an opening (disarm) and "restore" a
    closing (arm), and ``zone_or_user`` is the user number.
    """

    account: str  # hex notation, e.g. "1234" or "B2E4"
    message_type: str  # "18" or "98"
    qualifier: Qualifier
    code: str  # three digits, e.g. "120"
    description: str  # English, from the event code table
    category: Category
    partition: str  # two digits, "00" = no specific partition
    zone_or_user: str  # three digits, "000" = no specific zone or user
    raw: str  # the 16 digits as read (upper case, in the alphabet they were read in)


def parse(digits: str, *, alphabet: Alphabet = "dtmf") -> ContactIdEvent:
    """Decode one 16-digit Contact ID message.

    Raises a ``ContactIdError`` (a ``ProtocolError``): ``MessageLengthError``, ``DigitError``,
    ``ChecksumError``, ``MessageTypeError`` or ``QualifierError``, checked in that order.
    """
    text = digits.upper()
    if len(text) != MESSAGE_LENGTH:
        raise MessageLengthError(f"Contact ID message {digits!r} has {len(text)} digits; it must have {MESSAGE_LENGTH}")
    total = sum(_values(text, alphabet, what="Contact ID message"))
    if total % 15:
        raise ChecksumError(text, expected=checksum_digit(text[:15], alphabet=alphabet), got=text[15], total=total)
    fields = text if alphabet == "hex" else dtmf_to_hex(text)
    message_type, qualifier_digit, code = fields[4:6], fields[6], fields[7:10]
    if message_type not in MESSAGE_TYPES:
        raise MessageTypeError(
            f"Contact ID message {text!r}: message type {message_type!r} is not 18 or 98 (another Ademco format?)"
        )
    qualifier = QUALIFIERS.get(qualifier_digit)
    if qualifier is None:
        raise QualifierError(
            f"Contact ID message {text!r}: qualifier {qualifier_digit!r} is not 1 (new), 3 (restore) or 6 (status)"
        )
    description, category = describe(code)
    return ContactIdEvent(
        account=fields[0:4],
        message_type=message_type,
        qualifier=qualifier,
        code=code,
        description=description,
        category=category,
        partition=fields[10:12],
        zone_or_user=fields[12:15],
        raw=text,
    )


def checksum_digit(first15: str, *, alphabet: Alphabet = "dtmf") -> str:
    """The 16th digit that makes ``first15`` a valid message. Raises ``MessageLengthError``, ``DigitError``."""
    text = first15.upper()
    if len(text) != MESSAGE_LENGTH - 1:
        raise MessageLengthError(f"a checksum covers 15 digits, got {len(text)}: {first15!r}")
    remainder = sum(_values(text, alphabet, what="Contact ID digits")) % 15
    return _CHARS[alphabet][15 - remainder]  # remainder 0 gives F: no digit is worth 0


def encode(
    account: str | int,
    code: str | int,
    qualifier: Qualifier = "new",
    partition: str | int = 0,
    zone_or_user: str | int = 0,
    *,
    message_type: str = "18",
    alphabet: Alphabet = "dtmf",
) -> str:
    """Build a checksummed 16-digit message, in DTMF keys (as a panel dials them) unless ``alphabet="hex"``.

    String fields are in hex notation and must have the field's width ("0015" is not a zone);
    integers are written in decimal with leading zeros. Raises ``FieldError``,
    ``MessageTypeError`` or ``QualifierError``.
    """
    if message_type not in MESSAGE_TYPES:
        raise MessageTypeError(f"message type {message_type!r} is not 18 or 98")
    if qualifier not in _QUALIFIER_DIGITS:
        raise QualifierError(f"qualifier {qualifier!r} is not one of {sorted(_QUALIFIER_DIGITS)}")
    body = "".join(
        (
            _field("account", account, 4),
            message_type,
            _QUALIFIER_DIGITS[qualifier],
            _field("code", code, 3),
            _field("partition", partition, 2),
            _field("zone_or_user", zone_or_user, 3),
        )
    )
    if alphabet == "dtmf":
        body = hex_to_dtmf(body)
    return body + checksum_digit(body, alphabet=alphabet)


def describe(code: str) -> tuple[str, Category]:
    """English description and category of an event code (``contact_id_codes``); a code not in the
    table is described by its group, and the description always names the code as received."""
    known = EVENT_CODES.get(code)
    if known is not None:
        return known
    for prefix, group, category in GROUPS:
        if code.startswith(prefix):
            return f"Unknown event {code} ({group})", category
    return f"Unknown event {code}", "other"


def is_known(event: ContactIdEvent) -> bool:
    """True when the event code is in the SIA DC-05 table (``EVENT_CODES``)."""
    return event.code in EVENT_CODES


def is_unknown_alarm(event: ContactIdEvent) -> bool:
    """True for a code of DC-05's alarm group (1xx) that the table does not know: still an alarm."""
    return event.code.startswith("1") and not is_known(event)


def is_test(event: ContactIdEvent) -> bool:
    """True for test reports (601-604, 607, 608, 611-615): proof the line works, never an emergency."""
    return event.category == "test"


def is_restore(event: ContactIdEvent) -> bool:
    """True when the event ends a condition (qualifier 3). For opening/closing codes this is a closing (arm)."""
    return event.qualifier == "restore"


def dtmf_to_hex(digits: str) -> str:
    """Rewrite DTMF keys in hex notation ("*" -> "B", "B" -> "E"). Raises ``DigitError``."""
    return _translate(digits, "dtmf", "hex")


def hex_to_dtmf(digits: str) -> str:
    """Rewrite hex notation as the DTMF keys a panel dials ("B" -> "*", "E" -> "B"). Raises ``DigitError``."""
    return _translate(digits, "hex", "dtmf")


def _translate(digits: str, source: Alphabet, target: Alphabet) -> str:
    text = digits.upper()
    return "".join(_CHARS[target][v] for v in _values(text, source, what="Contact ID digits"))


def _values(text: str, alphabet: Alphabet, *, what: str) -> list[int]:
    table = _VALUES[alphabet]
    bad = [f"{c!r} at position {i}" for i, c in enumerate(text, start=1) if c not in table]
    if bad:
        raise DigitError(
            f"{what} {text!r} has characters outside the {alphabet} alphabet ({_SHOWN[alphabet]}): {', '.join(bad)}"
        )
    return [table[c] for c in text]


def _field(name: str, value: str | int, width: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FieldError(f"{name} must be a string of {width} digits or an integer, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < 10**width:
            raise FieldError(f"{name} {value} does not fit in {width} decimal digits")
        return f"{value:0{width}d}"
    text = value.upper()
    if len(text) != width or any(c not in _VALUES["hex"] for c in text):
        raise FieldError(f"{name} {value!r} must be exactly {width} digits of 0-9 B-F")
    return text
