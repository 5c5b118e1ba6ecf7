"""Multilingual alert templates: one TOML file per event type, rendered per language and channel.

Theory of operation: ``load_catalogue`` has ``template_files.read_events`` read every
``<event>.toml`` in a directory, check it against the schema below and parse every template
string once into literal pieces and placeholders, so a broken template fails at start-up (all
problems of all files in one ``TemplateError``) and never in the middle of a fan-out.
``Catalogue.render`` then only substitutes prepared field values, marks exercises and measures
the SMS.

File layout (see ``alert_templates/flood.toml`` for a complete example)::

    category = "Met"            # CAP <category>
    urgency = "Immediate"       # CAP defaults for a new alert
    severity = "Severe"
    certainty = "Likely"
    [siren]                     # relay pattern per msgType: wail | steady | none
    alert = { pattern = "wail", duration_s = 60 }
    update = { pattern = "steady", duration_s = 30 }
    cancel = { pattern = "none", duration_s = 0 }
    [ru]                        # kk, ru and en are all required
    event = "Наводнение"        # CAP <event> in this language
    instruction = "..."         # default {instruction} (short: it goes into the SMS)
    [ru.alert]                  # alert, update and cancel are all required
    instruction = "..."         # optional per-msgType default instruction
    advice = ["...", "..."]     # optional fixed guidance, rendered as a list by {advice}
    sms = "..."                 # and subject, text, html, telegram, voice: all required

Placeholders: ``{area}`` ``{headline}`` ``{description}`` ``{instruction}`` ``{sender}``
``{contact}`` ``{reference}`` ``{expires}`` ``{sent}`` (date-times, shown in Asia/Almaty time),
``{until}`` ("до 18:00 21 ноября", built from ``expires`` with the grammar each language
needs; "до отмены" when there is no ``expires``), ``{event}`` and ``{advice}`` (from the file).
``{{`` and ``}}`` are literal braces; anything else in braces is an error. In ``voice`` the
date-times and ``{contact}`` are spelled out in words; in ``html`` and ``telegram`` field values are
HTML-escaped.

Exercise marking is done here in code, not in the files, so no template can forget it.
Pure: the only I/O is reading the template directory in ``load_catalogue``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from gateway.errors import TemplateError
from gateway.warning import spoken
from gateway.warning.sms import Segments, overflow, segments, to_gsm
from gateway.warning.template_files import (
    FIELDS,
    LANGUAGES,
    MSG_TYPES,
    EventMeta,
    EventTemplates,
    Language,
    MsgType,
    Piece,
    Section,
    SirenPattern,
    TemplateProblems,
    read_events,
)

DEFAULT_MAX_SMS_SEGMENTS = 4
LOCAL_TZ = ZoneInfo("Asia/Almaty")

# Fields that are whole sentences get a full stop if the composer left it off.
_SENTENCES = frozenset({"headline", "description", "instruction"})
_DEFAULT_SENDER: dict[Language, str] = {"kk": "ҚР ТЖМ", "ru": "МЧС РК", "en": "MES Kazakhstan"}
_DEFAULT_CONTACT = "112"
_UNTIL_CANCELLED: dict[Language, str] = {"kk": "қосымша хабарламаға дейін", "ru": "до отмены",
                                         "en": "until further notice"}


class SmsTooLong(TemplateError):
    """The rendered SMS needs more segments than allowed; ``excess_units`` is how much to cut
    (septets for GSM-7, UTF-16 units for UCS-2: characters, for Kazakh and Russian text)."""

    def __init__(self, where: str, measured: Segments, max_segments: int, excess_units: int) -> None:
        self.measured = measured
        self.max_segments = max_segments
        self.excess_units = excess_units
        unit = "septets" if measured.encoding == "GSM-7" else "characters"
        super().__init__(
            f"{where}: SMS needs {measured.segments} {measured.encoding} segments ({measured.units} {unit}), "
            f"the maximum is {max_segments}: shorten it by {excess_units} {unit}"
        )


class Rendered(msgspec.Struct, frozen=True, kw_only=True):
    """One event in one language for one msgType, ready for every channel."""

    sms: str
    subject: str
    text: str
    html: str
    telegram: str
    voice: str
    siren_pattern: SirenPattern
    siren_duration_s: int
    sms_segments: Segments


def load_catalogue(directory: Path, *, max_sms_segments: int = DEFAULT_MAX_SMS_SEGMENTS) -> Catalogue:
    """Read and check every ``*.toml`` in ``directory`` (the file name is the event type).

    Raises ``TemplateProblems`` (a ``TemplateError``) listing every problem of every file:
    unreadable or bad TOML, missing language, msgType or rendering, unknown placeholder,
    unbalanced brace, bad CAP value or siren pattern (the checks are in ``template_files``).
    """
    directory = Path(directory)
    if max_sms_segments < 1:
        raise TemplateError(f"max_sms_segments must be at least 1, not {max_sms_segments}")
    return Catalogue(read_events(directory), max_sms_segments=max_sms_segments)


# ---------------------------------------------------------------- rendering


def _substitute(pieces: list[Piece], values: Mapping[str, str]) -> str:
    return "".join(text + (values[name] if name is not None else "") for text, name in pieces)


def _placeholders(pieces: list[Piece]) -> set[str]:
    return {name for _, name in pieces if name is not None}


# (SMS/subject tag, banner sentence, spoken opening, spoken closing)
_EXERCISE: dict[Language, tuple[str, str, str, str]] = {
    "kk": (
        "ЖАТТЫҒУ!",
        "Бұл оқу-жаттығу хабарламасы, нақты қауіп жоқ.",
        "Жаттығу! Жаттығу! Бұл оқу-жаттығу хабарламасы.",
        "Қайталаймын: бұл оқу-жаттығу, нақты қауіп жоқ.",
    ),
    "ru": (
        "УЧЕНИЯ!",
        "Это учебное сообщение, реальной угрозы нет.",
        "Учения! Учения! Это учебное сообщение.",
        "Повторяю: это учения, реальной угрозы нет.",
    ),
    "en": (
        "EXERCISE!",
        "This is an exercise message; there is no real threat.",
        "Exercise! Exercise! This is an exercise message.",
        "I repeat: this is an exercise; there is no real threat.",
    ),
}


def _mark_exercise(out: dict[str, str], lang: Language) -> None:
    tag, banner, opening, closing = _EXERCISE[lang]
    word = tag.rstrip("!")
    out["sms"] = f"{tag} {out['sms']}"
    out["subject"] = f"[{word}] {out['subject']}"
    out["text"] = f"{tag} {banner}\n\n{out['text']}\n\n{tag} {banner}"
    block = f'<p style="background:#ffd400;padding:8px;font-weight:bold">{tag} {html.escape(banner)}</p>'
    out["html"] = f"{block}\n{out['html']}\n{block}"
    out["telegram"] = f"<b>{tag}</b> <i>{html.escape(banner)}</i>\n\n{out['telegram']}"
    out["voice"] = f"{opening} {out['voice']} {closing}"


def _tidy_line(text: str) -> str:
    """One paragraph: template line breaks and gaps left by empty fields disappear."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([.,;:!?])", r"\1", text)


