"""Per-language renderings of an alert, cached: a million recipients share three renderings."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from channels.base import Language
from gateway.errors import TemplateError
from gateway.protocols.cap import Info
from gateway.warning.records import AlertRecord
from gateway.warning.templates import Catalogue, Rendered
from gateway.warning.zones import ZoneSet

LOCAL = ZoneInfo("Asia/Almaty")
LANGUAGES: tuple[Language, ...] = ("kk", "ru", "en")


class Rendering(Rendered, frozen=True, kw_only=True):
    """One language's rendering with the language it is in (a missing language falls back to ru)."""

    language: Language


class Renderer:
    def __init__(self, catalogue: Catalogue, zones: ZoneSet) -> None:
        self.catalogue = catalogue
        self.zones = zones
        self._cache: dict[tuple[str, str], Rendering] = {}

    def rendered(self, record: AlertRecord, language: str) -> Rendering:
        """The rendering for ``language`` (kk/ru/en); raises TemplateError if the template fails."""
        key = (record.id, language)
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            lang: Language = language if language in LANGUAGES else "ru"  # type: ignore[assignment]
            cached = self._cache[key] = self._render(record, lang)
        return cached

    def preview(self, record: AlertRecord) -> dict[str, Rendered]:
        return {lang: self._template(record, lang) for lang in LANGUAGES}

    def _render(self, record: AlertRecord, language: Language) -> Rendering:
        return Rendering(language=language, **msgspec.structs.asdict(self._template(record, language)))

    def _template(self, record: AlertRecord, language: str) -> Rendered:
        msg_type = record.cap.msg_type
        if msg_type not in ("Alert", "Update", "Cancel"):
            raise TemplateError(f"alert {record.id}: no rendering for msgType {msg_type}")
        return self.catalogue.render(record.event, language, fields(record, language, self.zones),  # type: ignore[arg-type]
                                     exercise=record.exercise, msg_type=msg_type)


def info_for(record: AlertRecord, language: str) -> Info | None:
    return next((i for i in record.cap.infos if i.language.split("-")[0] == language), None)


def fields(record: AlertRecord, language: str, zones: ZoneSet) -> dict[str, str]:
    """Template fields for one language: the CAP info in that language, zone titles, local times."""
    info = info_for(record, language)
    titles = [zones.zones[z].title.get(language, z) if z in zones.zones else z for z in record.zones]
    out = {
        "area": ", ".join(titles),
        "sender": info.sender_name if info and info.sender_name else record.cap.sender,
        "sent": local_time(record.cap.sent),
        "reference": record.root or record.id,
        "headline": info.headline if info else "",
        "description": info.description if info else "",
        "instruction": info.instruction if info else "",
        "expires": local_time(info.expires) if info and info.expires else "",
    }
    out.update({k: v for k, v in record.fields.items() if k not in out or not out[k]})
    return out


def local_time(moment: datetime) -> str:
    """ISO 8601 in Almaty time; the templates format it for each language."""
    return moment.astimezone(LOCAL).isoformat()
