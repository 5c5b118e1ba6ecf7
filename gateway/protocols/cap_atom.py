"""The CAP Atom feed (Atom 1.0, RFC 4287) that radio, TV and portal aggregators poll. Pure: no I/O.

One entry per CAP alert, in the way CAP aggregators (Google Public Alerts, the WMO alert hub,
broadcasters' CAP ingest) expect an "index" feed: the entry's ``link rel="alternate"`` with
``type="application/cap+xml"`` points at the per-alert CAP document, which is the message of
record; the entry's id is that same URL (permanent and unique, as an Atom id must be);
title, summary and author are human-readable extracts of one info block.

The CAP alert is *not* embedded in ``<content>`` by default: aggregators fetch the linked
document (and must, to see every language and area), embedding every alert makes each poll of
the feed many times larger, and a signed CAP document would not survive re-serialisation
inside another document. ``embed=True`` adds ``<content type="text/xml">`` holding the alert
for consumers that want a single request.

Alerts that are not ``Actual`` get their status in capitals in front of the title so that an
exercise read out by a person can never pass for a real warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from lxml import etree

from gateway.errors import ProtocolError
from gateway.protocols.cap import MIME_TYPE, NS, Alert, Info, cap_time, to_element

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_MIME_TYPE = "application/atom+xml"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def atom_feed(entries: Iterable[Alert], *, feed_id: str, title: str, self_url: str, updated: datetime,
              alert_url: Callable[[Alert], str], language: str | None = None, embed: bool = False) -> bytes:
    """An Atom 1.0 feed of CAP alerts, one entry per alert in the order given (newest first is usual).

    ``feed_id`` is the feed's permanent IRI, ``self_url`` where the feed is served, ``updated``
    when the set of entries last changed (timezone-aware). ``alert_url(alert)`` is the URL of
    that alert's CAP XML, served as ``application/cap+xml``. Entry text is taken from the info
    block in ``language`` ("kk" or "kk-KZ"; the first info if none matches or none is asked).
    Which alerts to list (current ones, cancellations, no exercises on a public feed) is the
    caller's choice. Raises ProtocolError for a naive datetime or text XML cannot carry.
    """
    feed = etree.Element(_a("feed"), nsmap={None: ATOM_NS})
    try:
        _put(feed, "id", feed_id)
        _put(feed, "title", title)
        _put(feed, "updated", _rfc3339(updated))
        etree.SubElement(feed, _a("link"), rel="self", type=ATOM_MIME_TYPE, href=self_url)
        for alert in entries:
            feed.append(_entry(alert, alert_url(alert), language, embed))
    except ValueError as exc:  # lxml refuses text XML 1.0 cannot carry
        raise ProtocolError(f"CAP Atom feed {feed_id!r} cannot be written: {exc}") from exc
    return _DECLARATION + etree.tostring(feed, encoding="UTF-8", xml_declaration=False, pretty_print=True)


def _entry(alert: Alert, url: str, language: str | None, embed: bool) -> etree._Element:
    info = _pick(alert.infos, language)
    entry = etree.Element(_a("entry"))
    _put(entry, "id", url)
    heading = (info.headline or info.event) if info else ""
    heading = heading or f"{alert.msg_type} {alert.identifier}"
    if alert.status != "Actual":
        heading = f"{alert.status.upper()}: {heading}"
    _put(entry, "title", heading, info)
    _put(entry, "updated", _rfc3339(alert.sent))
    _put(entry, "published", _rfc3339(alert.sent))
    author = etree.SubElement(entry, _a("author"))
    _put(author, "name", (info.sender_name if info else "") or alert.sender)
    summary = (info.description or info.instruction or info.headline) if info else alert.note
    if summary:
        _put(entry, "summary", summary, info)
    for category in info.categories if info else []:
        etree.SubElement(entry, _a("category"), term=category, scheme=NS)
    etree.SubElement(entry, _a("link"), rel="alternate", type=MIME_TYPE, href=url)
    if embed:
        content = etree.SubElement(entry, _a("content"), type="text/xml")
        content.append(to_element(alert))
    return entry


def _pick(infos: list[Info], language: str | None) -> Info | None:
    if language:
        wanted = language.lower()
        for info in infos:
            have = info.language.lower()
            if have == wanted or have.startswith(wanted + "-") or wanted.startswith(have + "-"):
                return info
    return infos[0] if infos else None


def _put(parent: etree._Element, name: str, text: str, info: Info | None = None) -> None:
    el = etree.SubElement(parent, _a(name))
    el.text = text
    if info is not None:
        el.set(_XML_LANG, info.language)


def _rfc3339(when: datetime) -> str:
    # CAP writes UTC as -00:00, which RFC 3339 reads as "local offset unknown"; Atom's times are UTC.
    text = cap_time(when)
    return text[:-6] + "+00:00" if text.endswith("-00:00") else text


def _a(name: str) -> str:
    return f"{{{ATOM_NS}}}{name}"
