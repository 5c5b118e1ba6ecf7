"""Real-world CAP documents (tests/data/real/cap, sources in tests/data/real/SOURCES.md) through import and back.

Import is ``from_xml`` then ``validate``: a valid document gives an alert with the fields it carries, every
eventCode, parameter and geocode in document order; an invalid one is refused with a ProtocolError that says
what is wrong, and nothing raises anything else. Every valid document written back with ``to_xml`` (and
embedded in the Atom feed) validates against the OASIS XSD and keeps every valueName pair in order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from lxml import etree

from gateway.errors import ProtocolError
from gateway.protocols.cap import NS, Alert, ValuePair, to_xml, validate, values
from gateway.protocols.cap_atom import atom_feed
from gateway.protocols.cap_read import from_xml
from tests.core.test_cap import SCHEMA

CORPUS = Path(__file__).resolve().parents[1] / "data" / "real" / "cap"
PAIR_KINDS = ("eventCode", "parameter", "geocode")


class Valid(NamedTuple):
    identifier: str
    sender: str
    msg_type: str
    languages: list[str]
    # (info index, "eventCode" / "parameter" / "geocode" of the first area, valueName) -> its values, in order
    pairs: dict[tuple[int, str, str], list[str]]


class Refused(NamedTuple):
    why: str


EXPECTED: dict[str, Valid | Refused] = {
    "oasis-cap12-a1-homeland-security-advisory.xml": Valid(
        "43b080713727", "hsas@dhs.gov", "Alert", ["en-US"], {(0, "parameter", "HSAS"): ["ORANGE"]}),
    "oasis-cap12-a2-severe-thunderstorm-same-geocodes.xml": Valid(
        "KSTO1055887203", "KSTO@NWS.NOAA.GOV", "Alert", ["en-US"],
        {(0, "eventCode", "SAME"): ["SVR"], (0, "geocode", "SAME"): ["006109", "006009", "006003"]}),
    "oasis-cap12-a3-earthquake-update.xml": Valid(
        "TRI13970876.2", "trinet@caltech.edu", "Update", ["en-US"],
        {(0, "parameter", "Magnitude"): ["3.4 Ml"], (0, "parameter", "Quality"): ["Excellent"]}),
    "oasis-cap12-a4-amber-alert-en-es.xml": Valid(
        "KAR0-0306112239-SW", "KARO@CLETS.DOJ.CA.GOV", "Alert", ["en-US", "es-US"],
        {(1, "eventCode", "SAME"): ["CAE"], (1, "geocode", "SAME"): ["006037"]}),
    "google-public-alerts-tsunami-cancellation-update.xml": Valid(
        "PAAQ-4-mg5a94", "wcatwc@noaa.gov", "Update", ["en-US"],
        {(0, "parameter", "VTEC"): ["/O.CAN.PAAQ.TS.W.0001.000000T0000Z-000000T0000Z/"],
         (0, "parameter", "NWSUGC"): ["BCZ220-210-922-912-921-911-110-AKZ026>029-023-024-019>022-025-051258-"]}),
    "nws-ipaws-tornado-warning-en-es.xml": Valid(
        "NWS-IDP-DEV-3889295-3321272", "w-nws.webmaster@noaa.gov", "Alert", ["en-US", "es-US"],
        {(0, "parameter", "BLOCKCHANNEL"): ["EAS", "NWEM"], (1, "parameter", "BLOCKCHANNEL"): ["EAS", "NWEM"],
         (0, "geocode", "UGC"): ["LAC059", "LAC021"], (0, "geocode", "SAME"): ["022059", "022021"]}),
    "nws-fire-weather-watch-cancel.xml": Valid(
        "urn:oid:2.49.0.1.840.0.200f7ea12e7e752707f256bcb75139b8363610b4.001.1", "w-nws.webmaster@noaa.gov",
        "Cancel", ["en-US"],
        {(0, "parameter", "BLOCKCHANNEL"): ["EAS", "NWEM", "CMAS"],
         (0, "geocode", "SAME"): ["030001", "030043", "030057", "030093"], (0, "geocode", "UGC"): ["MTZ111"]}),
    "nws-heat-advisory.xml": Valid(
        "urn:oid:2.49.0.1.840.0.26d705f00d37147aa01c9eace5c639d59b0c912f.001.1", "w-nws.webmaster@noaa.gov",
        "Alert", ["en-US"],
        {(0, "parameter", "BLOCKCHANNEL"): ["EAS", "NWEM", "CMAS"],
         (0, "geocode", "SAME"): ["048151", "048353", "048207", "048447", "048253", "048417", "048441", "048059"],
         (0, "geocode", "UGC"): ["TXZ049", "TXZ054", "TXZ098", "TXZ099", "TXZ113", "TXZ114", "TXZ127", "TXZ128"]}),
    "eccc-squall-watch-ended-en-fr-signed.xml": Valid(
        "urn:oid:2.49.0.1.124.1229657976.2026", "cap-pac@canada.ca", "Update", ["en-CA", "fr-CA"],
        {(0, "geocode", "profile:CAP-CP:Location:0.3"): ["3558001", "3558004", "3558041", "3558044", "3558054",
                                                         "3558090"],
         (1, "parameter", "layer:EC-MSC-SMC:1.0:Alert_Location_Status"): ["ended"],
         (1, "parameter", "layer:EC-MSC-SMC:1.1:Alert_Location_Status"): ["ended"]}),
    "naads-pelmorex-freehand-circle-signed.xml": Valid(
        "631D759D-BE6B-8715-5834-64E275678DC2", "testSender@Pelmorex-test", "Alert", ["en-CA"],
        {(0, "parameter", "NAADS:InternalUse:1"): ["Circle"], (0, "geocode", "profile:CAP-CP:Location:0.3"): ["3520"]}),
    "dwd-strong-thunderstorm-group-eventcodes.xml": Valid(
        "2.49.0.0.276.0.DWD.PVW.1689143760000.e2101e0b-c029-4bc8-a923-0217c3cbb3cb.DEU", "opendata@dwd.de",
        "Update", ["de-DE"],
        {(0, "eventCode", "GROUP"): ["THUNDERSTORM", "WIND", "RAIN", "HAIL"], (0, "eventCode", "II"): ["38"],
         (0, "parameter", "hail"): [">0 [cm]"]}),
    "geosphere-austria-thunderstorm-update-de-en.xml": Valid(
        "2.49.0.0.40.0.AT.20240712135949.4473_4_108", "cap@zamg.ac.at", "Update", ["de-DE", "en-GB"],
        {(1, "geocode", "EMMA_ID"): ["AT108"], (1, "parameter", "awareness_level"): ["2; yellow; Moderate"]}),
    "kmi-belgium-rain-update-four-languages.xml": Valid(
        "2.49.0.0.56.0.BE.20240712092001.1592243", "kmi-irm", "Update", ["nl-BE", "fr-BE", "en-GB", "de-DE"],
        {(3, "geocode", "NUTS2"): ["BE21"], (3, "parameter", "awareness_type"): ["10; Rain"]}),
    "cma-baoding-lightning-update-en-zh.xml": Valid(
        "13060041600000_20240712213138", "Baoding_Meteorological_Observatory", "Update", ["en-US", "zh-CN"],
        {(1, "geocode", "CPEAS Geographic Code"): ["130602000000"]}),
    "meteo-algeria-heatwave-relative-web.xml": Refused("alert/info[1]/web: 'www.meteo.dz' is not an absolute URI"),
    "nms-belize-small-craft-caution-no-sender.xml": Refused(
        "CAP <alert>: <sender> is missing (it comes before <sent>)"),
    "meteo-cameroon-heavy-rain-no-status.xml": Refused(
        "CAP <alert>: <status> is missing (it comes before <msgType>)"),
    "nws-atom-index-blizzard-warning-cap11.xml": Refused(
        "CAP 1.1 alert (namespace urn:oasis:names:tc:emergency:cap:1.1) is not supported"),
}
VALID = [name for name, expected in EXPECTED.items() if isinstance(expected, Valid)]


def import_cap(data: bytes) -> Alert:
    """What an import does: read the document, then refuse it if CAP 1.2 says it is not valid."""
    alert = from_xml(data)
    validate(alert)
    return alert


def document_pairs(root: etree._Element) -> list[tuple[str, str, str]]:
    """Every (element, valueName, value) under ``root`` in document order, read without the gateway's reader."""
    ns = root.tag.partition("}")[0][1:]
    return [(etree.QName(el).localname, el.findtext(f"{{{ns}}}valueName") or "", el.findtext(f"{{{ns}}}value") or "")
            for el in root.iter(*(f"{{{ns}}}{kind}" for kind in PAIR_KINDS))]


