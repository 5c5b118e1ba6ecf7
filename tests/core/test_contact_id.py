"""Ademco Contact ID (SIA DC-05): checksums worked by hand, every error path, classification, DTMF audio round trip.

Digit values for the checksum: 1-9 are themselves, 0 is worth 10, hex B-F are 11-15 (DTMF keys
* # A B C). A message is valid when its 16 values add up to a multiple of 15.
"""

from __future__ import annotations

import math
import random
import wave
from pathlib import Path
from typing import get_args

import msgspec
import pytest

from gateway.errors import ProtocolError
from gateway.protocols import contact_id
from gateway.protocols.contact_id import (
    EVENT_CODES,
    ChecksumError,
    ContactIdError,
    DigitError,
    FieldError,
    MessageLengthError,
    MessageTypeError,
    QualifierError,
    checksum_digit,
    describe,
    encode,
    is_restore,
    is_test,
    parse,
)
from sim import contact_id as panel

# 1234 18 1 131 01 015 S, perimeter burglary, partition 1, zone 15:
#   1+2+3+4 = 10, 1+8 = 9, Q 1, 1+3+1 = 5, "01" = 10+1, "015" = 10+1+5 -> 10+9+1+5+11+16 = 52
#   52 mod 15 = 7, so S = 15 - 7 = 8 and the sum becomes 60.
BURGLARY = "1234181131010158"
# The same with Q 3 (restore): 52 + 2 = 54, 54 mod 15 = 9, S = 6.
BURGLARY_RESTORE = "1234183131010156"
# 1234 18 1 602 00 000 S, periodic test: 10+9+1+(6+10+2)+(10+10)+(10+10+10) = 88, mod 15 = 13, S = 2.
PERIODIC_TEST = "1234181602000002"
# Zone 002 instead of 000: 88 - 10 + 2 = 80, mod 15 = 5, S = 10, which is sent as "0".
CHECKSUM_ZERO = "1234181602000020"
# Account 1236 instead of 1234: 88 + 2 = 90, already a multiple of 15. No digit is worth 0, so S = F (15),
# dialled as DTMF key C.
CHECKSUM_F_DTMF = "123618160200000C"
CHECKSUM_F_HEX = "123618160200000F"
# Account B2E4 (hex; values 11+2+14+4 = 31), panic 120, partition 01, zone 006:
#   31 + 9 + 1 + (1+2+10) + (10+1) + (10+10+6) = 91, mod 15 = 1, S = 14 = E.
# Hex B is dialled as *, hex E as DTMF B.
PANIC_HEX_ACCOUNT_DTMF = "*2B418112001006B"
PANIC_HEX_ACCOUNT_HEX = "B2E418112001006E"


# --- parsing good messages ------------------------------------------------------------------


def test_burglary_message_decodes_field_by_field() -> None:
    event = parse(BURGLARY)
    assert event == contact_id.ContactIdEvent(
        account="1234",
        message_type="18",
        qualifier="new",
        code="131",
        description="Perimeter burglary",
        category="burglary",
        partition="01",
        zone_or_user="015",
        raw=BURGLARY,
    )
    assert not is_test(event) and not is_restore(event)


def test_restore_is_recognised() -> None:
    event = parse(BURGLARY_RESTORE)
    assert event.qualifier == "restore" and event.code == "131"
    assert is_restore(event) and not is_test(event)


def test_periodic_test_report_is_a_test_not_an_emergency() -> None:
    event = parse(PERIODIC_TEST)
    assert (event.code, event.category, event.description) == ("602", "test", "Periodic test report")
    assert is_test(event) and not is_restore(event)


def test_checksum_worth_ten_is_sent_as_zero() -> None:
    assert checksum_digit(CHECKSUM_ZERO[:15]) == "0"
    assert parse(CHECKSUM_ZERO).zone_or_user == "002"


def test_checksum_of_a_sum_already_divisible_by_15_is_f() -> None:
    assert checksum_digit(CHECKSUM_F_DTMF[:15]) == "C"
    assert checksum_digit(CHECKSUM_F_HEX[:15], alphabet="hex") == "F"
    assert parse(CHECKSUM_F_DTMF) == msgspec.structs.replace(parse(CHECKSUM_F_HEX, alphabet="hex"), raw=CHECKSUM_F_DTMF)


