"""Dates, times and numbers as a Kazakh, Russian or English reader would write or say them.

Written forms go into SMS, e-mail and Telegram; spoken forms go into the ``voice`` rendering
for text-to-speech, which reads "18:00 21.11" badly in every language. Grammar matters
because the words land inside a sentence: Russian "до" takes the genitive ("до восемнадцати
часов"), Kazakh "дейін" takes the dative ("сағат 18:00-ге дейін", "он сегізге дейін").

Pure: no I/O. Times are given already converted to local time.
"""

from __future__ import annotations

import re
from datetime import datetime

_RU_UNITS = (
    "ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать тринадцать "
    "четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать"
).split()
_RU_UNITS_GEN = (
    "ноля одного двух трёх четырёх пяти шести семи восьми девяти десяти одиннадцати двенадцати тринадцати "
    "четырнадцати пятнадцати шестнадцати семнадцати восемнадцати девятнадцати"
).split()
_RU_TENS = ["", "", "двадцать", "тридцать", "сорок", "пятьдесят", "шестьдесят", "семьдесят", "восемьдесят", "девяносто"]
_RU_TENS_GEN = ["", "", "двадцати", "тридцати", "сорока", "пятидесяти"]
_RU_HUNDREDS = ["", "сто", "двести", "триста", "четыреста", "пятьсот", "шестьсот", "семьсот", "восемьсот", "девятьсот"]
# Ordinal stems 1..20 for the day of the month ("двадцать первое", "до ... двадцать первого").
_RU_ORDINAL = (
    "- перв втор трет четвёрт пят шест седьм восьм девят десят одиннадцат двенадцат тринадцат "
    "четырнадцат пятнадцат шестнадцат семнадцат восемнадцат девятнадцат двадцат"
).split()
_RU_MONTHS = "января февраля марта апреля мая июня июля августа сентября октября ноября декабря".split()

_KK_UNITS = "нөл бір екі үш төрт бес алты жеті сегіз тоғыз".split()
_KK_TENS = ["", "он", "жиырма", "отыз", "қырық", "елу", "алпыс", "жетпіс", "сексен", "тоқсан"]
# Dative of the word a spoken time ends with; vowel harmony and voicing decide -ға/-ге/-қа/-ке.
_KK_DATIVE = {
    "нөл": "нөлге", "бір": "бірге", "екі": "екіге", "үш": "үшке", "төрт": "төртке", "бес": "беске",
    "алты": "алтыға", "жеті": "жетіге", "сегіз": "сегізге", "тоғыз": "тоғызға", "он": "онға",
    "жиырма": "жиырмаға", "отыз": "отызға", "қырық": "қырыққа", "елу": "елуге",
}
_KK_ORDINAL = {
    "бір": "бірінші", "екі": "екінші", "үш": "үшінші", "төрт": "төртінші", "бес": "бесінші", "алты": "алтыншы",
    "жеті": "жетінші", "сегіз": "сегізінші", "тоғыз": "тоғызыншы", "он": "оныншы", "жиырма": "жиырмасыншы",
    "отыз": "отызыншы",
}
_KK_MONTHS = "қаңтар ақпан наурыз сәуір мамыр маусым шілде тамыз қыркүйек қазан қараша желтоқсан".split()

_EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_ORDINAL = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth",
}
_EN_MONTHS = "January February March April May June July August September October November December".split()
_PLUS = {"kk": "плюс", "ru": "плюс", "en": "plus"}


# ---------------------------------------------------------------- cardinals


