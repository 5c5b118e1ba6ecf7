"""Alert templates: every shipped event renders in kk/ru/en for Alert/Update/Cancel, exercises
are marked everywhere, SMS stay short, and every kind of broken template is reported clearly
(all problems of all files at once)."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from gateway.errors import TemplateError
from gateway.warning import spoken
from gateway.warning.template_files import LANGUAGES, MSG_TYPES, Language, MsgType, TemplateProblems, parse_template
from gateway.warning.templates import Catalogue, SmsTooLong, load_catalogue

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "alert_templates"
REQUIRED_EVENTS = {
    "flood", "mudflow", "earthquake", "fire", "storm", "chemical", "terror", "air_raid", "general_alarm",
    "utility_outage", "heat", "cold", "civil_defence",
}
EXERCISE_WORD = {"kk": "ЖАТТЫҒУ", "ru": "УЧЕНИЯ", "en": "EXERCISE"}
EXERCISE_SPOKEN = {"kk": "Жаттығу!", "ru": "Учения!", "en": "Exercise!"}
TIMES = {"expires": "2026-11-21T18:00:00+05:00", "sent": "2026-11-21T14:05:00+05:00", "reference": "ALM-2026-0142"}
# What a district department would really put in: a city district and the department's name.
REALISTIC: dict[Language, dict[str, str]] = {
    "kk": {"area": "Алматы қ., Медеу ауданы", "sender": "Алматы қ. ТЖД", **TIMES},
    "ru": {"area": "г. Алматы, Медеуский район", "sender": "ДЧС г. Алматы", **TIMES},
    "en": {"area": "Almaty, Medeu district", "sender": "Almaty Emergencies Department", **TIMES},
}
ALL_CASES = [(lang, msg_type, exercise) for lang in LANGUAGES for msg_type in MSG_TYPES for exercise in (False, True)]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(TEMPLATES)


# ---------------------------------------------------------------- the shipped catalogue


def test_the_shipped_catalogue_covers_the_required_events(catalogue: Catalogue) -> None:
    assert REQUIRED_EVENTS <= set(catalogue.events())
    assert catalogue.events() == sorted(catalogue.events())


def test_cap_metadata_of_every_event(catalogue: Catalogue) -> None:
    for event in catalogue.events():
        meta = catalogue.meta(event)
        assert set(meta.names) == set(LANGUAGES) and all(meta.names.values())
        assert set(meta.instructions) == set(LANGUAGES) and all(meta.instructions.values())
    assert catalogue.meta("chemical").category == "CBRNE"
    assert catalogue.meta("earthquake").certainty == "Observed"
    assert catalogue.meta("flood").names == {"kk": "Су тасқыны", "ru": "Наводнение", "en": "Flood"}


@pytest.mark.parametrize("event", sorted(REQUIRED_EVENTS))
@pytest.mark.parametrize(("lang", "msg_type", "exercise"), ALL_CASES)
def test_every_event_renders_in_every_language_and_msg_type(
    catalogue: Catalogue, event: str, lang: Language, msg_type: MsgType, exercise: bool
) -> None:
    r = catalogue.render(event, lang, REALISTIC[lang], exercise=exercise, msg_type=msg_type)
    for name in ("sms", "subject", "text", "html", "telegram", "voice"):
        value = getattr(r, name)
        assert value.strip(), name
        assert "{" not in value and "}" not in value, (name, value)
    assert REALISTIC[lang]["area"].rstrip(".") in r.sms
    assert "\n" not in r.subject and "\n" not in r.sms and "\n" not in r.voice
    assert r.siren_pattern in ("wail", "steady", "none")
    assert (r.siren_pattern == "none") == (r.siren_duration_s == 0)
    assert r.html.startswith("<!DOCTYPE html>") and f'<html lang="{lang}">' in r.html
    assert set(re.findall(r"</?([a-z0-9]+)", r.telegram)) <= {"b", "i"}
    # Numbers in the voice rendering are words: text-to-speech reads "18:00 21.11" badly.
    assert not re.search(r"\d", r.voice), r.voice
    if lang == "en":
        assert r.sms_segments.encoding == "GSM-7"
    else:
        assert r.sms_segments.encoding == "UCS-2"
        assert r.sms_segments.segments <= 3, (r.sms_segments, r.sms)


@pytest.mark.parametrize(("lang", "msg_type"), [(lang, mt) for lang in LANGUAGES for mt in MSG_TYPES])
def test_exercise_is_marked_in_every_rendering(catalogue: Catalogue, lang: Language, msg_type: MsgType) -> None:
    word = EXERCISE_WORD[lang]
    for event in catalogue.events():
        r = catalogue.render(event, lang, REALISTIC[lang], exercise=True, msg_type=msg_type)
        assert r.sms.startswith(f"{word}! "), r.sms
        assert r.subject.startswith(f"[{word}] "), r.subject
        assert r.telegram.startswith(f"<b>{word}!</b>"), r.telegram
        assert r.voice.startswith(f"{EXERCISE_SPOKEN[lang]} {EXERCISE_SPOKEN[lang]}"), r.voice
        assert r.text.startswith(f"{word}! ") and r.text.rstrip().splitlines()[-1].startswith(f"{word}! ")
        body = r.html.split("<body>\n", 1)[1]
        assert body.startswith("<p") and word in body.splitlines()[0] and word in body.splitlines()[-3]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_real_alert_carries_no_exercise_mark(catalogue: Catalogue, lang: Language) -> None:
    words = [w.lower() for w in EXERCISE_WORD.values()] + ["учебн", "оқу-жаттығу"]
    for event in catalogue.events():
        for msg_type in MSG_TYPES:
            r = catalogue.render(event, lang, REALISTIC[lang], exercise=False, msg_type=msg_type)
            everything = " ".join([r.sms, r.subject, r.text, r.html, r.telegram, r.voice]).lower()
            assert not any(w in everything for w in words), (event, msg_type)


def test_civil_defence_wording(catalogue: Catalogue) -> None:
    ru = REALISTIC["ru"]
    kk = REALISTIC["kk"]
    assert "ОТБОЙ ВОЗДУШНОЙ ТРЕВОГИ" in catalogue.render("air_raid", "ru", ru, exercise=False, msg_type="Cancel").sms
    assert "ВОЗДУШНАЯ ТРЕВОГА!" in catalogue.render("air_raid", "ru", ru, exercise=False).sms
    assert "ӘУЕ ДАБЫЛЫ!" in catalogue.render("air_raid", "kk", kk, exercise=False).sms
    assert "Баршаның назарына!" in catalogue.render("general_alarm", "kk", kk, exercise=False).voice
    assert "ВНИМАНИЕ ВСЕМ!" in catalogue.render("general_alarm", "ru", ru, exercise=False).sms
    assert "ОТБОЙ ХИМИЧЕСКОЙ ОПАСНОСТИ" in catalogue.render("chemical", "ru", ru, exercise=False, msg_type="Cancel").sms
    assert "СЕЛ ҚАУПІ!" in catalogue.render("mudflow", "kk", kk, exercise=False).sms
    for event in catalogue.events():
        assert "УТОЧНЕНИЕ" in catalogue.render(event, "ru", ru, exercise=False, msg_type="Update").sms
        assert "НАҚТЫЛАУ" in catalogue.render(event, "kk", kk, exercise=False, msg_type="Update").sms
        assert "UPDATE" in catalogue.render(event, "en", REALISTIC["en"], exercise=False, msg_type="Update").sms
        cancel = catalogue.render(event, "ru", ru, exercise=False, msg_type="Cancel").sms
        assert "ОТБОЙ" in cancel or (event == "terror" and "ОТМЕНА" in cancel), cancel


def test_a_long_area_still_fits_the_default_maximum(catalogue: Catalogue) -> None:
    fields = {**REALISTIC["kk"], "area": "Алматы облысы, Қарасай, Талғар және Іле аудандарының елді мекендері"}
    for event in catalogue.events():
        for msg_type in MSG_TYPES:
            r = catalogue.render(event, "kk", fields, exercise=True, msg_type=msg_type)
            assert r.sms_segments.segments <= 4


# ---------------------------------------------------------------- fields and formatting


def test_dates_are_shown_in_almaty_time_per_language(catalogue: Catalogue) -> None:
    fields = {"area": "X", "sent": "2026-11-21T09:05:00Z", "expires": "2026-11-21T13:30:00Z", "reference": "R"}
    ru = catalogue.render("flood", "ru", fields, exercise=False)
    assert "Действует до 18:30 21 ноября." in ru.sms
    assert "Сообщение передано: 14:05 21 ноября." in ru.text
    assert "до восемнадцати часов тридцати минут двадцать первого ноября" in ru.voice
    kk = catalogue.render("flood", "kk", fields, exercise=False)
    assert "Ескерту 21 қараша, сағат 18:30-ға дейін күшінде." in kk.sms
    assert "жиырма бірінші қараша, сағат он сегіз отызға дейін" in kk.voice
    en = catalogue.render("flood", "en", fields, exercise=False)
    assert "Valid until 18:30 on 21 November." in en.sms
    assert "until six thirty p.m. on the twenty-first of November" in en.voice
    assert "one one two" in en.voice and "сто двенадцать" in ru.voice and "жүз он екі" in kk.voice


def test_without_expires_a_warning_stands_until_cancelled(catalogue: Catalogue) -> None:
    fields = {"area": "X", "sent": TIMES["sent"]}
    assert "Действует до отмены." in catalogue.render("storm", "ru", fields, exercise=False).sms
    assert "қосымша хабарламаға дейін күшінде" in catalogue.render("storm", "kk", fields, exercise=False).sms
    assert "Valid until further notice." in catalogue.render("storm", "en", fields, exercise=False).sms


@pytest.mark.parametrize(
    ("iso", "lang", "written", "said"),
    [
        ("2026-03-03T21:01:00+05:00", "ru", "до 21:01 3 марта", "до двадцати одного часа одной минуты третьего марта"),
        ("2026-05-02T02:22:00+05:00", "ru", "до 02:22 2 мая", "до двух часов двадцати двух минут второго мая"),
        ("2026-01-01T00:00:00+05:00", "ru", "до 00:00 1 января", "до ноля часов первого января"),
        ("2026-12-31T12:05:00+05:00", "kk", "31 желтоқсан, сағат 12:05-ке дейін",
         "отыз бірінші желтоқсан, сағат он екі нөл беске дейін"),
        ("2026-08-13T13:40:00+05:00", "kk", "13 тамыз, сағат 13:40-қа дейін",
         "он үшінші тамыз, сағат он үш қырыққа дейін"),
        ("2026-06-20T06:00:00+05:00", "kk", "20 маусым, сағат 06:00-ға дейін",
         "жиырмасыншы маусым, сағат алтыға дейін"),
        ("2026-01-02T00:00:00+05:00", "en", "until 00:00 on 2 January", "until midnight on the second of January"),
        ("2026-07-22T12:05:00+05:00", "en", "until 12:05 on 22 July",
         "until twelve oh five p.m. on the twenty-second of July"),
    ],
)
def test_until_grammar(iso: str, lang: str, written: str, said: str) -> None:
    moment = datetime.fromisoformat(iso)
    assert spoken.written_until(moment, lang) == written
    assert spoken.spoken_until(moment, lang) == said


@pytest.mark.parametrize(
    ("text", "lang", "said"),
    [("112", "ru", "сто двенадцать"), ("101", "kk", "жүз бір"), ("1402", "ru", "один четыре ноль два"),
     ("+7 727 254-00-00", "ru", "плюс семь семьсот двадцать семь двести пятьдесят четыре ноль ноль ноль ноль"),
     ("102", "en", "one zero two"), ("МЧС", "ru", "МЧС")],
)
def test_contact_numbers_are_spelled_for_speech(text: str, lang: str, said: str) -> None:
    assert spoken.number_words(text, lang) == said


def test_field_values_are_escaped_in_html_and_telegram_only(catalogue: Catalogue) -> None:
    fields = {**REALISTIC["ru"], "area": "<script>alert(1)</script> & Co", "description": "Вода > 2 м & растёт"}
    r = catalogue.render("flood", "ru", fields, exercise=False)
    assert "<script>" not in r.html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in r.html
    assert "<script>" not in r.telegram and "&lt;script&gt;" in r.telegram
    assert "Вода &gt; 2 м &amp; растёт." in r.html
    assert "<script>alert(1)</script> & Co" in r.sms and "<script>" in r.text


def test_per_language_field_values_override_the_shared_one(catalogue: Catalogue) -> None:
    fields = {**TIMES, "area": "Medeu district", "area_kk": "Медеу ауданы", "area_ru": "Медеуский район"}
    previews = catalogue.preview("flood", fields, exercise=False)
    assert "Медеу ауданы" in previews["kk"].sms
    assert "Медеуский район" in previews["ru"].sms
    assert "Medeu district" in previews["en"].sms


def test_sentence_fields_get_a_full_stop_and_empty_ones_leave_no_trace(catalogue: Catalogue) -> None:
    fields = {**REALISTIC["ru"], "instruction": "Поднимитесь на верхние этажи", "headline": "", "description": ""}
    r = catalogue.render("flood", "ru", fields, exercise=False)
    assert "Поднимитесь на верхние этажи. Действует" in r.sms
    assert "<p></p>" not in r.html and "<b></b>" not in r.telegram and "\n\n\n" not in r.text
    assert "  " not in r.voice and " ." not in r.voice


def test_the_default_instruction_comes_from_the_template(catalogue: Catalogue) -> None:
    r = catalogue.render("chemical", "ru", REALISTIC["ru"], exercise=False)
    assert catalogue.meta("chemical").instructions["ru"] in r.sms
    cancel = catalogue.render("chemical", "ru", REALISTIC["ru"], exercise=False, msg_type="Cancel")
    assert "Проветрите помещения" in cancel.sms


def test_preview_renders_all_languages(catalogue: Catalogue) -> None:
    previews = catalogue.preview("earthquake", {**TIMES, "area": "Almaty"}, exercise=True, msg_type="Update")
    assert list(previews) == ["kk", "ru", "en"]
    assert previews["ru"].sms.startswith("УЧЕНИЯ!") and previews["kk"].sms.startswith("ЖАТТЫҒУ!")


# ---------------------------------------------------------------- render errors


def test_unknown_event_language_msg_type_and_field(catalogue: Catalogue) -> None:
    with pytest.raises(TemplateError, match="unknown event type 'tsunami'.*known: air_raid"):
        catalogue.render("tsunami", "ru", REALISTIC["ru"], exercise=False)
    with pytest.raises(TemplateError, match="unknown language 'de'"):
        catalogue.render("flood", "de", REALISTIC["ru"], exercise=False)  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match="unknown msgType 'Ack'"):
        catalogue.render("flood", "ru", REALISTIC["ru"], exercise=False, msg_type="Ack")  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match="unknown field.*instrution"):
        catalogue.render("flood", "ru", {**REALISTIC["ru"], "instrution": "x"}, exercise=False)


def test_missing_fields_are_named_with_the_renderings_that_need_them(catalogue: Catalogue) -> None:
    with pytest.raises(TemplateProblems) as caught:
        catalogue.render("flood", "ru", {"sender": "ДЧС"}, exercise=False, msg_type="Cancel")
    message = str(caught.value)
    assert "flood [ru.cancel]: missing field area (used by sms)" in message
    assert "missing field reference (used by text)" in message
    assert "missing field sent (used by html)" in message


@pytest.mark.parametrize("value", ["tomorrow", "2026-11-21 18:00", "2026-13-01T00:00:00+05:00"])
def test_bad_date_times_are_refused(catalogue: Catalogue, value: str) -> None:
    with pytest.raises(TemplateError, match="field expires"):
        catalogue.render("flood", "ru", {**REALISTIC["ru"], "expires": value}, exercise=False)


def test_an_oversize_sms_says_by_how_much_to_shorten(catalogue: Catalogue) -> None:
    instruction = "Немедленно поднимитесь на верхние этажи или возвышенность. " * 3
    fields = {**REALISTIC["ru"], "instruction": instruction}
    with pytest.raises(SmsTooLong) as caught:
        catalogue.render("flood", "ru", fields, exercise=False)
    err = caught.value
    assert err.max_segments == 4 and err.measured.segments == 5 and err.measured.encoding == "UCS-2"
    assert f"shorten it by {err.excess_units} characters" in str(err)
    assert "flood [ru.alert]: SMS needs 5 UCS-2 segments" in str(err)
    shorter = instruction.strip()[: -err.excess_units - 1].rstrip()
    fits = catalogue.render("flood", "ru", {**fields, "instruction": shorter}, exercise=False)
    assert fits.sms_segments.segments <= 4


def test_the_segment_limit_is_configurable_and_counts_the_exercise_mark() -> None:
    tight = load_catalogue(TEMPLATES, max_sms_segments=2)
    with pytest.raises(SmsTooLong, match="maximum is 2"):
        tight.render("flood", "ru", REALISTIC["ru"], exercise=True)
    with pytest.raises(TemplateError, match="at least 1"):
        load_catalogue(TEMPLATES, max_sms_segments=0)


def test_preview_lists_the_problems_of_every_language(catalogue: Catalogue) -> None:
    with pytest.raises(TemplateProblems) as caught:
        catalogue.preview("flood", {"area": "X" * 700, **TIMES}, exercise=False)
    assert len(caught.value.problems) == 3
    assert [p.split()[1] for p in caught.value.problems] == ["[kk.alert]:", "[ru.alert]:", "[en.alert]:"]


# ---------------------------------------------------------------- broken template files


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A private copy of the shipped templates to break."""
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