def _tidy_block(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _tidy_markup(text: str, *, paragraphs: bool) -> str:
    """Drop elements left empty by empty fields (``<p><b></b></p>``), then tidy the lines;
    blank lines separate paragraphs in Telegram and mean nothing in HTML."""
    while True:
        tidier = re.sub(r"<(p|li|ul|b|i|strong|em)>\s*</\1>", "", text)
        if tidier == text:
            break
        text = tidier
    return _tidy_block(text) if paragraphs else "\n".join(line for line in _tidy_block(text).splitlines() if line)


def _as_sentence(value: str) -> str:
    return value if not value or value[-1] in ".!?…»\")" else value + "."


def _parse_time(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TemplateError(f"field {name}: not an ISO 8601 date-time: {value!r}") from None
    if moment.tzinfo is None:
        raise TemplateError(f"field {name}: needs a UTC offset (e.g. +05:00 or Z): {value!r}")
    return moment.astimezone(LOCAL_TZ)


class _Values(msgspec.Struct, frozen=True):
    """Field values of one language, prepared for each kind of rendering."""

    plain: dict[str, str]
    html: dict[str, str]
    telegram: dict[str, str]
    voice: dict[str, str]


def _advice(advice: list[str]) -> tuple[str, str, str, str]:
    """The fixed guidance as plain bullets, an HTML list, Telegram bullets and spoken sentences."""
    text = "\n".join(f"• {a}" for a in advice)
    markup = "<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in advice) + "</ul>" if advice else ""
    return text, markup, html.escape(text), " ".join(_as_sentence(a) for a in advice)


class Catalogue:
    """The checked alert templates; immutable, safe to share between tasks."""

    def __init__(self, events: dict[str, EventTemplates], *, max_sms_segments: int = DEFAULT_MAX_SMS_SEGMENTS) -> None:
        self._events = events
        self.max_sms_segments = max_sms_segments

    def events(self) -> list[str]:
        """The event types, sorted (file names without ``.toml``)."""
        return sorted(self._events)

    def meta(self, event: str) -> EventMeta:
        """CAP defaults of ``event`` (category, urgency, severity, certainty, names, instructions)."""
        return self._event(event).meta

    def _event(self, event: str) -> EventTemplates:
        try:
            return self._events[event]
        except KeyError:
            raise TemplateError(f"unknown event type {event!r} (known: {', '.join(self.events())})") from None

    def render(
        self,
        event: str,
        language: Language,
        fields: Mapping[str, str],
        *,
        exercise: bool,
        msg_type: MsgType = "Alert",
    ) -> Rendered:
        """Render ``event`` in ``language`` for ``msg_type``.

        ``fields`` holds the placeholder values (``area`` is required, ``expires``/``sent`` are
        ISO 8601 with an offset); ``<name>_<lang>`` overrides ``<name>`` for that language.
        Raises ``TemplateError`` for an unknown event, language, msgType or field, a missing or
        malformed field value, and ``SmsTooLong`` when the SMS exceeds ``max_sms_segments``.
        """
        spec = self._event(event)
        _check_request(language, msg_type, fields)
        kind = msg_type.lower()
        section = spec.sections[language, kind]
        values = self._values(spec, section, language, fields)
        where = f"{event} [{language}.{kind}]"
        _check_complete(section, values, where)
        out = _fill(section, values)
        if exercise:
            _mark_exercise(out, language)
        sms, measured = self._fit_sms(out["sms"], where)
        pattern, duration = spec.sirens[kind]
        return Rendered(
            sms=sms,
            subject=out["subject"],
            text=out["text"],
            html=_html_document(out["html"], out["subject"], language),
            telegram=out["telegram"],
            voice=out["voice"],
            siren_pattern=pattern,
            siren_duration_s=duration,
            sms_segments=measured,
        )

    def _fit_sms(self, sms: str, where: str) -> tuple[str, Segments]:
        """The finished SMS (GSM-7 punctuation where that makes it GSM-7) and its measure;
        ``SmsTooLong`` when it needs more than ``max_sms_segments``."""
        sms = to_gsm(sms)
        measured = segments(sms)
        if measured.segments > self.max_sms_segments:
            raise SmsTooLong(where, measured, self.max_sms_segments, overflow(sms, self.max_sms_segments))
        return sms, measured

    def preview(
        self, event: str, fields: Mapping[str, str], *, exercise: bool, msg_type: MsgType = "Alert"
    ) -> dict[Language, Rendered]:
        """Render ``event`` in every language; raises one ``TemplateProblems`` listing the
        problems of all languages (an over-long SMS in two languages is reported twice)."""
        rendered: dict[Language, Rendered] = {}
        problems: list[str] = []
        for lang in LANGUAGES:
            try:
                rendered[lang] = self.render(event, lang, fields, exercise=exercise, msg_type=msg_type)
            except TemplateProblems as exc:
                problems.extend(exc.problems)
            except TemplateError as exc:
                problems.append(str(exc))
        if problems:
            raise TemplateProblems(list(dict.fromkeys(problems)))
        return rendered

    def _values(self, spec: EventTemplates, section: Section, lang: Language, fields: Mapping[str, str]) -> _Values:
        given = {
            "instruction": section.instruction,
            "sender": _DEFAULT_SENDER[lang],
            "contact": _DEFAULT_CONTACT,
            "headline": "",
            "description": "",
        }
        for name in FIELDS:
            value = fields.get(f"{name}_{lang}") or fields.get(name, "")
            if not isinstance(value, str):
                raise TemplateError(f"field {name}: must be a string, not {type(value).__name__}")
            value = value.strip().rstrip(". ") if name == "area" else value.strip()  # templates punctuate the area
            if value:
                given[name] = value
        plain = {k: _as_sentence(v) if k in _SENTENCES else v for k, v in given.items()}
        plain["event"] = spec.meta.names[lang]
        voice = dict(plain)
        voice["contact"] = spoken.number_words(plain["contact"], lang)
        # CAP <expires> is optional: without it a warning stands until it is cancelled.
        plain["until"] = voice["until"] = _UNTIL_CANCELLED[lang]
        for name in ("expires", "sent"):
            if name in plain:
                moment = _parse_time(name, plain[name])
                plain[name] = spoken.written_time(moment, lang)
                voice[name] = spoken.spoken_time(moment, lang)
                if name == "expires":
                    plain["until"] = spoken.written_until(moment, lang)
                    voice["until"] = spoken.spoken_until(moment, lang)
        markup = {k: html.escape(v).replace("\n", "<br>") for k, v in plain.items()}
        telegram = {k: html.escape(v) for k, v in plain.items()}
        plain["advice"], markup["advice"], telegram["advice"], voice["advice"] = _advice(section.advice)
        return _Values(plain, markup, telegram, voice)


def _html_document(body: str, subject: str, lang: Language) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n'
        f'<head><meta charset="utf-8"><title>{html.escape(subject)}</title></head>\n'
        f"<body>\n{body}\n</body>\n</html>"
    )


def _check_fields(fields: Mapping[str, str]) -> None:
    allowed = FIELDS | {f"{name}_{lang}" for name in FIELDS for lang in LANGUAGES}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise TemplateError(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})")


