"""The CAP Atom feed: RFC 4287 structure, links to per-alert CAP that validates, language choice, exercises."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from lxml import etree

from gateway.errors import ProtocolError
from gateway.protocols.cap import NS, Alert, ValuePair, to_xml
from gateway.protocols.cap_atom import atom_feed
from gateway.protocols.cap_read import from_xml
from tests.core.test_cap import CANCEL, EXERCISE, SCHEMA, THUNDERSTORM, UPDATE

A = "{http://www.w3.org/2005/Atom}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
BASE = "https://warnings.example.kz/cap/"
UPDATED = datetime(2026, 11, 21, 11, 31, tzinfo=timezone(timedelta(hours=5)))


def url(alert: Alert) -> str:
    return f"{BASE}{alert.identifier}.xml"


def feed(alerts: list[Alert], *, language: str | None = None, embed: bool = False) -> etree._Element:
    xml = atom_feed(alerts, feed_id="https://warnings.example.kz/feed", title="Almaty civil defence warnings",
                    self_url="https://warnings.example.kz/feed.atom", updated=UPDATED, alert_url=url,
                    language=language, embed=embed)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return etree.fromstring(xml)


def one(parent: etree._Element, name: str) -> etree._Element:
    found = parent.findall(A + name)
    assert len(found) == 1, f"{name}: {len(found)}"
    return found[0]


def rfc3339(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    assert when.utcoffset() is not None
    return when


def test_feed_has_the_required_atom_elements_and_links_to_valid_cap() -> None:
    alerts = [CANCEL, UPDATE, THUNDERSTORM]
    served = {url(a): to_xml(a) for a in alerts}
    root = feed(alerts)
    assert root.tag == A + "feed"
    assert one(root, "id").text == "https://warnings.example.kz/feed"
    assert one(root, "title").text == "Almaty civil defence warnings"
    assert rfc3339(one(root, "updated").text) == UPDATED
    self_link = one(root, "link")
    assert self_link.attrib == {"rel": "self", "type": "application/atom+xml",
                                "href": "https://warnings.example.kz/feed.atom"}
    entries = root.findall(A + "entry")
    assert len(entries) == 3
    assert len({one(e, "id").text for e in entries}) == 3
    for entry, alert in zip(entries, alerts, strict=True):
        assert one(entry, "id").text == url(alert)
        assert one(entry, "title").text
        assert rfc3339(one(entry, "updated").text) == alert.sent
        assert one(one(entry, "author"), "name").text
        assert entry.find(A + "content") is None  # not embedded by default: the link is the message of record
        link = one(entry, "link")
        assert link.get("rel") == "alternate" and link.get("type") == "application/cap+xml"
        cap = served[link.get("href")]
        assert SCHEMA.validate(etree.fromstring(cap)), SCHEMA.error_log
        assert from_xml(cap) == alert


def test_entry_text_comes_from_the_first_info_or_the_asked_language() -> None:
    entry = feed([THUNDERSTORM]).find(A + "entry")
    title = one(entry, "title")
    assert title.text == "Алматыда қатты найзағай туралы ескерту" and title.get(XML_LANG) == "kk-KZ"
    assert one(one(entry, "author"), "name").text == "ҚР ТЖМ / МЧС РК"
    assert one(entry, "summary").text.startswith("Бүгін 15:00-ден")
    assert [c.get("term") for c in entry.findall(A + "category")] == ["Met"]
    for asked in ("ru", "ru-RU", "RU-ru"):
        entry = feed([THUNDERSTORM], language=asked).find(A + "entry")
        assert one(entry, "title").text == "Штормовое предупреждение: сильная гроза в Алматы"
        assert one(entry, "summary").get(XML_LANG) == "ru-RU"
    entry = feed([THUNDERSTORM], language="de").find(A + "entry")
    assert one(entry, "title").get(XML_LANG) == "kk-KZ"


def test_exercise_titles_say_so_and_infoless_cancel_gets_a_plain_title() -> None:
    entries = feed([EXERCISE, CANCEL]).findall(A + "entry")
    assert one(entries[0], "title").text == "EXERCISE: Штормовое предупреждение: сильная гроза в Алматы"
    assert one(entries[1], "title").text == "Cancel KZ-ALA-2026-0044"
    assert one(entries[1], "summary").text == CANCEL.note
    assert one(one(entries[1], "author"), "name").text == CANCEL.sender


def test_embedded_cap_is_the_single_child_of_xml_content_and_validates() -> None:
    for entry, alert in zip(feed([UPDATE, CANCEL], embed=True).findall(A + "entry"), [UPDATE, CANCEL], strict=True):
        content = one(entry, "content")
        assert content.get("type") == "text/xml" and len(content) == 1
        assert SCHEMA.validate(content[0]), SCHEMA.error_log
        assert from_xml(etree.tostring(content[0])) == alert


def test_an_empty_feed_is_still_a_valid_feed() -> None:
    root = feed([])
    assert root.findall(A + "entry") == []
    assert one(root, "id").text and one(root, "title").text is not None


def test_unwritable_feeds_raise_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="no timezone"):
        atom_feed([], feed_id="x", title="t", self_url="u", updated=datetime(2026, 1, 1), alert_url=url)
    with pytest.raises(ProtocolError, match="cannot be written"):
        atom_feed([], feed_id="x", title="bell\x07", self_url="u", updated=UPDATED, alert_url=url)
    bad = msgspec.structs.replace(CANCEL, note="bell\x07")
    with pytest.raises(ProtocolError, match="cannot be written"):
        atom_feed([bad], feed_id="x", title="t", self_url="u", updated=UPDATED, alert_url=url)


def test_utc_is_plus_zero_in_atom_but_minus_zero_in_the_embedded_cap() -> None:
    # RFC 3339 reads -00:00 as "local offset unknown"; CAP 1.2 section 3.3.2 requires it for UTC.
    entry = feed([EXERCISE], embed=True).find(A + "entry")
    assert one(entry, "published").text == "2026-11-21T03:00:00+00:00"
    assert one(entry, "content")[0].findtext(f"{{{NS}}}sent") == "2026-11-21T03:00:00-00:00"


def test_embedded_cap_keeps_repeated_value_names_in_order() -> None:
    channels = [ValuePair(value_name="BLOCKCHANNEL", value=v) for v in ("EAS", "NWEM", "CMAS")]
    alert = msgspec.structs.replace(UPDATE, infos=[msgspec.structs.replace(UPDATE.infos[0], parameters=channels)])
    content = one(feed([alert], embed=True).find(A + "entry"), "content")
    assert [p.findtext(f"{{{NS}}}value") for p in content[0].iter(f"{{{NS}}}parameter")] == ["EAS", "NWEM", "CMAS"]
    assert from_xml(etree.tostring(content[0])) == alert