def edit(path: Path, old: str, new: str, *, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(TemplateProblems) as caught:
        load_catalogue(directory)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_unknown_placeholder(broken: Path) -> None:
    edit(broken / "flood.toml", 'sms = "{sender}: УГРОЗА НАВОДНЕНИЯ! {area}.',
         'sms = "{sender}: УГРОЗА НАВОДНЕНИЯ! {areaa}.')
    (problem,) = problems_of(broken)
    assert problem == f"{broken / 'flood.toml'} [ru.alert] sms: unknown placeholder {{areaa}} at line 1 column 30"


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ("{sender: ", "unbalanced '{' at line 1 column 1"),
        ("sender}: ", "unbalanced '}' at line 1 column 7"),
        ("{sender}} ", "unbalanced '}' at line 1 column 9"),
        ("{{sender}: ", "unbalanced '}' at line 1 column 9"),
        ("{sender:>10}: ", "bad placeholder {sender:>10}"),
        ("{}: ", "bad placeholder {}"),
        ("{0}: ", "bad placeholder {0}"),
        ("{sender.name}: ", "bad placeholder {sender.name}"),
    ],
)
def test_unbalanced_braces_and_format_specs(broken: Path, replacement: str, expected: str) -> None:
    edit(broken / "storm.toml", 'sms = "{sender}: ДАУЫЛДЫ ЕСКЕРТУ!', f'sms = "{replacement}ДАУЫЛДЫ ЕСКЕРТУ!')
    (problem,) = problems_of(broken)
    assert problem.startswith(f"{broken / 'storm.toml'} [kk.alert] sms: {expected}"), problem


