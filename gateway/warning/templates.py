"""Multilingual alert templates (kk/ru/en) — SKELETON: public API is stable, internals in progress."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from gateway.errors import TemplateError
from gateway.warning.sms import Segments, segments

Language = Literal["kk", "ru", "en"]
MsgType = Literal["Alert", "Update", "Cancel"]
LANGUAGES: tuple[Language, ...] = ("kk", "ru", "en")
DEFAULT_MAX_SMS_SEGMENTS = 4


class Rendered(msgspec.Struct, frozen=True, kw_only=True):
    sms: str
    subject: str
    text: str
    html: str
    telegram: str
    voice: str
    siren_pattern: str
    siren_duration_s: int
    sms_segments: Segments


class Catalogue:
    def __init__(self, docs: dict[str, dict[str, object]], *, max_sms_segments: int = DEFAULT_MAX_SMS_SEGMENTS) -> None:
        self._docs = docs
        self.max_sms_segments = max_sms_segments

    def events(self) -> list[str]:
        return sorted(self._docs)

    def render(
        self,
        event: str,
        language: Language,
        fields: Mapping[str, str],
        *,
        exercise: bool,
        msg_type: MsgType = "Alert",
    ) -> Rendered:
        if event not in self._docs:
            raise TemplateError(f"unknown event {event!r}")
        marker = {"kk": "ЖАТТЫҒУ! ", "ru": "УЧЕНИЯ! ", "en": "EXERCISE! "}[language] if exercise else ""
        body = f"{marker}{fields.get('headline', event)}: {fields.get('area', '')}"
        return Rendered(
            sms=body,
            subject=body,
            text=body,
            html=body,
            telegram=body,
            voice=body,
            siren_pattern="wail",
            siren_duration_s=180,
            sms_segments=segments(body),
        )

    def preview(
        self, event: str, fields: Mapping[str, str], *, exercise: bool, msg_type: MsgType = "Alert"
    ) -> dict[Language, Rendered]:
        return {lang: self.render(event, lang, fields, exercise=exercise, msg_type=msg_type) for lang in LANGUAGES}


def load_catalogue(directory: Path, *, max_sms_segments: int = DEFAULT_MAX_SMS_SEGMENTS) -> Catalogue:
    docs: dict[str, dict[str, object]] = {}
    for path in sorted(Path(directory).glob("*.toml")):
        with path.open("rb") as fh:
            docs[path.stem] = tomllib.load(fh)
    return Catalogue(docs, max_sms_segments=max_sms_segments)
