"""ANI normalisation for Kazakhstan (+7): numbers, withheld callers and display names."""

from __future__ import annotations

import pytest

from gateway.protocols import ani
from gateway.settings import AniConfig

MOBILE = "+77012345678"


@pytest.mark.parametrize(
    "raw",
    [
        "+77012345678",
        "87012345678",  # trunk prefix 8
        "77012345678",  # country code without +
        "7012345678",  # bare national number
        "0077012345678",  # 00 international prefix
        "81077012345678",  # 810: the old post-Soviet international prefix
        "+7 (701) 234-56-78",
        "8-701-234-56-78",
        "8 701 234 56 78",
        "+7.701.234.56.78",
        "  +77012345678  ",
        "sip:+77012345678@operator.invalid;user=phone",
        "sips:87012345678@operator.invalid",
        "+77012345678;npdi",
    ],
)
def test_kazakh_mobile_in_every_dialled_form_becomes_e164(raw: str) -> None:
    assert ani.e164(raw) == (MOBILE, [])


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("87272123456", "+77272123456"),  # Almaty landline
        ("+77172123456", "+77172123456"),  # Astana landline
        ("87471234567", "+77471234567"),
    ],
)
def test_kazakh_landlines_and_other_ranges_are_not_flagged(raw: str, expected: str) -> None:
    assert ani.e164(raw) == (expected, [])


@pytest.mark.parametrize("raw", ["+74951234567", "84951234567", "0074951234567", "4951234567"])
def test_russian_plus7_number_is_kept_but_flagged_outside_kazakh_range(raw: str) -> None:
    number, flags = ani.e164(raw)
    assert number == "+74951234567"
    assert flags == ["not_kazakhstan_range"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("+4930123456", "+4930123456"),
        ("004930123456", "+4930123456"),
        ("8104930123456", "+4930123456"),
        ("+998901234567", "+998901234567"),
    ],
)
def test_foreign_numbers_keep_their_country_code_and_are_flagged(raw: str, expected: str) -> None:
    assert ani.e164(raw) == (expected, ["foreign_number"])


@pytest.mark.parametrize(
    "raw, flag",
    [
        ("", "number_not_numeric"),
        ("abc", "number_not_numeric"),
        ("+7701abc5678", "number_not_numeric"),
        ("++77012345678", "number_not_numeric"),
        ("+7701234567;8", "number_bad_length"),  # parameters are cut off, the rest is too short
        ("+7495123456", "number_bad_length"),  # +7 is a closed plan: 10 national digits, never "foreign"
        ("+770123456789", "number_bad_length"),
        ("00770123456", "number_bad_length"),
        ("810770123456789", "number_bad_length"),
        ("102", "short_number"),
        ("123456", "short_number"),
        ("+123", "number_bad_length"),
        ("+1234567890123456", "number_bad_length"),
        ("00123", "number_bad_length"),
        ("1234567", "number_unrecognised"),
        ("123456789012", "number_unrecognised"),
    ],
)
def test_unusable_numbers_give_empty_number_and_a_flag(raw: str, flag: str) -> None:
    assert ani.e164(raw) == ("", [flag])


def test_other_country_config_is_honoured() -> None:
    cfg = AniConfig(country_code="49", trunk_prefix="0", national_length=10)
    assert ani.e164("03012345678", cfg) == ("+493012345678", [])
    assert ani.e164("+493012345678", cfg) == ("+493012345678", [])
    assert ani.e164("+77012345678", cfg) == ("+77012345678", ["foreign_number"])


# --- normalise: the whole Caller ---------------------------------------------------------------

def test_normal_caller() -> None:
    caller = ani.normalise("87012345678", "Айгерім", "allowed_not_screened")
    assert caller.number == MOBILE
    assert caller.raw_number == "87012345678"
    assert caller.display_name == "Айгерім"
    assert caller.withheld is False
    assert caller.flags == []


@pytest.mark.parametrize("raw", ["", "anonymous", "Anonymous", " ANONYMOUS ", "restricted", "private",
                                 "unavailable", "unknown", "withheld", "s"])
def test_withheld_number_words(raw: str) -> None:
    caller = ani.normalise(raw, "", "")
    assert caller.withheld is True
    assert caller.number == ""
    assert "withheld" in caller.flags


@pytest.mark.parametrize("pres", ["prohib", "prohib_not_screened", "prohib_passed_screen", "unavailable"])
def test_presentation_restricted_keeps_number_for_the_dispatcher_but_marks_withheld(pres: str) -> None:
    caller = ani.normalise("+77012345678", "Ivan", pres)
    assert caller.number == MOBILE  # emergency services see restricted numbers
    assert caller.withheld is True
    assert "presentation_restricted" in caller.flags