def test_doubled_braces_are_literal() -> None:
    pieces, problems = parse_template("{{not a field}} {area}")
    assert problems == [] and pieces == [("{not a field} ", "area"), ("", None)]


def test_missing_language(broken: Path) -> None:
    path = broken / "heat.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("\n[en]\n")] + "\n", encoding="utf-8")
    assert problems_of(broken) == [f"{path} [en]: language missing"]


def test_missing_msg_type_and_rendering(broken: Path) -> None:
    path = broken / "cold.toml"
    text = path.read_text(encoding="utf-8")
    cancel = text.index("\n[ru.cancel]\n")
    voice = text.index("\nvoice = ", cancel)
    end = text.index('"""\n', voice + 12) + 4
    text = text[:voice] + "\n" + text[end:]
    text = text.replace("\n[kk.update]\n", "\n[kk.updat]\n")
    path.write_text(text, encoding="utf-8")
    problems = problems_of(broken)
    assert f"{path} [ru.cancel] voice: rendering missing" in problems
    assert f"{path} [kk.update]: section missing (needs sms, subject, text, html, telegram, voice)" in problems
    assert f"{path} [kk] updat: unknown key" in problems


def test_bad_toml_names_the_file_and_line(broken: Path) -> None:
    edit(broken / "fire.toml", 'urgency = "Immediate"', "urgency = Immediate")
    (problem,) = problems_of(broken)
    assert problem.startswith(f"{broken / 'fire.toml'}: cannot read TOML: ")
    assert "line 5" in problem


