"""The alert template files: their schema, and reading and checking a directory of them.

One TOML file per event type (its name is the event type; the format is described in
``templates.py``, where every template file points). Theory of operation: ``read_events`` reads
every ``<event>.toml`` in a directory, checks it key by key against the schema (CAP values,
siren patterns, the three languages, the three msgTypes, the six renderings) and parses every
template string once with ``parse_template`` into literal pieces and placeholders. Checking never
stops at the first problem: every problem of every file is collected and raised as one
``TemplateProblems``, so a broken template fails at start-up, all at once, and never in the
middle of a fan-out. What comes out (``EventTemplates``) is already parsed, so rendering
(``templates.py``) only substitutes values. Pure apart from reading the directory.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal, cast, get_args

import msgspec

from gateway.errors import TemplateError

Language = Literal["kk", "ru", "en"]
MsgType = Literal["Alert", "Update", "Cancel"]
SirenPattern = Literal["wail", "steady", "none"]

LANGUAGES: tuple[Language, ...] = ("kk", "ru", "en")
MSG_TYPES: tuple[MsgType, ...] = ("Alert", "Update", "Cancel")
RENDERINGS = ("sms", "subject", "text", "html", "telegram", "voice")

# Values the caller may give (each also as ``<name>_<lang>`` for one language only).
FIELDS = frozenset({"area", "headline", "description", "instruction", "sender", "contact", "reference", "expires",
                    "sent"})
PLACEHOLDERS = FIELDS | {"until", "event", "advice"}

_CATEGORIES = {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE",
               "Other"}
_CAP_CHOICES = {
    "category": _CATEGORIES,
    "urgency": {"Immediate", "Expected", "Future", "Past", "Unknown"},
    "severity": {"Extreme", "Severe", "Moderate", "Minor", "Unknown"},
    "certainty": {"Observed", "Likely", "Possible", "Unlikely", "Unknown"},
}
_TELEGRAM_TAGS = {"b", "i", "u", "a"}
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME = re.compile(r"^[a-z_]+$")


class TemplateProblems(TemplateError):
    """Every problem found in a template directory or a render request, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class EventMeta(msgspec.Struct, frozen=True, kw_only=True):
    """CAP defaults of an event type: category, urgency, severity, certainty, and per language
    the CAP event name and the default instruction."""

    category: str
    urgency: str
    severity: str
    certainty: str
    names: dict[str, str]
    instructions: dict[str, str]


# ---------------------------------------------------------------- template strings

Piece = tuple[str, str | None]  # (literal text, placeholder name or None)


def parse_template(source: str) -> tuple[list[Piece], list[str]]:
    """Split ``source`` into literal/placeholder pieces; returns (pieces, problems)."""
    pieces: list[Piece] = []
    problems: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in "{}" and source[i + 1 : i + 2] == ch:
            literal.append(ch)
            i += 2
        elif ch == "}":
            problems.append(f"unbalanced '}}' at {_position(source, i)}")
            i += 1
        elif ch == "{":
            end = source.find("}", i + 1)
            nested = source.find("{", i + 1)
            if end < 0 or 0 <= nested < end:
                problems.append(f"unbalanced '{{' at {_position(source, i)}")
                i += 1
                continue
            name = source[i + 1 : end]
            if not _NAME.match(name):
                problems.append(f"bad placeholder {{{name}}} at {_position(source, i)} (only {{name}} is allowed)")
            elif name not in PLACEHOLDERS:
                problems.append(f"unknown placeholder {{{name}}} at {_position(source, i)}")
            else:
                pieces.append(("".join(literal), name))
                literal = []
            i = end + 1
        else:
            literal.append(ch)
            i += 1
    pieces.append(("".join(literal), None))
    return pieces, problems


