"""SMS segment arithmetic: GSM 03.38 septets vs UCS-2 units, single and concatenated limits,
escape and surrogate pairs never cut across parts."""

from __future__ import annotations

import random

import pytest

from gateway.warning.sms import Segments, encoding, is_gsm7, overflow, segments, split, to_gsm, units

GSM_BASIC_SAMPLE = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡AZÄÖÑÜ§¿azäöñüà"
GSM_EXTENDED = "^{}\\[~]|€\f"


def test_empty_text_is_one_empty_gsm_segment() -> None:
    assert segments("") == Segments("GSM-7", 0, 1, 160)
    assert split("") == [""]


@pytest.mark.parametrize(
    ("length", "expected"),
    [(1, (1, 160)), (160, (1, 160)), (161, (2, 153)), (306, (2, 153)), (307, (3, 153)), (459, (3, 153)),
     (460, (4, 153))],
)
def test_gsm_limits(length: int, expected: tuple[int, int]) -> None:
    got = segments("a" * length)
    assert (got.encoding, got.units) == ("GSM-7", length)
    assert (got.segments, got.per_segment) == expected


@pytest.mark.parametrize(
    ("length", "expected"),
    [(1, (1, 70)), (70, (1, 70)), (71, (2, 67)), (134, (2, 67)), (135, (3, 67)), (201, (3, 67)), (202, (4, 67))],
)
def test_ucs2_limits(length: int, expected: tuple[int, int]) -> None:
    got = segments("қ" * length)
    assert (got.encoding, got.units) == ("UCS-2", length)
    assert (got.segments, got.per_segment) == expected


def test_the_whole_basic_alphabet_is_one_septet_each() -> None:
    assert is_gsm7(GSM_BASIC_SAMPLE)
    assert units(GSM_BASIC_SAMPLE) == len(GSM_BASIC_SAMPLE)


@pytest.mark.parametrize("ch", list(GSM_EXTENDED))
def test_extension_characters_cost_two_septets(ch: str) -> None:
    assert segments(ch) == Segments("GSM-7", 2, 1, 160)
    assert segments(ch * 80) == Segments("GSM-7", 160, 1, 160)
    assert segments(ch * 80 + "a") == Segments("GSM-7", 161, 2, 153)


def test_an_extension_character_tips_a_full_message_into_two_parts() -> None:
    assert segments("a" * 158 + "€").segments == 1
    assert segments("a" * 159 + "€") == Segments("GSM-7", 161, 2, 153)


def test_an_escape_pair_is_never_cut_across_parts() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = split(text)
    assert parts == ["a" * 152, "€" + "b" * 10]
    assert all(units(p) <= 153 for p in parts)


def test_a_pushed_escape_pair_can_cost_an_extra_part() -> None:
    # 459 septets fit 3 x 153 arithmetically, but the first part ends one short of 153.
    text = "a" * 152 + "€" + "a" * 305
    assert units(text) == 459
    assert segments(text) == Segments("GSM-7", 459, 4, 153)
    assert [units(p) for p in split(text)] == [152, 153, 153, 1]


@pytest.mark.parametrize("ch", list("әғқңөұүһіӘҒҚҢӨҰҮҺІ") + list("аяЁжЩъ"))
def test_kazakh_and_cyrillic_letters_force_ucs2(ch: str) -> None:
    assert encoding("Alert " + ch) == "UCS-2"
    assert segments("a" * 69 + ch) == Segments("UCS-2", 70, 1, 70)


@pytest.mark.parametrize("ch", ["`", "ç", "ё", "—", "«", "’", "\u00a0"])
def test_characters_outside_the_gsm_alphabet_force_ucs2(ch: str) -> None:
    assert encoding("abc" + ch) == "UCS-2"


def test_an_extension_character_is_one_unit_in_ucs2() -> None:
    assert segments("€қ") == Segments("UCS-2", 2, 1, 70)


def test_emoji_is_a_surrogate_pair_of_two_units() -> None:
    assert segments("🚨") == Segments("UCS-2", 2, 1, 70)
    assert segments("a" * 68 + "🚨") == Segments("UCS-2", 70, 1, 70)
    assert segments("a" * 69 + "🚨") == Segments("UCS-2", 71, 2, 67)


def test_a_surrogate_pair_is_never_cut_across_parts() -> None:
    text = "қ" * 66 + "🚨" + "қ" * 10
    parts = split(text)
    assert parts == ["қ" * 66, "🚨" + "қ" * 10]
    for part in parts:
        part.encode("utf-16-le")  # no lone surrogate
        assert len(part.encode("utf-16-le")) // 2 <= 67


def test_split_reassembles_and_agrees_with_the_count() -> None:
    rng = random.Random(1402)
    alphabet = "aб€🚨қ {}\n" + GSM_BASIC_SAMPLE
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 500)))
        parts = split(text)
        measured = segments(text)
        assert "".join(parts) == text
        assert measured.segments == len(parts)
        enc = measured.encoding
        limit = measured.per_segment
        for part in parts:
            size = sum(2 if (enc == "GSM-7" and c in GSM_EXTENDED) or ord(c) > 0xFFFF else 1 for c in part)
            assert size <= limit


def test_overflow_is_exactly_what_must_be_cut() -> None:
    text = "ж" * 300  # 5 parts of 67
    assert overflow(text, 4) == 300 - 4 * 67
    assert segments(text[: -overflow(text, 4)]).segments == 4
    assert segments(text[: -overflow(text, 4) + 1]).segments == 5
    assert overflow("ж" * 10, 1) == 0


def test_overflow_counts_pairs_pushed_to_the_next_part() -> None:
    text = "a" * 152 + "€" + "a" * 305  # 459 septets in 4 parts (see above)
    assert overflow(text, 3) == 1
    assert segments(text[:-1]).segments == 3


def test_typography_is_folded_only_when_it_makes_the_text_gsm() -> None:
    assert to_gsm("It’s a “drill” – stay calm…") == "It's a \"drill\" - stay calm..."
    assert encoding(to_gsm("Flood — move uphill")) == "GSM-7"
    assert to_gsm("Сигнал «Внимание всем!» — слушайте радио") == "Сигнал «Внимание всем!» — слушайте радио"
    assert to_gsm("plain") == "plain"