def _ru(n: int, *, feminine: bool = False, genitive: bool = False) -> str:
    """0..999 in Russian, nominative or genitive, masculine or feminine."""
    if n == 0:
        return _RU_UNITS_GEN[0] if genitive else _RU_UNITS[0]
    words = [_RU_HUNDREDS[n // 100]] if n >= 100 else []
    rest = n % 100
    if rest >= 20:
        words.append((_RU_TENS_GEN if genitive else _RU_TENS)[rest // 10])
        rest %= 10
    if rest:
        word = (_RU_UNITS_GEN if genitive else _RU_UNITS)[rest]
        if feminine and rest in (1, 2):
            word = ("одной" if rest == 1 else "двух") if genitive else ("одна" if rest == 1 else "две")
        words.append(word)
    return " ".join(w for w in words if w)


def _kk(n: int) -> str:
    """0..999 in Kazakh."""
    if n == 0:
        return _KK_UNITS[0]
    words = []
    if n >= 100:
        words += ([_KK_UNITS[n // 100]] if n >= 200 else []) + ["жүз"]
    if n % 100 >= 10:
        words.append(_KK_TENS[n % 100 // 10])
    if n % 10:
        words.append(_KK_UNITS[n % 10])
    return " ".join(words)


def _en(n: int) -> str:
    """0..999 in English."""
    if n < 20:
        return _EN_UNITS[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("-" + _EN_UNITS[n % 10] if n % 10 else "")
    return _EN_UNITS[n // 100] + " hundred" + (" and " + _en(n % 100) if n % 100 else "")


def _cardinal(n: int, lang: str) -> str:
    return _kk(n) if lang == "kk" else _ru(n) if lang == "ru" else _en(n)


def _digits(run: str, lang: str) -> str:
    return " ".join(_cardinal(int(d), lang) for d in run)


def number_words(text: str, lang: str) -> str:
    """Digits in ``text`` spelled out for speech: short groups as numbers in kk/ru ("112" →
    "сто двенадцать"), longer groups and every English group digit by digit ("one one two"),
    as people read out phone numbers."""

    def spell(match: re.Match[str]) -> str:
        run = match.group(0)
        if run == "+":
            return _PLUS[lang] + " "
        if lang != "en" and len(run) <= 3 and not (len(run) > 1 and run[0] == "0"):
            return _cardinal(int(run), lang)
        return _digits(run, lang)

    if not re.search(r"\d", text):
        return text
    text = re.sub(r"(?<=\d)[-‐–](?=\d)", " ", text)  # 8-727-... reads as groups
    return re.sub(r"\s+", " ", re.sub(r"\+|\d+", spell, text)).strip()


# ---------------------------------------------------------------- dates and times


def _ru_ordinal_day(day: int, *, genitive: bool) -> str:
    tens, unit = divmod(day, 10)
    if day <= 20 or unit == 0:
        stem = _RU_ORDINAL[day] if day <= 20 else "тридцат"
        prefix = ""
    else:
        stem, prefix = _RU_ORDINAL[unit], _RU_TENS[tens] + " "
    if stem == "трет":
        return prefix + ("третьего" if genitive else "третье")
    return prefix + stem + ("ого" if genitive else "ое")


def _ru_plural(n: int, forms: tuple[str, str, str]) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


def _ru_spoken(moment: datetime, *, genitive: bool) -> str:
    h, m = moment.hour, moment.minute
    if genitive:  # "до восемнадцати часов тридцати минут": after a genitive numeral, 1 → sg, else pl
        hours = _ru(h, genitive=True) + (" часа" if h % 10 == 1 and h != 11 else " часов")
        minutes = _ru(m, feminine=True, genitive=True) + (" минуты" if m % 10 == 1 and m != 11 else " минут")
    else:
        hours = _ru(h) + " " + _ru_plural(h, ("час", "часа", "часов"))
        minutes = _ru(m, feminine=True) + " " + _ru_plural(m, ("минута", "минуты", "минут"))
    day = _ru_ordinal_day(moment.day, genitive=genitive)
    clock = hours + (" " + minutes if m else "")
    return f"{clock} {day} {_RU_MONTHS[moment.month - 1]}" if genitive \
        else f"{clock}, {day} {_RU_MONTHS[moment.month - 1]}"


def _kk_clock_words(moment: datetime) -> list[str]:
    words = _kk(moment.hour).split()
    if moment.minute:
        words += (["нөл"] if moment.minute < 10 else []) + _kk(moment.minute).split()
    return words


def _kk_ordinal_day(day: int) -> str:
    words = _kk(day).split()
    return " ".join(words[:-1] + [_KK_ORDINAL[words[-1]]])


def _en_clock(moment: datetime) -> str:
    h, m = moment.hour, moment.minute
    if m == 0 and h in (0, 12):
        return "midnight" if h == 0 else "noon"
    hour = _en(h % 12 or 12)
    minutes = "" if m == 0 else " oh " + _en(m) if m < 10 else " " + _en(m)
    return f"{hour}{minutes} {'a.m.' if h < 12 else 'p.m.'}"


def _en_ordinal_day(day: int) -> str:
    words = _en(day).split("-")
    last = words[-1]
    words[-1] = _EN_ORDINAL.get(last, last + "th")
    return "-".join(words)


def written_time(moment: datetime, lang: str) -> str:
    """"21 қараша, сағат 18:00" / "18:00 21 ноября" / "18:00 on 21 November"."""
    clock = f"{moment.hour:02d}:{moment.minute:02d}"
    if lang == "kk":
        return f"{moment.day} {_KK_MONTHS[moment.month - 1]}, сағат {clock}"
    if lang == "ru":
        return f"{clock} {moment.day} {_RU_MONTHS[moment.month - 1]}"
    return f"{clock} on {moment.day} {_EN_MONTHS[moment.month - 1]}"


def written_until(moment: datetime, lang: str) -> str:
    """"21 қараша, сағат 18:00-ге дейін" / "до 18:00 21 ноября" / "until 18:00 on 21 November"."""
    if lang == "kk":
        suffix = _KK_DATIVE[_kk_clock_words(moment)[-1]][-2:]
        return f"{written_time(moment, lang)}-{suffix} дейін"
    return ("до " if lang == "ru" else "until ") + written_time(moment, lang)


def spoken_time(moment: datetime, lang: str) -> str:
    """The date-time in words, standing alone ("восемнадцать часов, двадцать первое ноября")."""
    if lang == "kk":
        clock = " ".join(_kk_clock_words(moment))
        return f"{_kk_ordinal_day(moment.day)} {_KK_MONTHS[moment.month - 1]}, сағат {clock}"
    if lang == "ru":
        return _ru_spoken(moment, genitive=False)
    return f"{_en_clock(moment)} on the {_en_ordinal_day(moment.day)} of {_EN_MONTHS[moment.month - 1]}"


def spoken_until(moment: datetime, lang: str) -> str:
    """"until" plus the date-time in words, in the case the language needs there."""
    if lang == "kk":
        words = _kk_clock_words(moment)
        clock = " ".join(words[:-1] + [_KK_DATIVE[words[-1]]])
        return f"{_kk_ordinal_day(moment.day)} {_KK_MONTHS[moment.month - 1]}, сағат {clock} дейін"
    if lang == "ru":
        return "до " + _ru_spoken(moment, genitive=True)
    return "until " + spoken_time(moment, lang)