def test_metadata_sirens_and_telegram_tags_are_checked(broken: Path) -> None:
    path = broken / "mudflow.toml"
    edit(path, 'severity = "Severe"', 'severity = "Catastrophic"')
    edit(path, 'alert = { pattern = "wail", duration_s = 60 }', 'alert = { pattern = "whoop", duration_s = 60 }')
    edit(path, 'update = { pattern = "steady", duration_s = 30 }', 'update = { pattern = "none", duration_s = 30 }')
    edit(path, "⛰️ <b>СЕЛ ҚАУПІ</b>", "<h1>СЕЛ ҚАУПІ</h1>")
    edit(path, 'certainty = "Possible"', 'certainty = "Possible"\nowner = "me"')
    problems = problems_of(broken)
    assert any(p.startswith(f"{path}: severity must be one of Extreme, Minor") and "'Catastrophic'" in p
               for p in problems)
    assert f"{path} [siren.alert]: pattern must be wail, steady or none, not 'whoop'" in problems
    assert f"{path} [siren.update]: pattern none goes with duration_s 0 and only with it" in problems
    assert f"{path} [kk.alert] telegram: tag <h1> is not allowed (only b, i, u, a)" in problems
    assert f"{path}: unknown key 'owner'" in problems


def test_all_problems_of_all_files_are_reported_at_once(broken: Path) -> None:
    edit(broken / "flood.toml", "{instruction} Действует", "{instructions} Действует", count=2)
    edit(broken / "terror.toml", 'category = "Security"', 'category = "Police"')
    (broken / "zz_bad.toml").write_text("this is = = not toml", encoding="utf-8")
    (broken / "Bad-Name.toml").write_text("", encoding="utf-8")
    problems = problems_of(broken)
    files = {p.split(" ", 1)[0].rstrip(":") for p in problems}
    assert files == {str(broken / n) for n in ("flood.toml", "terror.toml", "zz_bad.toml", "Bad-Name.toml")}
    assert sum("unknown placeholder {instructions}" in p for p in problems) == 2  # alert and update
    assert len(problems) == 5


def test_an_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="no \\*.toml alert templates"):
        load_catalogue(tmp_path)
    with pytest.raises(TemplateError, match="does not exist"):
        load_catalogue(tmp_path / "nowhere")