def test_hex_account_reads_the_same_in_dtmf_keys_and_hex_notation() -> None:
    from_dtmf = parse(PANIC_HEX_ACCOUNT_DTMF)
    from_hex = parse(PANIC_HEX_ACCOUNT_HEX, alphabet="hex")
    assert from_dtmf.account == from_hex.account == "B2E4"
    assert (from_dtmf.code, from_dtmf.category, from_dtmf.zone_or_user) == ("120", "panic", "006")
    assert from_dtmf.raw == PANIC_HEX_ACCOUNT_DTMF and from_hex.raw == PANIC_HEX_ACCOUNT_HEX
    assert parse(PANIC_HEX_ACCOUNT_DTMF.lower()) == from_dtmf


def test_alphabet_conversion_both_ways() -> None:
    assert contact_id.dtmf_to_hex(PANIC_HEX_ACCOUNT_DTMF) == PANIC_HEX_ACCOUNT_HEX
    assert contact_id.hex_to_dtmf(PANIC_HEX_ACCOUNT_HEX) == PANIC_HEX_ACCOUNT_DTMF
    assert contact_id.hex_to_dtmf("0123456789BCDEF") == "0123456789*#ABC"
    with pytest.raises(DigitError, match="'A' at position 1"):
        contact_id.hex_to_dtmf("A")  # there is no hex A: 0 already stands for ten


def test_message_type_98_and_status_qualifier() -> None:
    # 1234 98 6 302 01 000 S: 10 + (9+8) + 6 + (3+10+2) + (10+1) + 30 = 89, mod 15 = 14, S = 1.
    event = parse("1234986302010001")
    assert (event.message_type, event.qualifier, event.description, event.category) == (
        "98",
        "status",
        "Low system battery",
        "trouble",
    )


def test_opening_and_closing_by_user() -> None:
    # 1234 18 1 401 01 003 S: 10+9+1+(4+10+1)+(10+1)+(10+10+3) = 69, mod 15 = 9, S = 6.
    opening = parse("1234181401010036")
    # Q 3: 71, mod 15 = 11, S = 4 (the qualifier's +2 comes off the checksum).
    closing = parse("1234183401010034")
    assert opening.category == closing.category == "opening/closing"
    assert opening.zone_or_user == "003"  # user 3
    assert (opening.qualifier, closing.qualifier) == ("new", "restore")
    assert is_restore(closing) and not is_restore(opening)


# --- error paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("digits", ["", BURGLARY[:15], BURGLARY + "0", BURGLARY * 2])
def test_wrong_length(digits: str) -> None:
    with pytest.raises(MessageLengthError, match=f"has {len(digits)} digits; it must have 16"):
        parse(digits)


@pytest.mark.parametrize(
    "digits, bad",
    [
        ("12341811310101D8", "'D' at position 15"),  # DTMF D is never sent
        ("12E4181131010158", "'E' at position 3"),  # hex notation fed as DTMF
        ("1234 18113101015", "' ' at position 5"),
        ("x234181131010158", "'X' at position 1"),
    ],
)
def test_bad_characters_name_the_character_and_position(digits: str, bad: str) -> None:
    with pytest.raises(DigitError, match=bad) as caught:
        parse(digits)
    assert "0-9 * # A B C" in str(caught.value)


def test_hex_alphabet_rejects_dtmf_only_keys() -> None:
    with pytest.raises(DigitError, match=r"'\*' at position 1.*'A' at position 2"):
        parse("*A34181131010158", alphabet="hex")


def test_bad_checksum_says_expected_and_got() -> None:
    garbled = BURGLARY[:15] + "7"
    with pytest.raises(ChecksumError) as caught:
        parse(garbled)
    assert (caught.value.expected, caught.value.got) == ("8", "7")
    assert "checksum digit is '7' but should be '8'" in str(caught.value)
    assert "add up to 59" in str(caught.value)


def test_every_single_digit_substitution_is_caught() -> None:
    # Any one digit changed moves the sum by -14..14 but not 0, so never onto another multiple of 15.
    keys = "0123456789*#ABC"
    for position, original in enumerate(BURGLARY):
        for key in keys.replace(original, ""):
            garbled = BURGLARY[:position] + key + BURGLARY[position + 1 :]
            with pytest.raises(ChecksumError):
                parse(garbled)


def test_unknown_message_type() -> None:
    # 1234 17 ...: 10 + 8 + 1 + 5 + 11 + 16 = 51, mod 15 = 6, S = 9: the checksum is right, the type is not.
    with pytest.raises(MessageTypeError, match="message type '17' is not 18 or 98"):
        parse("1234171131010159")


def test_unknown_qualifier() -> None:
    # Q 2: 53, mod 15 = 8, S = 7.
    with pytest.raises(QualifierError, match="qualifier '2' is not 1"):
        parse("1234182131010157")