@pytest.mark.parametrize("pres", ["", "allowed", "allowed_passed_screen", "allowed_failed_screen"])
def test_presentation_allowed_is_not_withheld(pres: str) -> None:
    caller = ani.normalise("+77012345678", "Ivan", pres)
    assert caller.withheld is False
    assert "presentation_restricted" not in caller.flags


def test_overlong_number_is_truncated_and_flagged_never_raises() -> None:
    caller = ani.normalise("7" * 500, "x")
    assert len(caller.raw_number) == ani.MAX_RAW
    assert caller.number == ""
    assert "number_too_long" in caller.flags


def test_control_characters_are_removed_from_the_raw_number() -> None:
    caller = ani.normalise("+7701\x00234\x1b5678\n", "")
    assert caller.raw_number == "+77012345678"
    assert all(ch.isprintable() for ch in caller.raw_number)


def test_unusable_number_still_yields_a_caller_with_flags() -> None:
    caller = ani.normalise("<script>", "x", "")
    assert caller.number == ""
    assert caller.withheld is False
    assert caller.flags == ["number_not_numeric"]


def test_name_flags_and_number_flags_are_combined() -> None:
    caller = ani.normalise("+4930123456", "<b>Hans</b>", "prohib")
    assert caller.display_name == "bHans/b"
    assert caller.flags == ["name_markup", "foreign_number", "presentation_restricted"]


# --- display names -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "raw, expected",
    [
        ('"Ivan Petrov"', "Ivan Petrov"),
        ('"Ivan \\"Big\\" Petrov"', 'Ivan "Big" Petrov'),
        ('"back\\\\slash"', "back\\slash"),
        ('"trailing\\\\"', "trailing\\"),
        ('"a\\\\\\"b"', 'a\\"b'),  # escaped backslash followed by escaped quote
        ("Ivan Petrov", "Ivan Petrov"),
        ("  Ivan    Petrov  ", "Ivan Petrov"),
        ('"', '"'),
        ("", ""),
    ],
)
def test_sip_quoting_and_escapes_are_undone(raw: str, expected: str) -> None:
    assert ani.sanitise_name(raw) == (expected, [])


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<script>alert(1)</script>", "scriptalert(1)/script"),
        ("Ivan <sip:evil@x>", "Ivan sip:evil@x"),
        ("<<>>", ""),
    ],
)
def test_markup_brackets_are_removed_and_flagged(raw: str, expected: str) -> None:
    name, flags = ani.sanitise_name(raw)
    assert name == expected
    assert "<" not in name and ">" not in name
    assert flags == ["name_markup"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Ivan\x00Petrov", "Ivan Petrov"),
        ("Ivan\r\nX-Injected: 1", "Ivan X-Injected: 1"),
        ("a\x1b[31mred", "a [31mred"),
        ("evil\u202etxt.exe", "evil txt.exe"),  # right-to-left override (Cf)
        ("zero\u200bwidth", "zero width"),
        ("line\u2028sep", "line sep"),
        ("tab\there", "tab here"),
    ],
)
def test_control_and_format_characters_become_spaces_and_are_flagged(raw: str, expected: str) -> None:
    name, flags = ani.sanitise_name(raw)
    assert name == expected
    assert all(ch.isprintable() for ch in name)
    assert flags == ["name_control_chars"]


def test_overlong_name_is_truncated_and_flagged() -> None:
    name, flags = ani.sanitise_name("Я" * 200)
    assert name == "Я" * ani.MAX_NAME
    assert flags == ["name_truncated"]


def test_truncation_does_not_leave_trailing_space() -> None:
    name, _ = ani.sanitise_name("x" * (ani.MAX_NAME - 1) + " tail")
    assert name == "x" * (ani.MAX_NAME - 1)


def test_name_of_exactly_max_length_is_kept() -> None:
    assert ani.sanitise_name("a" * ani.MAX_NAME) == ("a" * ani.MAX_NAME, [])


@pytest.mark.parametrize("raw", ['"Anonymous"', "anonymous", "Unknown", " withheld "])
def test_placeholder_names_become_empty(raw: str) -> None:
    assert ani.sanitise_name(raw)[0] == ""


def test_names_are_nfc_normalised() -> None:
    decomposed = "Аи\u0306гері\u0301м"  # и + combining breve
    name, _ = ani.sanitise_name(decomposed)
    assert "й" in name
    assert "\u0306" not in name


def test_several_problems_give_several_flags() -> None:
    name, flags = ani.sanitise_name("<b>\x00" + "z" * 100)
    assert set(flags) == {"name_control_chars", "name_markup", "name_truncated"}
    assert len(name) <= ani.MAX_NAME
