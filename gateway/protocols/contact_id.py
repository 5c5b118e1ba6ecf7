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

Alphabet = Literal["dtmf", "hex"]
Qualifier = Literal["new", "restore", "status"]
Category = Literal[
    "medical",
    "fire",
    "panic",
    "duress",
    "burglary",
    "tamper",
    "hazard",  # gas, CO, water, temperature: the 24-hour non-burglary group
    "trouble",
    "test",
    "opening/closing",
    "bypass",
    "other",
]

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


# Event codes of SIA DC-05 that alarm panels in schools and offices actually send. Anything else
# still decodes, described by its code group (see _GROUPS).
EVENT_CODES: dict[str, tuple[str, Category]] = {
    "100": ("Medical emergency", "medical"),
    "101": ("Personal emergency", "medical"),
    "102": ("Failed to report in", "medical"),
    "110": ("Fire alarm", "fire"),
    "111": ("Smoke detector", "fire"),
    "112": ("Combustion", "fire"),
    "113": ("Sprinkler water flow", "fire"),
    "114": ("Heat detector", "fire"),
    "115": ("Manual fire call point", "fire"),
    "116": ("Duct smoke detector", "fire"),
    "117": ("Flame detector", "fire"),
    "118": ("Fire near alarm", "fire"),
    "120": ("Panic alarm", "panic"),
    "121": ("Duress", "duress"),
    "122": ("Silent panic", "panic"),
    "123": ("Audible panic", "panic"),
    "124": ("Duress: access granted", "duress"),
    "125": ("Duress: egress granted", "duress"),
    "130": ("Burglary", "burglary"),
    "131": ("Perimeter burglary", "burglary"),
    "132": ("Interior burglary", "burglary"),
    "133": ("24-hour burglary (safe)", "burglary"),
    "134": ("Entry/exit burglary", "burglary"),
    "135": ("Day/night burglary", "burglary"),
    "136": ("Outdoor burglary", "burglary"),
    "137": ("Tamper", "tamper"),
    "138": ("Burglary near alarm", "burglary"),
    "139": ("Intrusion verified", "burglary"),
    "140": ("General alarm", "burglary"),
    "144": ("Sensor tamper", "tamper"),
    "145": ("Expansion module tamper", "tamper"),
    "146": ("Silent burglary", "burglary"),
    "150": ("24-hour non-burglary alarm", "hazard"),
    "151": ("Gas detected", "hazard"),
    "152": ("Refrigeration failure", "hazard"),
    "153": ("Loss of heat", "hazard"),
    "154": ("Water leakage", "hazard"),
    "155": ("Foil break", "burglary"),
    "156": ("Day trouble", "trouble"),
    "157": ("Low bottled gas level", "hazard"),
    "158": ("High temperature", "hazard"),
    "159": ("Low temperature", "hazard"),
    "161": ("Loss of air flow", "hazard"),
    "162": ("Carbon monoxide detected", "hazard"),
    "300": ("System trouble", "trouble"),
    "301": ("AC power loss", "trouble"),
    "302": ("Low system battery", "trouble"),
    "305": ("System reset", "trouble"),
    "309": ("Battery test failure", "trouble"),
    "311": ("Battery missing or dead", "trouble"),
    "350": ("Communication trouble", "trouble"),
    "351": ("Telephone line 1 fault", "trouble"),
    "352": ("Telephone line 2 fault", "trouble"),
    "354": ("Failure to communicate event", "trouble"),
    "373": ("Fire loop trouble", "trouble"),
    "380": ("Sensor trouble", "trouble"),
    "381": ("Loss of RF supervision", "trouble"),
    "383": ("Sensor tamper", "tamper"),
    "384": ("RF transmitter low battery", "trouble"),
    "400": ("Open/close", "opening/closing"),
    "401": ("Open/close by user", "opening/closing"),
    "402": ("Group open/close", "opening/closing"),
    "403": ("Automatic open/close", "opening/closing"),
    "406": ("Alarm cancelled by user", "opening/closing"),
    "407": ("Remote arm/disarm", "opening/closing"),
    "408": ("Quick arm", "opening/closing"),
    "409": ("Keyswitch open/close", "opening/closing"),
    "570": ("Zone bypass", "bypass"),
    "571": ("Fire zone bypass", "bypass"),
    "572": ("24-hour zone bypass", "bypass"),
    "573": ("Burglary zone bypass", "bypass"),
    "574": ("Group bypass", "bypass"),
    "601": ("Manual test report", "test"),
    "602": ("Periodic test report", "test"),
    "603": ("Periodic RF transmission", "test"),
    "604": ("Fire test", "test"),
    "605": ("Status report to follow", "other"),
    # AlarmReceiver hangs up its side after kissing off a 606, so the dialplan can open the audio.
    "606": ("Listen-in to follow", "other"),
    "607": ("Walk test mode", "test"),
    "608": ("Periodic test report, trouble present", "test"),
    "627": ("Program mode entered", "other"),
    "628": ("Program mode exited", "other"),
}

# Code groups by prefix, most specific first. An unknown 6xx stays "other", never "test": the group
# also holds 605/606 (a report or a listen-in follows), so guessing "test" could hide a real call.
_GROUPS: tuple[tuple[str, str, Category], ...] = (
    ("10", "medical alarm", "medical"),
    ("11", "fire alarm", "fire"),
    ("12", "panic alarm", "panic"),
    ("13", "burglary", "burglary"),
    ("14", "general alarm", "burglary"),
    ("15", "24-hour non-burglary alarm", "hazard"),
    ("16", "24-hour non-burglary alarm", "hazard"),
    ("1", "alarm", "other"),
    ("2", "supervisory", "trouble"),
    ("3", "trouble", "trouble"),
    ("4", "open/close or access", "opening/closing"),
    ("5", "bypass or disable", "bypass"),
    ("6", "test or miscellaneous", "other"),
)


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
    """English description and category of an event code; unknown codes are described by their group."""
    known = EVENT_CODES.get(code)
    if known is not None:
        return known
    for prefix, group, category in _GROUPS:
        if code.startswith(prefix):
            return f"Unknown event {code} ({group})", category
    return f"Unknown event {code}", "other"


def is_test(event: ContactIdEvent) -> bool:
    """True for test reports (601-604, 607, 608): proof the line works, never an emergency."""
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