def model_pairs(alert: Alert) -> list[tuple[str, str, str]]:
    found = []
    for info in alert.infos:
        found += [("eventCode", p.value_name, p.value) for p in info.event_codes]
        found += [("parameter", p.value_name, p.value) for p in info.parameters]
        for area in info.areas:
            found += [("geocode", p.value_name, p.value) for p in area.geocodes]
    return found


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.xml")) == sorted(EXPECTED)
    assert len(VALID) >= 10 and len(EXPECTED) - len(VALID) >= 4


@pytest.mark.parametrize("name", EXPECTED)
def test_import_reads_valid_documents_and_refuses_invalid_ones_saying_why(name: str) -> None:
    expected = EXPECTED[name]
    try:
        alert = import_cap((CORPUS / name).read_bytes())
    except ProtocolError as exc:
        assert isinstance(expected, Refused), f"{name} was refused: {exc}"
        assert expected.why in str(exc)
        return
    assert isinstance(expected, Valid), f"{name} was accepted, expected: {expected}"
    assert (alert.identifier, alert.sender, alert.msg_type) == expected[:3]
    assert [info.language for info in alert.infos] == expected.languages
    for (i, kind, name_), wanted in expected.pairs.items():
        info = alert.infos[i]
        pairs = {"eventCode": info.event_codes, "parameter": info.parameters, "geocode": info.areas[0].geocodes}
        assert values(pairs[kind], name_) == wanted, (i, kind, name_)


