"""Who the centre can reach: people with roles and contacts, escalation tiers and higher centres.

Read from ``config/responders.toml``. A person lists the channels they prefer, in order; a
notification goes to the first of the step's channels they can be reached on and falls back to
the next when a channel fails. ``console`` is not a delivery channel: every notification shows on
the dispatcher console as a timeline event.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from gateway.errors import ConfigError
from gateway.scenario.model import Channel
from gateway.settings.base import Base

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
DELIVERY: tuple[Channel, ...] = ("voice", "sms", "telegram", "email")
# Roles filled per incident rather than from the directory (an alarm site's own contacts).
DYNAMIC_ROLES = frozenset({"site_contacts"})


class Person(Base, frozen=True):
    name: str
    display: str = ""
    roles: list[str] = []
    phone: str = ""  # E.164; voice and SMS
    telegram: int | None = None  # chat id of their private chat with the responders' bot
    email: str = ""
    # preferred first
    channels: list[Channel] = msgspec.field(default_factory=lambda: ["voice", "telegram", "sms", "email"])
    language: Literal["kk", "ru", "en"] = "ru"

    def address(self, channel: str) -> str:
        """Where this person is reached on ``channel``; "" if they are not."""
        if channel in ("voice", "sms"):
            return self.phone
        if channel == "telegram":
            return str(self.telegram) if self.telegram is not None else ""
        if channel == "email":
            return self.email
        return ""

    def route(self, step_channels: list[str]) -> list[str]:
        """The step's delivery channels this person can be reached on, in the person's order of preference."""
        return [c for c in self.channels if c in step_channels and c in DELIVERY and self.address(c)]


class Tier(Base, frozen=True):
    """An escalation tier: who is told when a scenario escalates, and how hard we insist."""

    name: str
    roles: list[str] = []
    people: list[str] = []
    channels: list[Channel] = msgspec.field(default_factory=lambda: ["voice", "sms"])
    template: str = "escalated"
    ack: Literal["none", "any", "each"] = "any"
    timeout_s: float = 60.0
    repeat: int = 3


class Centre(Base, frozen=True):
    """A higher centre an incident can be forwarded to."""

    name: str
    title: str = ""
    phone: str = ""
    email: str = ""
    channels: list[Channel] = msgspec.field(default_factory=lambda: ["email", "sms"])
    language: Literal["kk", "ru", "en"] = "ru"

    def as_person(self) -> Person:
        return Person(name=f"centre:{self.name}", display=self.title, phone=self.phone, email=self.email,
                      channels=self.channels, language=self.language)


class DirectoryFile(Base, frozen=True):
    people: list[Person] = []
    tiers: list[Tier] = []
    centres: list[Centre] = []
    category_watchers: dict[str, list[str]] = {}  # category (or "*") -> roles told of every status change


class Directory(msgspec.Struct, frozen=True, kw_only=True):
    people: dict[str, Person]
    tiers: dict[str, Tier]
    centres: dict[str, Centre]
    watchers: dict[str, list[str]]

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r for p in self.people.values() for r in p.roles) | DYNAMIC_ROLES

    def with_role(self, role: str) -> list[Person]:
        return [p for p in self.people.values() if role in p.roles]

    def by_phone(self, number: str) -> list[Person]:
        return [p for p in self.people.values() if number and p.phone == number]

    def watchers_of(self, category: str) -> list[Person]:
        roles = [*self.watchers.get("*", []), *self.watchers.get(category, [])]
        seen: dict[str, Person] = {}
        for role in roles:
            for person in self.with_role(role):
                seen.setdefault(person.name, person)
        return list(seen.values())


def load(path: str | Path) -> Directory:
    """Read and check the directory; raises ConfigError listing every problem with its place."""
    path = Path(path)
    try:
        raw = msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), DirectoryFile)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from exc
    problems = _problems(path, raw)
    if problems:
        raise ConfigError(problems)
    return Directory(people={p.name: p for p in raw.people}, tiers={t.name: t for t in raw.tiers},
                     centres={c.name: c for c in raw.centres}, watchers=raw.category_watchers)


def _problems(path: Path, raw: DirectoryFile) -> list[str]:
    p: list[str] = []
    names = [x.name for x in raw.people]
    for i, person in enumerate(raw.people):
        where = f"{path}: people[{i}] ({person.name})"
        if not NAME.match(person.name):
            p.append(f"{where}: name: expected lower-case letters, digits or _")
        if names.count(person.name) > 1:
            p.append(f"{where}: duplicate person")
        if person.phone and not E164.match(person.phone):
            p.append(f"{where}: phone {person.phone!r} is not E.164 (+7...)")
        if person.email and "@" not in person.email:
            p.append(f"{where}: email {person.email!r} has no @")
        if not any(person.address(c) for c in DELIVERY):
            p.append(f"{where}: no phone, telegram or email: this person cannot be reached")
    roles = frozenset(r for x in raw.people for r in x.roles) | DYNAMIC_ROLES
    for i, tier in enumerate(raw.tiers):
        where = f"{path}: tiers[{i}] ({tier.name})"
        p.extend(f"{where}: role {r!r}: nobody has it" for r in tier.roles if r not in roles)
        p.extend(f"{where}: unknown person {n!r}" for n in tier.people if n not in names)
        if not (tier.roles or tier.people):
            p.append(f"{where}: nobody to escalate to")
    for i, centre in enumerate(raw.centres):
        if not centre.as_person().route(list(centre.channels)):
            p.append(f"{path}: centres[{i}] ({centre.name}): no address on any of its channels")
    for category, watch in raw.category_watchers.items():
        p.extend(f"{path}: category_watchers.{category}: role {r!r}: nobody has it" for r in watch if r not in roles)
    return p