def _check_request(language: str, msg_type: str, fields: Mapping[str, str]) -> None:
    """The language, msgType and field names of a render request are known ones (in this order)."""
    if language not in LANGUAGES:
        raise TemplateError(f"unknown language {language!r} (known: kk, ru, en)")
    if msg_type not in MSG_TYPES:
        raise TemplateError(f"unknown msgType {msg_type!r} (known: Alert, Update, Cancel)")
    _check_fields(fields)


def _check_complete(section: Section, values: _Values, where: str) -> None:
    """Every placeholder the section's renderings use has a value; else all the missing ones."""
    missing = sorted(
        f"{name} (used by {rendering})"
        for rendering, pieces in section.templates.items()
        for name in _placeholders(pieces)
        if name not in values.plain
    )
    if missing:
        raise TemplateProblems([f"{where}: missing field {m}" for m in missing])


def _fill(section: Section, values: _Values) -> dict[str, str]:
    """Every rendering of ``section`` with its values substituted and tidied (before exercise marking)."""
    templates = section.templates
    return {
        "sms": _tidy_line(_substitute(templates["sms"], values.plain)),
        "subject": _tidy_line(_substitute(templates["subject"], values.plain)),
        "text": _tidy_block(_substitute(templates["text"], values.plain)),
        "html": _tidy_markup(_substitute(templates["html"], values.html), paragraphs=False),
        "telegram": _tidy_markup(_substitute(templates["telegram"], values.telegram), paragraphs=True),
        "voice": _tidy_line(_substitute(templates["voice"], values.voice)),
    }