@pytest.mark.parametrize("name", VALID)
def test_every_value_pair_is_kept_in_document_order(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    assert model_pairs(import_cap(data)) == document_pairs(etree.fromstring(data))


@pytest.mark.parametrize("name", VALID)
def test_written_back_valid_against_the_oasis_schema_with_every_pair_in_order(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    alert = import_cap(data)
    written = to_xml(alert)
    root = etree.fromstring(written)
    assert SCHEMA.validate(root), SCHEMA.error_log
    assert document_pairs(root) == document_pairs(etree.fromstring(data))
    assert from_xml(written) == alert


@pytest.mark.parametrize("name", VALID)
def test_embedded_in_the_atom_feed_every_pair_stays_in_order(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    alert = import_cap(data)
    feed = etree.fromstring(atom_feed([alert], feed_id="urn:feed", title="t", self_url="https://x/feed",
                                      updated=datetime(2026, 1, 1, tzinfo=UTC), alert_url=lambda a: "https://x/a",
                                      embed=True))
    embedded = feed.find(f".//{{{NS}}}alert")
    assert SCHEMA.validate(embedded), SCHEMA.error_log
    assert document_pairs(embedded) == document_pairs(etree.fromstring(data))


def test_the_oasis_appendix_example_keeps_its_three_same_geocodes() -> None:
    # CAP 1.2 appendix A.2: the standard's own example repeats valueName SAME in one area.
    alert = import_cap((CORPUS / "oasis-cap12-a2-severe-thunderstorm-same-geocodes.xml").read_bytes())
    assert alert.infos[0].areas[0].geocodes == [ValuePair(value_name="SAME", value=code)
                                                for code in ("006109", "006009", "006003")]


def test_a_cancel_or_update_may_expire_before_its_onset_or_as_it_is_sent() -> None:
    cancel = import_cap((CORPUS / "nws-fire-weather-watch-cancel.xml").read_bytes()).infos[0]
    assert cancel.expires is not None and cancel.onset is not None and cancel.expires < cancel.onset
    update = import_cap((CORPUS / "google-public-alerts-tsunami-cancellation-update.xml").read_bytes())
    assert update.infos[0].expires == update.sent