def test_every_error_is_a_protocol_error() -> None:
    for error in (MessageLengthError, DigitError, ChecksumError, MessageTypeError, QualifierError, FieldError):
        assert issubclass(error, ContactIdError) and issubclass(error, ProtocolError)


def test_checksum_digit_needs_exactly_15_valid_digits() -> None:
    with pytest.raises(MessageLengthError, match="covers 15 digits, got 16"):
        checksum_digit(BURGLARY)
    with pytest.raises(DigitError, match="'F' at position 15"):
        checksum_digit("12341811310101F")


# --- encoding ----------------------------------------------------------------------------


def test_encode_computes_the_checksum() -> None:
    assert encode("1234", 131, "new", 1, 15) == BURGLARY
    assert encode("1234", "131", "restore", "01", "015") == BURGLARY_RESTORE
    assert encode(1234, 602) == PERIODIC_TEST
    assert encode("1236", 602) == CHECKSUM_F_DTMF
    assert encode("1236", 602, alphabet="hex") == CHECKSUM_F_HEX
    assert encode("b2e4", 120, "new", 1, 6) == PANIC_HEX_ACCOUNT_DTMF
    assert encode("1234", 302, "status", 1, 0, message_type="98") == "1234986302010001"


@pytest.mark.parametrize("qualifier", ["new", "restore", "status"])
@pytest.mark.parametrize("code", sorted(EVENT_CODES))
def test_encode_then_parse_round_trips(code: str, qualifier: contact_id.Qualifier) -> None:
    message = encode("7C0B", code, qualifier, 3, 127)
    event = parse(message)
    assert (event.account, event.code, event.qualifier, event.partition, event.zone_or_user) == (
        "7C0B",
        code,
        qualifier,
        "03",
        "127",
    )
    assert (event.description, event.category) == EVENT_CODES[code]


@pytest.mark.parametrize(
    "fields, complaint",
    [
        ({"account": "12345"}, "account '12345' must be exactly 4 digits"),
        ({"account": "12A4"}, "account '12A4' must be exactly 4 digits of 0-9 B-F"),
        ({"account": 10000}, "account 10000 does not fit in 4"),
        ({"code": 1300}, "code 1300 does not fit in 3"),
        ({"code": "13"}, "code '13' must be exactly 3"),
        ({"partition": 100}, "partition 100 does not fit in 2"),
        ({"partition": -1}, "partition -1 does not fit"),
        ({"zone_or_user": 1000}, "zone_or_user 1000 does not fit in 3"),
        ({"zone_or_user": True}, "zone_or_user must be a string of 3 digits or an integer"),
    ],
)
def test_encode_rejects_fields_that_cannot_be_sent(fields: dict[str, object], complaint: str) -> None:
    args: dict[str, object] = {"account": "1234", "code": 120} | fields
    with pytest.raises(FieldError, match=complaint):
        encode(**args)  # type: ignore[arg-type]


def test_encode_rejects_unknown_message_type_and_qualifier() -> None:
    with pytest.raises(MessageTypeError, match="'17' is not 18 or 98"):
        encode("1234", 120, message_type="17")
    with pytest.raises(QualifierError, match="'opening' is not one of"):
        encode("1234", 120, "opening")  # type: ignore[arg-type]


# --- the event code table -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code, category",
    [
        ("100", "medical"), ("101", "medical"), ("110", "fire"), ("120", "panic"), ("121", "duress"),
        ("122", "panic"), ("123", "panic"), ("130", "burglary"), ("131", "burglary"), ("132", "burglary"),
        ("133", "burglary"), ("134", "burglary"), ("137", "tamper"), ("150", "hazard"), ("151", "hazard"),
        ("162", "hazard"), ("301", "trouble"), ("302", "trouble"), ("350", "trouble"),
        ("401", "opening/closing"), ("402", "opening/closing"), ("403", "opening/closing"), ("570", "bypass"),
        ("601", "test"), ("602", "test"), ("603", "test"), ("627", "other"), ("628", "other"),
    ],
)  # fmt: skip
def test_common_codes_are_in_the_table(code: str, category: str) -> None:
    assert code in EVENT_CODES
    assert EVENT_CODES[code][1] == category
    assert not EVENT_CODES[code][0].startswith("Unknown")


def test_gas_and_silent_panic_descriptions() -> None:
    assert describe("151") == ("Gas detected", "hazard")
    assert describe("122") == ("Silent panic", "panic")


