"""Recipients CSV: good rows kept, every bad row reported with its line and reason."""

from __future__ import annotations

from gateway.warning.recipients import parse_csv

ZONES = ["medeu", "almaly"]
HEADER = "ref,name,phone,email,telegram,language,zones,channels\n"


def test_good_rows_are_normalised() -> None:
    good, bad = parse_csv(HEADER + "a1,Айгерим,8 701 123 45 67,a@mail.kz,,kk,medeu;almaly,sms;email\n", ZONES)
    assert bad == []
    assert good[0].phone == "+77011234567"
    assert good[0].zones == ["medeu", "almaly"] and good[0].channels == ["sms", "email"]


def test_every_bad_row_is_reported_and_good_rows_survive() -> None:
    rows = [
        "ok1,Ok,+77011234567,,,ru,medeu,sms",
        "b1,,+77011234567,,,de,medeu,sms",             # language
        "b2,,12,,,ru,medeu,sms",                         # phone
        "b3,,,not-an-email,,ru,medeu,email",             # e-mail
        "b4,,+77011234567,,,ru,atlantis,sms",            # zone
        "b5,,+77011234567,,,ru,medeu,pigeon",            # channel
        "b6,,,,,ru,medeu,sms",                           # sms without phone
        "ok1,Dup,+77011234568,,,ru,medeu,sms",           # duplicate ref
        "b8,,,,abc,ru,medeu,telegram",                   # telegram id
        "b9,x,+77011234567,,,ru,medeu,sms,extra",        # too many fields
        "ok2,Ok,,a@b.kz,,en,almaly,email",
    ]
    good, bad = parse_csv(HEADER + "\n".join(rows) + "\n", ZONES)
    assert [g.ref for g in good] == ["ok1", "ok2"]
    problems = {b.row: b.problem for b in bad}
    assert "language" in problems[3] and "phone" in problems[4] and "e-mail" in problems[5]
    assert "unknown zone" in problems[6] and "unknown channel" in problems[7] and "no phone" in problems[8]
    assert "duplicate" in problems[9] and "numeric chat id" in problems[10] and "more fields" in problems[11]


def test_missing_columns_are_one_clear_error() -> None:
    good, bad = parse_csv("name,phone\nx,+77011234567\n", ZONES)
    assert good == [] and len(bad) == 1 and "missing column" in bad[0].problem


def test_byte_order_mark_and_empty_file() -> None:
    good, _ = parse_csv("\ufeff" + HEADER + "a,,+77011234567,,,ru,medeu,sms\n", ZONES)
    assert len(good) == 1
    good, bad = parse_csv("", ZONES)
    assert good == [] and "missing column" in bad[0].problem


def test_an_unbalanced_quote_is_a_row_error_not_a_crash() -> None:
    rest = "".join(f"r{i},x,+77011234567,,,ru,medeu,sms\n" for i in range(5000))  # > the csv field limit
    good, bad = parse_csv(HEADER + "a,Ok,+77011234567,,,ru,medeu,sms\n" + 'b,"Broken\n' + rest, ZONES)
    assert [g.ref for g in good] == ["a"]
    assert len(bad) == 1 and bad[0].row == 3 and "CSV syntax" in bad[0].problem


def test_api_recipients_are_normalised_like_csv_rows() -> None:
    from gateway.warning.recipients import Recipient, normalised

    r = Recipient(ref="x", phone="8 701 123 45 67", language="ru", zones=["medeu", "medeu"],
                  channels=["sms", "sms"])
    clean, problems = normalised(r, ZONES)
    assert problems == [] and clean.phone == "+77011234567" and clean.channels == ["sms"] and clean.zones == ["medeu"]
    _, problems = normalised(Recipient(ref="y", phone="12", language="ru", zones=["medeu"], channels=["sms"]), ZONES)
    assert "not a usable number" in problems[0]
