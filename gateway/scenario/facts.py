"""What a scenario knows about its incident: condition facts and template fields. Pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.incident.records import Incident, Location, response_location
from gateway.scenario.catalogue import Catalogue
from gateway.scenario.machine import Facts
from gateway.scenario.texts import STATUS_NAMES

ZoneOf = Callable[[float, float], str | None]
UNKNOWN_PLACE = {"kk": "белгісіз", "ru": "не установлен", "en": "unknown"}


def best(incident: Incident) -> Location | None:
    found = response_location(incident)
    return found if found is not None else (incident.locations[0] if incident.locations else None)


def zone(incident: Incident, zone_of: ZoneOf | None) -> str:
    loc = best(incident)
    if zone_of is None or loc is None or loc.lat is None or loc.lon is None:
        return ""
    return zone_of(loc.lat, loc.lon) or ""


def condition_facts(incident: Incident, catalogue: Catalogue, *, zone_of: ZoneOf | None, tz: ZoneInfo,
                    now_wall: float) -> Facts:
    local = datetime.fromtimestamp(now_wall, tz)
    category = catalogue.categories.get(incident.category)
    return Facts(priority=incident.priority, service=incident.service, zone=zone(incident, zone_of),
                 local_minutes=local.hour * 60 + local.minute,
                 warning_event=category.warning_event if category else "")


def address(incident: Incident, language: str) -> str:
    loc = best(incident)
    if loc is None:
        return UNKNOWN_PLACE.get(language, UNKNOWN_PLACE["ru"])
    if loc.address:
        return loc.address
    if loc.lat is not None and loc.lon is not None:
        radius = f" ±{loc.radius_m:.0f} m" if loc.radius_m else ""
        return f"{loc.lat:.5f}, {loc.lon:.5f}{radius}"
    return UNKNOWN_PLACE.get(language, UNKNOWN_PLACE["ru"])


def template_fields(incident: Incident, catalogue: Catalogue, language: str, **extra: str) -> dict[str, str]:
    category = catalogue.categories.get(incident.category)
    title = category.title.get(language, category.name) if category else (incident.category or "—")
    status = STATUS_NAMES.get(incident.status, {}).get(language, incident.status)
    return {"incident": incident.id, "category": title, "priority": str(incident.priority),
            "address": address(incident, language), "service": incident.service,
            "number": incident.caller.number or "—", "status": status, "unit": "", "waited": "", "centre": "",
            **extra}