@pytest.mark.parametrize(
    "code, category",
    [
        ("109", "medical"),
        ("119", "fire"),
        ("129", "panic"),
        ("148", "burglary"),
        ("164", "hazard"),
        ("199", "other"),
        ("299", "trouble"),
        ("399", "trouble"),
        ("499", "opening/closing"),
        ("599", "bypass"),
        ("650", "other"),  # the 6xx group also announces listen-ins: an unknown 6xx is never guessed to be a test
        ("699", "other"),
        ("998", "other"),
        ("B00", "other"),
    ],
)
def test_unknown_codes_are_described_by_their_group(code: str, category: str) -> None:
    description, got = describe(code)
    assert got == category
    assert description.startswith(f"Unknown event {code}")


@pytest.mark.parametrize(
    ("code", "description", "category"),
    [
        ("441", "Armed STAY", "opening/closing"), ("442", "Keyswitch armed STAY", "opening/closing"),
        ("459", "Recent close", "opening/closing"), ("163", "Tank level", "hazard"), ("341", "Expansion module tamper",
        "tamper"), ("147", "Sensor supervision failure", "burglary"), ("200", "Fire supervisory", "trouble"),
        ("423", "Forced access", "other"), ("521", "Bell 1 disable", "bypass"), ("613", "Intrusion zone walk tested",
        "test"), ("911", "Bypass closing", "opening/closing"),
    ],
)  # fmt: skip
def test_codes_once_unknown_are_in_the_dc05_table(code: str, description: str, category: str) -> None:
    assert describe(code) == (description, category)


def test_the_table_is_well_formed() -> None:
    allowed = set(get_args(contact_id.Category))
    for code, (description, category) in EVENT_CODES.items():
        assert len(code) == 3 and code.isdigit() and description and not description.startswith("Unknown")
        assert category in allowed
    assert len(EVENT_CODES) == 231  # every code of the DC-05 list as spandsp publishes it, Ademco 9xx included
    alarm_group = {category for code, (_, category) in EVENT_CODES.items() if code.startswith("1")}
    assert alarm_group <= {"medical", "fire", "panic", "duress", "burglary", "tamper", "hazard", "trouble"}


def test_known_and_unknown_alarm_codes() -> None:
    armed_stay = parse(encode("3182", "441", "restore", 1, 4))
    assert contact_id.is_known(armed_stay) and not contact_id.is_unknown_alarm(armed_stay)
    for code in ("170", "199", "1B0", "1F5"):
        event = parse(encode("3182", code, "new", 1, 4, alphabet="hex"), alphabet="hex")
        assert not contact_id.is_known(event) and contact_id.is_unknown_alarm(event)
        assert event.description.startswith(f"Unknown event {code}")
    for code in ("2B0", "4B2", "700", "998"):
        event = parse(encode("3182", code, "new", 1, 4, alphabet="hex"), alphabet="hex")
        assert not contact_id.is_known(event) and not contact_id.is_unknown_alarm(event)


def test_listen_in_to_follow_is_not_a_test() -> None:
    assert describe("606") == ("Listen-in to follow", "other")


def test_program_mode_is_neither_a_test_nor_a_restore() -> None:
    # 1234 18 1 627 00 000 S: 10+9+1+(6+2+7)+20+30 = 85, mod 15 = 10, S = 5.
    event = parse("1234181627000005")
    assert event.description == "Program mode entered"
    assert not is_test(event) and not is_restore(event)


# --- the simulated panel: messages and DTMF audio --------------------------------------------

ROWS = (697, 770, 852, 941)
COLS = (1209, 1336, 1477, 1633)
KEYS = ("123A", "456B", "789C", "*0#D")
BLOCK = 205  # 25.6 ms at 8 kHz: bins ~39 Hz apart separate the DTMF rows (73 Hz and more apart)


def _goertzel(block: list[int], freq: float, rate: int) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _decode_dtmf(samples: list[int], rate: int = 8000) -> str:
    """Label each 25.6 ms block with a key (or nothing), then keep the first block of each run of one key."""
    energies = [sum(x * x for x in samples[i : i + BLOCK]) for i in range(0, len(samples) - BLOCK + 1, BLOCK)]
    loud = max(energies) / 5
    labels: list[str | None] = []
    for n, energy in enumerate(energies):
        block = samples[n * BLOCK : (n + 1) * BLOCK]
        label = None
        if energy >= loud:
            rows = [_goertzel(block, f, rate) for f in ROWS]
            cols = [_goertzel(block, f, rate) for f in COLS]
            r, c = rows.index(max(rows)), cols.index(max(cols))
            # both tones must stand 10 dB clear of the others in their group
            if all(rows[r] > 10 * p for i, p in enumerate(rows) if i != r) and all(
                cols[c] > 10 * p for i, p in enumerate(cols) if i != c
            ):
                label = KEYS[r][c]
        labels.append(label)
    out, previous = [], None
    for label in labels:
        if label is not None and label != previous:
            out.append(label)
        previous = label
    return "".join(out)