def _position(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return f"line {line} column {column}"


# ---------------------------------------------------------------- loading and validation


class Section(msgspec.Struct, frozen=True):
    """One language and msgType of one event, parsed."""

    templates: dict[str, list[Piece]]
    advice: list[str]
    instruction: str


class EventTemplates(msgspec.Struct, frozen=True):
    """One event type's file, checked and parsed: its CAP defaults, the siren relay pattern per
    msgType and a ``Section`` per (language, msgType)."""

    meta: EventMeta
    sirens: dict[str, tuple[SirenPattern, int]]
    sections: dict[tuple[str, str], Section]


def _check_cap(doc: dict[str, object], where: str, problems: list[str]) -> None:
    for key, choices in _CAP_CHOICES.items():
        value = doc.get(key)
        if value not in choices:
            problems.append(f"{where}: {key} must be one of {', '.join(sorted(choices))}, not {value!r}")


def _check_sirens(doc: dict[str, object], where: str, problems: list[str]) -> dict[str, tuple[SirenPattern, int]]:
    sirens: dict[str, tuple[SirenPattern, int]] = {}
    table = doc.get("siren")
    if not isinstance(table, dict):
        problems.append(f"{where} [siren]: missing (alert, update and cancel patterns)")
        return sirens
    for key in sorted(set(table) - {"alert", "update", "cancel"}):
        problems.append(f"{where} [siren]: unknown key {key!r}")
    for kind in ("alert", "update", "cancel"):
        entry = table.get(kind)
        if not isinstance(entry, dict) or set(entry) != {"pattern", "duration_s"}:
            problems.append(f"{where} [siren.{kind}]: needs exactly pattern and duration_s")
            continue
        pattern, duration = entry["pattern"], entry["duration_s"]
        if pattern not in get_args(SirenPattern):
            problems.append(f"{where} [siren.{kind}]: pattern must be wail, steady or none, not {pattern!r}")
        elif not isinstance(duration, int) or isinstance(duration, bool) or not 0 <= duration <= 600:
            problems.append(f"{where} [siren.{kind}]: duration_s must be an integer 0..600, not {duration!r}")
        elif (pattern == "none") != (duration == 0):
            problems.append(f"{where} [siren.{kind}]: pattern none goes with duration_s 0 and only with it")
        else:
            sirens[kind] = (cast(SirenPattern, pattern), duration)
    return sirens


def _check_section(table: object, lang: str, kind: str, default: str, where: str, problems: list[str]) -> Section:
    here = f"{where} [{lang}.{kind}]"
    templates: dict[str, list[Piece]] = {}
    if not isinstance(table, dict):
        problems.append(f"{here}: section missing (needs {', '.join(RENDERINGS)})")
        return Section(templates, [], default)
    for key in sorted(set(table) - set(RENDERINGS) - {"advice", "instruction"}):
        problems.append(f"{here} {key}: unknown key")
    advice = table.get("advice", [])
    if not isinstance(advice, list) or not all(isinstance(a, str) and a.strip() for a in advice):
        problems.append(f"{here} advice: must be a list of non-empty strings")
        advice = []
    instruction = table.get("instruction", default)
    if not isinstance(instruction, str):
        problems.append(f"{here} instruction: must be a string")
        instruction = default
    for rendering in RENDERINGS:
        source = table.get(rendering)
        if source is None:
            problems.append(f"{here} {rendering}: rendering missing")
            continue
        if not isinstance(source, str) or not source.strip():
            problems.append(f"{here} {rendering}: must be a non-empty string")
            continue
        pieces, found = parse_template(source)
        problems.extend(f"{here} {rendering}: {p}" for p in found)
        if rendering == "telegram":
            for tag in sorted(set(re.findall(r"</?([a-zA-Z0-9]+)", source)) - _TELEGRAM_TAGS):
                problems.append(f"{here} telegram: tag <{tag}> is not allowed (only b, i, u, a)")
        templates[rendering] = pieces
    return Section(templates, [a.strip() for a in advice], instruction.strip())


def _check_file(path: Path, problems: list[str]) -> EventTemplates | None:
    where = str(path)
    before = len(problems)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"{where}: cannot read TOML: {exc}")
        return None
    allowed = {*_CAP_CHOICES, "siren", *LANGUAGES}
    for key in sorted(set(doc) - allowed):
        problems.append(f"{where}: unknown key {key!r}")
    _check_cap(doc, where, problems)
    sirens = _check_sirens(doc, where, problems)
    names: dict[str, str] = {}
    instructions: dict[str, str] = {}
    sections: dict[tuple[str, str], Section] = {}
    for lang in LANGUAGES:
        table = doc.get(lang)
        if not isinstance(table, dict):
            problems.append(f"{where} [{lang}]: language missing")
            continue
        for key in sorted(set(table) - {"event", "instruction", "alert", "update", "cancel"}):
            problems.append(f"{where} [{lang}] {key}: unknown key")
        for key in ("event", "instruction"):
            if not isinstance(table.get(key), str) or not table[key].strip():
                problems.append(f"{where} [{lang}] {key}: missing (a non-empty string)")
        names[lang] = str(table.get("event", "")).strip()
        instructions[lang] = str(table.get("instruction", "")).strip()
        for kind in ("alert", "update", "cancel"):
            sections[lang, kind] = _check_section(table.get(kind), lang, kind, instructions[lang], where, problems)
    if len(problems) > before:
        return None
    meta = EventMeta(
        category=str(doc["category"]),
        urgency=str(doc["urgency"]),
        severity=str(doc["severity"]),
        certainty=str(doc["certainty"]),
        names=names,
        instructions=instructions,
    )
    return EventTemplates(meta, sirens, sections)


def read_events(directory: Path) -> dict[str, EventTemplates]:
    """Read and check every ``*.toml`` in ``directory``; the file name is the event type.

    Raises ``TemplateProblems`` listing every problem of every file, or ``TemplateError`` when
    the directory does not exist.
    """
    if not directory.is_dir():
        raise TemplateError(f"{directory}: template directory does not exist")
    problems: list[str] = []
    events: dict[str, EventTemplates] = {}
    for path in sorted(directory.glob("*.toml")):
        if not _EVENT_NAME.match(path.stem):
            problems.append(f"{path}: event file names are lower-case letters, digits and _")
            continue
        event = _check_file(path, problems)
        if event is not None:
            events[path.stem] = event
    if not events and not problems:
        problems.append(f"{directory}: no *.toml alert templates")
    if problems:
        raise TemplateProblems(problems)
    return events
