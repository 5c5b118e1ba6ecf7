"""Texts of notifications to responders (``alert_templates/responders/<name>.toml``), kk/ru/en. Pure.

A template has a subject and a text per language with ``{field}`` placeholders filled from the
incident (``facts``). The acknowledgement instruction is added per channel: a voice call asks for
a key press, an SMS for a reply, an e-mail carries a link; Telegram shows a button instead.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path

import msgspec

from gateway.errors import ConfigError
from gateway.settings.base import Base

LANGUAGES = ("kk", "ru", "en")
FIELDS = frozenset({"incident", "category", "priority", "address", "service", "number", "unit", "status",
                    "waited", "centre"})
ACK_HINT = {
    "voice": {"kk": "Растау үшін 1 басыңыз.", "ru": "Чтобы подтвердить, нажмите 1.",
              "en": "Press 1 to acknowledge."},
    "sms": {"kk": "Растау үшін 1 деп жауап беріңіз (код {code}).", "ru": "Для подтверждения ответьте 1 (код {code}).",
            "en": "Reply 1 to acknowledge (code {code})."},
    "email": {"kk": "Растау: {link}", "ru": "Подтвердить: {link}", "en": "Acknowledge: {link}"},
}
ACK_BUTTON = {"kk": "Растаймын", "ru": "Подтверждаю", "en": "Acknowledge"}
STATUS_NAMES = {
    "new": {"kk": "жаңа", "ru": "новое", "en": "new"},
    "assigned": {"kk": "наряд тағайындалды", "ru": "наряд назначен", "en": "unit assigned"},
    "en_route": {"kk": "наряд жолда", "ru": "наряд в пути", "en": "unit en route"},
    "on_scene": {"kk": "наряд оқиға орнында", "ru": "наряд на месте", "en": "unit on scene"},
    "closed": {"kk": "жабылды", "ru": "закрыто", "en": "closed"},
}


class Text(Base, frozen=True):
    subject: str
    text: str


class TemplateFile(Base, frozen=True):
    kk: Text
    ru: Text
    en: Text


class Rendered(msgspec.Struct, frozen=True):
    subject: str
    body: str


class Texts(msgspec.Struct, frozen=True):
    templates: dict[str, TemplateFile]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.templates)

    def render(self, name: str, language: str, facts: dict[str, str], *, channel: str = "", ack: bool = False,
               code: str = "", link: str = "") -> Rendered:
        """Fill a template; unknown placeholders stay visible rather than failing a notification."""
        found = self.templates[name]
        text: Text = getattr(found, language if language in LANGUAGES else "ru")
        values = _Defaulting(facts)
        body = text.text.format_map(values)
        hint = ACK_HINT.get(channel, {}).get(language if language in LANGUAGES else "ru")
        if hint and ack:
            body = f"{body} {hint.format(code=code, link=link)}"
        return Rendered(text.subject.format_map(values), body)


class _Defaulting(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def load(directory: str | Path) -> Texts:
    """Read every template; raises ConfigError listing each problem with its file."""
    directory = Path(directory)
    problems: list[str] = []
    templates: dict[str, TemplateFile] = {}
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        problems.append(f"{directory}: no responder templates")
    for path in paths:
        try:
            parsed = msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), TemplateFile)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, msgspec.ValidationError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        problems.extend(f"{path}: {p}" for p in _placeholder_problems(parsed))
        templates[path.stem] = parsed
    if problems:
        raise ConfigError(problems)
    return Texts(templates)


def _placeholder_problems(found: TemplateFile) -> list[str]:
    p: list[str] = []
    for lang in LANGUAGES:
        text: Text = getattr(found, lang)
        for part, value in (("subject", text.subject), ("text", text.text)):
            try:
                names = {field for _, field, _, _ in string.Formatter().parse(value) if field}
            except ValueError as exc:
                p.append(f"{lang}.{part}: {exc}")
                continue
            p.extend(f"{lang}.{part}: unknown placeholder {{{n}}}" for n in sorted(names - FIELDS))
    return p