def test_panel_message_is_a_valid_checksummed_message() -> None:
    message = panel.panel_message("1234", 120)
    # 1234 18 1 120 01 001 S: 10+9+1+(1+2+10)+(10+1)+(10+10+1) = 65, mod 15 = 5, S = 10, sent as "0".
    assert message == "1234181120010010"
    event = parse(message)
    assert (event.category, event.partition, event.zone_or_user) == ("panic", "01", "001")
    assert parse(panel.panel_message("1234", 120, "restore", partition=2, zone=7)).qualifier == "restore"
    with pytest.raises(FieldError):
        panel.panel_message("1234", 120, zone=1000)


def test_tone_and_gap_follow_dc05_timing() -> None:
    assert 50 <= panel.TONE_MS <= 60 and 50 <= panel.GAP_MS <= 60
    samples = panel.dtmf_samples("5")
    per_ms = panel.SAMPLE_RATE // 1000
    assert len(samples) == (panel.TONE_MS + panel.GAP_MS) * per_ms
    tone, gap = samples[: panel.TONE_MS * per_ms], samples[panel.TONE_MS * per_ms :]
    assert set(gap) == {0}
    assert max(map(abs, tone)) > 0.5 * panel.LEVEL * 32767
    assert max(map(abs, tone)) <= 2 * panel.LEVEL * 32767
    assert abs(tone[0]) < 200 and abs(tone[-1]) < 200  # ramped edges, no click


@pytest.mark.parametrize(
    "message",
    [
        BURGLARY,
        PERIODIC_TEST,
        CHECKSUM_ZERO,
        CHECKSUM_F_DTMF,
        PANIC_HEX_ACCOUNT_DTMF,
        # 1234 18 1 122 01 111 S: 10+9+1+(1+2+2)+(10+1)+(1+1+1) = 39, mod 15 = 9, S = 6. Runs of equal keys.
        "1234181122011116",
    ],
)
def test_dtmf_audio_decodes_back_to_the_message(message: str) -> None:
    heard = _decode_dtmf(panel.dtmf_samples(message))
    assert heard == message
    assert parse(heard) == parse(message)


def test_every_dtmf_key_decodes_even_at_the_edges_of_the_timing_window() -> None:
    keys = "".join(KEYS)
    for tone_ms, gap_ms in ((50, 50), (60, 60), (50, 60)):
        assert _decode_dtmf(panel.dtmf_samples(keys, tone_ms=tone_ms, gap_ms=gap_ms)) == keys


def test_dtmf_audio_survives_line_noise() -> None:
    noise = random.Random(7)
    clean = panel.dtmf_samples(BURGLARY)
    noisy = [x + round(noise.gauss(0, 300)) for x in clean]  # about 27 dB below each tone
    assert _decode_dtmf(noisy) == BURGLARY


def test_dtmf_samples_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="no DTMF key for 'E', 'X'"):
        panel.dtmf_samples("12EX")
    with pytest.raises(ValueError, match="level"):
        panel.dtmf_samples("1", level=0.6)
    with pytest.raises(ValueError, match="must be positive"):
        panel.dtmf_samples("1", tone_ms=0)


def test_panel_audio_leaves_room_for_handshake_and_kissoff() -> None:
    first, second = panel.panel_message("1234", 120), panel.panel_message("1234", 120, "restore")
    audio = panel.panel_audio([first, second])
    per_ms = panel.SAMPLE_RATE // 1000
    message_len = 16 * (panel.TONE_MS + panel.GAP_MS) * per_ms
    assert len(audio) == (panel.LEAD_IN_MS + panel.KISSOFF_WAIT_MS) * per_ms + 2 * message_len
    assert set(audio[: panel.LEAD_IN_MS * per_ms]) == {0}
    assert _decode_dtmf(audio) == first + second


def test_wav_file_holds_8khz_16bit_mono_that_decodes(tmp_path: Path) -> None:
    samples = panel.dtmf_samples(PANIC_HEX_ACCOUNT_DTMF)
    path = panel.write_wav(tmp_path / "panel.wav", samples)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == len(samples)
        frames = wav.readframes(wav.getnframes())
    read_back = [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, len(frames), 2)]
    assert read_back == samples
    assert parse(_decode_dtmf(read_back)).account == "B2E4"
