"""The registry of alarm sites (schools): Contact ID account -> who and where. Pure, apart from ``load_sites``.

Each school's panel is programmed with a 4-digit Contact ID account; the registry turns that
account into the school's names (kk/ru), address, coordinates, warning zone and the people to
tell, and holds the SHA-256 of the token the panel uses on the HTTP API. Only the hash is kept:
the registry file may be read by more people than may raise a school's alarm.

Loading checks everything and reports every problem at once, each with the file and the key
(``sites[2].contacts[0].phone``), then raises one ``ConfigError``. Two sites with the same
account, or the same token, are refused: an alarm must name exactly one school.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import ConfigError
from gateway.settings.base import Base

# Contact ID accounts are written in hex notation without A (see contact_id.py): 0-9 and B-F.
ACCOUNT = re.compile(r"^[0-9B-F]{4}$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Contact(Base, frozen=True):
    """Someone at the school to tell: director, security guard, deputy for safety."""

    name: str
    role: str
    phone: str  # E.164
    telegram_chat_id: int | None = None
    email: str = ""


class Site(Base, frozen=True):
    """One school with an alarm panel."""

    account: str  # Contact ID account in hex notation, upper case
    name_kk: str
    name_ru: str
    address: str
    lat: float
    lon: float
    panel_token_sha256: str  # lower-case hex SHA-256 of the panel's API bearer token
    zone: str = ""  # warning zone (config/zones.toml) the school is in
    contacts: list[Contact] = []


class _File(Base, frozen=True):
    sites: list[dict[str, Any]] = []


class Sites:
    """Sites by account, and the panel-token check. Built by ``parse_sites``/``load_sites``."""

    def __init__(self, sites: Iterable[Site]) -> None:
        self.by_account: dict[str, Site] = {site.account: site for site in sites}

    def __len__(self) -> int:
        return len(self.by_account)

    def get(self, account: str) -> Site | None:
        return self.by_account.get(account.upper())

    def by_token(self, token: str) -> Site | None:
        """The site whose panel token this is, or None. Compares every hash in constant time."""
        digest = token_hash(token)
        found = None
        for site in self.by_account.values():
            if hmac.compare_digest(site.panel_token_sha256, digest):
                found = site
        return found


def token_hash(token: str) -> str:
    """What goes into ``panel_token_sha256`` for a panel token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_sites(path: str | Path) -> Sites:
    """Read and check the registry at ``path``. Raises ``ConfigError`` listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file}: cannot read the alarm site registry: {exc}"]) from exc
    return parse_sites(text, source=str(file))


def parse_sites(text: str, *, source: str = "alarm_sites.toml") -> Sites:
    """Check the registry's TOML text; ``source`` prefixes every problem. Raises ``ConfigError``."""
    try:
        raw = msgspec.convert(tomllib.loads(text), _File)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from exc
    except msgspec.ValidationError as exc:
        raise ConfigError([f"{source}: {exc} (the file holds only [[sites]] tables)"]) from exc
    problems: list[str] = []
    sites: list[Site] = []
    for index, entry in enumerate(raw.sites):
        site = _site(entry, f"{source}: sites[{index}]", problems)
        if site is not None:
            sites.append(site)
    problems += _duplicates(sites, source)
    if problems:
        raise ConfigError(problems)
    return Sites(sites)


def check_zones(sites: Sites, known: Iterable[str], *, source: str = "alarm_sites.toml") -> list[str]:
    """Problems for sites naming a warning zone that does not exist (for ``check-config``)."""
    names = set(known)
    return [f"{source}: site {s.account}: zone {s.zone!r} is not one of the warning zones ({', '.join(sorted(names))})"
            for s in sites.by_account.values() if s.zone and s.zone not in names]


def _site(entry: dict[str, Any], where: str, problems: list[str]) -> Site | None:
    # Contacts are checked one by one, so a typo in one does not hide the problems of the rest.
    before = len(problems)
    entry = dict(entry)
    raw_contacts = entry.pop("contacts", [])
    if isinstance(entry.get("account"), str):
        entry["account"] = entry["account"].upper()
    try:
        site: Site | None = msgspec.convert(entry, Site)
    except msgspec.ValidationError as exc:
        problems.append(_located(where, exc))
        site = None
    contacts = _contacts(raw_contacts, f"{where}.contacts", problems)
    if not raw_contacts:
        problems.append(f"{where}.contacts: a site needs at least one contact")
    if site is None:
        return None
    site = msgspec.structs.replace(site, contacts=contacts)
    if not ACCOUNT.match(site.account):
        problems.append(f"{where}.account: {site.account!r} must be 4 Contact ID digits (0-9, B-F), e.g. \"1201\"")
    for key in ("name_kk", "name_ru", "address"):
        if not getattr(site, key).strip():
            problems.append(f"{where}.{key}: must not be empty")
    if not -90 <= site.lat <= 90 or not -180 <= site.lon <= 180:
        problems.append(f"{where}: lat {site.lat}, lon {site.lon} are not coordinates (lat -90..90, lon -180..180)")
    if not SHA256_HEX.match(site.panel_token_sha256):
        problems.append(f"{where}.panel_token_sha256: must be 64 lower-case hex digits (sha256 of the panel's token)")
    return site if len(problems) == before else None


def _contacts(raw: object, where: str, problems: list[str]) -> list[Contact]:
    if not isinstance(raw, list):
        problems.append(f"{where}: expected a list of contacts ([[sites.contacts]] tables)")
        return []
    found = []
    for number, entry in enumerate(raw):
        try:
            contact = msgspec.convert(entry, Contact)
        except msgspec.ValidationError as exc:
            problems.append(_located(f"{where}[{number}]", exc))
            continue
        _contact(contact, f"{where}[{number}]", problems)
        found.append(contact)
    return found


def _contact(contact: Contact, where: str, problems: list[str]) -> None:
    if not contact.name.strip():
        problems.append(f"{where}.name: must not be empty")
    if not contact.role.strip():
        problems.append(f"{where}.role: must not be empty")
    if not E164.match(contact.phone):
        problems.append(f"{where}.phone: {contact.phone!r} is not an E.164 number (+77011234567)")
    if contact.email and not EMAIL.match(contact.email):
        problems.append(f"{where}.email: {contact.email!r} is not an e-mail address")


def _duplicates(sites: list[Site], source: str) -> list[str]:
    problems = []
    seen: dict[str, Site] = {}
    tokens: dict[str, Site] = {}
    for site in sites:
        first = seen.setdefault(site.account, site)
        if first is not site:
            problems.append(f"{source}: account {site.account} is used by both {first.name_ru!r} and "
                            f"{site.name_ru!r}; each panel needs its own account")
        holder = tokens.setdefault(site.panel_token_sha256, site)
        if holder is not site:
            problems.append(f"{source}: sites {holder.account} and {site.account} have the same panel token; "
                            "a token must name one school")
    return problems


def _located(where: str, exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `float`, got `str` - at `$.lat`"; name the file's key instead.
    message = str(exc)
    text, sep, at = message.rpartition(" - at `$")
    if not sep:
        return f"{where}: {message}"
    return f"{where}{at.rstrip('`')}: {text}"
