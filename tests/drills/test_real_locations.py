"""Real tier: every RFC 5491 shape (with and without RFC 7459 confidence) and a civic address with every
field, by value in the INVITE (RFC 6442) through the real Asterisk: each incident holds what the document
said (shape, position, area, altitude, confidence, method, civic fields)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from gateway.incident.records import Location
from sim.lab import AsteriskInstance, GatewayProcess
from sim.sipp import Phones
from tests.drills.test_real_intake import place

NS = ('xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
      'xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0" '
      'xmlns:con="urn:ietf:params:xml:ns:geopriv:conf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
      'xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"')
M = 'uom="urn:ogc:def:uom:EPSG::9001"'
DEG = 'uom="urn:ogc:def:uom:EPSG::9102"'
CRS2, CRS3 = 'srsName="urn:ogc:def:crs:EPSG::4326"', 'srsName="urn:ogc:def:crs:EPSG::4979"'
PREFIX = "+77059990"  # no other test calls from these numbers
RING = [(43.26, 76.92), (43.25, 76.95), (43.23, 76.94), (43.24, 76.91), (43.26, 76.92)]


def document(location_info: str, method: str = "GPS") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><presence {NS} entity="pres:caller@operator.kz">'
            f'<dm:device id="handset"><gp:geopriv><gp:location-info>{location_info}</gp:location-info>'
            f'<gp:usage-rules/><gp:method>{method}</gp:method></gp:geopriv></dm:device></presence>')


def ring(pos_list: bool) -> str:
    if pos_list:
        return "<gml:posList>" + " ".join(f"{lat} {lon}" for lat, lon in RING) + "</gml:posList>"
    return "".join(f"<gml:pos>{lat} {lon}</gml:pos>" for lat, lon in RING)


CIVIC = {"country": "KZ", "A1": "Алматы", "A3": "Алматы", "A4": "Медеуский район", "RD": "Абая",
         "STS": "проспект", "HNO": "150", "HNS": "А", "LMK": "ЦУМ", "LOC": "2 подъезд", "FLR": "3", "NAM": "Школа 12",
         "PC": "050000", "BLD": "Корпус 2", "UNIT": "Б", "ROOM": "301", "SEAT": "12", "PLC": "школа",
         "PCN": "Almaty", "POBOX": "77", "ADDCODE": "KZ-75-0001", "RDBR": "1", "RDSEC": "7", "RDSUBBR": "2",
         "PRM": "Старая", "POM": "Новая"}
SHAPES: dict[str, tuple[str, str]] = {  # name -> (location-info, method)
    "point": (f'<gml:Point {CRS2}><gml:pos>43.2381 76.9456</gml:pos></gml:Point>', "GPS"),
    "circle": (f'<gs:Circle {CRS2}><gml:pos>43.2381 76.9456</gml:pos><gs:radius {M}>25</gs:radius></gs:Circle>'
               '<con:confidence pdf="normal">67</con:confidence>', "A-GPS"),
    "ellipse": (f'<gs:Ellipse {CRS2}><gml:pos>43.2381 76.9456</gml:pos><gs:semiMajorAxis {M}>40</gs:semiMajorAxis>'
                f'<gs:semiMinorAxis {M}>15</gs:semiMinorAxis><gs:orientation {DEG}>30</gs:orientation></gs:Ellipse>',
                "Cell"),
    "arcband": (f'<gs:ArcBand {CRS2}><gml:pos>43.2381 76.9456</gml:pos><gs:innerRadius {M}>100</gs:innerRadius>'
                f'<gs:outerRadius {M}>300</gs:outerRadius><gs:startAngle {DEG}>30</gs:startAngle>'
                f'<gs:openingAngle {DEG}>60</gs:openingAngle></gs:ArcBand>', "Cell"),
    "polygon": (f'<gml:Polygon {CRS2}><gml:exterior><gml:LinearRing>{ring(True)}</gml:LinearRing></gml:exterior>'
                '</gml:Polygon>', "Wiremap"),
    "polygon_pos": (f'<gml:Polygon {CRS2}><gml:exterior><gml:LinearRing>{ring(False)}</gml:LinearRing>'
                    '</gml:exterior></gml:Polygon><con:confidence pdf="rectangular">90</con:confidence>', "Wiremap"),
    "sphere": (f'<gs:Sphere {CRS3}><gml:pos>43.2381 76.9456 850</gml:pos><gs:radius {M}>20</gs:radius></gs:Sphere>',
               "GPS"),
    "ellipsoid": (f'<gs:Ellipsoid {CRS3}><gml:pos>43.2381 76.9456 800</gml:pos>'
                  f'<gs:semiMajorAxis {M}>30</gs:semiMajorAxis><gs:semiMinorAxis {M}>20</gs:semiMinorAxis>'
                  f'<gs:verticalAxis {M}>10</gs:verticalAxis><gs:orientation {DEG}>45</gs:orientation>'
                  '</gs:Ellipsoid>', "A-GPS"),
    "prism": (f'<gs:Prism {CRS3}><gs:base><gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>'
              + " ".join(f"{lat} {lon} 780" for lat, lon in RING)
              + f'</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></gs:base><gs:height {M}>20</gs:height>'
              '</gs:Prism>', "Wiremap"),
    "civic": ('<ca:civicAddress xml:lang="ru-KZ">' + "".join(f"<ca:{k}>{v}</ca:{k}>" for k, v in CIVIC.items())
              + "</ca:civicAddress>", "Manual"),
}


def check(name: str, loc: Location) -> None:
    """What each document said, as the incident keeps it."""
    expected_shape = {"polygon_pos": "polygon"}.get(name, name)
    assert (loc.source, loc.shape, loc.method) == ("pidf-lo", expected_shape, SHAPES[name][1]), loc
    if name == "civic":
        assert loc.civic == CIVIC and "Абая" in loc.address, loc
        return
    assert loc.lat is not None and loc.lon is not None and abs(loc.lat - 43.24) < 0.03 and abs(loc.lon - 76.93) < 0.03
    if name in ("polygon", "polygon_pos", "prism"):
        assert len(loc.points) >= 4, loc
    if name in ("sphere", "ellipsoid", "prism"):
        assert loc.altitude_m is not None and loc.vertical_m is not None, loc
    if name == "arcband":
        assert loc.arc_band is not None and loc.arc_band.outer_radius_m == 300 and loc.points, loc
    confidence = {"circle": (67.0, "normal"), "polygon_pos": (90.0, "rectangular")}.get(name)
    assert (loc.confidence, loc.confidence_pdf or None) == (confidence or (None, None)), loc


async def test_every_shape_and_a_full_civic_address_reach_the_incident(
        asterisk: AsteriskInstance, gateway: GatewayProcess, phones: Phones, tmp_path: Path) -> None:
    async def one(name: str, info: str, method: str) -> None:  # the number says which document it came from
        await place(asterisk, tmp_path / name, number=f"{PREFIX}{list(SHAPES).index(name):03d}",
                    pidf_lo=document(info, method), talk_ms=1500)

    async with trio.open_nursery() as nursery:
        for name, (info, method) in SHAPES.items():
            nursery.start_soon(one, name, info, method)
    found: dict[str, Location] = {}
    # the store is shared by the session's tests (the smoke drill calls from +77015550002, for one)
    ours = [s for s in await gateway.incidents() if str(s["number"]).startswith(PREFIX)]
    for summary in ours:
        name = list(SHAPES)[int(str(summary["number"])[-3:])]
        incident = await gateway.incident(str(summary["id"]))
        rejected = [e.data for e in incident.timeline if e.kind == "location_rejected"]
        assert not rejected, (name, rejected)
        assert incident.locations, (name, incident.timeline, sent_invite(tmp_path / name))
        found[name] = incident.locations[0]
    assert sorted(found) == sorted(SHAPES)
    for name, loc in found.items():
        check(name, loc)


def sent_invite(workdir: Path) -> str:
    """The INVITE as sipp sent it (for a failure's message)."""
    messages = workdir / "caller" / "messages.log"
    text = messages.read_text(errors="replace") if messages.exists() else "(no sipp message log)"
    start = text.find("INVITE sip:")
    return text[start:start + 4000] if start >= 0 else text[:2000]


async def test_a_location_sent_by_reference_is_fetched_from_the_location_server(
        asterisk: AsteriskInstance, gateway: GatewayProcess, phones: Phones, tmp_path: Path) -> None:
    """RFC 6442 by reference: the INVITE names a URI on the operator's location server (here a loopback one
    the drill config allows); the gateway fetches and reads the whole document, confidence included. A
    reference to a server outside ``[location] dereference`` is noted and never followed."""
    served = document(SHAPES["circle"][0], "A-GPS")
    async with location_server({"/loc/abc": served}) as base:
        await place_by_reference(asterisk, tmp_path / "allowed", f"{base}/loc/abc", "+77015559901")
        await place_by_reference(asterisk, tmp_path / "refused", "http://192.0.2.1/loc/x", "+77015559902")
        await trio.sleep(1)
    by_number = {s["number"]: s for s in await gateway.incidents()}
    fetched = await gateway.incident(str(by_number["+77015559901"]["id"]))
    [loc] = fetched.locations
    assert (loc.shape, loc.radius_m, loc.confidence, loc.confidence_pdf, loc.method) == (
        "circle", 25.0, 67.0, "normal", "A-GPS")
    refused = await gateway.incident(str(by_number["+77015559902"]["id"]))
    reasons = [str(e.data["reason"]) for e in refused.timeline if e.kind == "location_rejected"]
    assert refused.locations == [] and reasons and "not under [location] dereference" in reasons[0]


async def place_by_reference(asterisk: AsteriskInstance, workdir: Path, uri: str, number: str) -> None:
    from sim import sipp
    from sim import sipp_xml as scenario

    workdir.mkdir(parents=True, exist_ok=True)
    await sipp.place_call(asterisk.cfg, scenario.caller("112", number, "", location_uri=uri, talk_ms=2500),
                          workdir / "caller", 30)


@asynccontextmanager
async def location_server(documents: dict[str, str]) -> AsyncIterator[str]:
    """A location server on 127.0.0.1 answering GET <path> with its PIDF-LO."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from sim.http import run_server

    async def get(request: Request) -> Response:
        body = documents.get(request.url.path)
        return Response(body, media_type="application/pidf+xml") if body else Response(status_code=404)

    async with trio.open_nursery() as nursery:
        [url] = await nursery.start(run_server, Starlette(routes=[Route("/loc/{key}", get)]), "127.0.0.1", 0)
        yield url
        nursery.cancel_scope.cancel()


def big_ring(points: int) -> list[tuple[float, float]]:
    """A closed ring of ``points`` corners around the square (an operator's cell-sector outline)."""
    import math

    ring_ = [(round(43.24 + 0.01 * math.sin(2 * math.pi * i / points), 6),
              round(76.93 + 0.01 * math.cos(2 * math.pi * i / points), 6)) for i in range(points)]
    return ring_ + ring_[:1]


async def test_a_location_longer_than_its_place_in_the_stasis_arguments_is_read_in_full(
        asterisk: AsteriskInstance, gateway: GatewayProcess, phones: Phones, tmp_path: Path) -> None:
    """The dialplan hands the caller's location over in Stasis' arguments cut at 1,200 bytes
    (``protocols.call_facts``); a 100-corner polygon is longer, so the gateway reads ECGW_LOCATION by REST
    before it stores the incident: every corner reaches it, and nothing is rejected."""
    corners = big_ring(100)
    pos_list = " ".join(f"{lat} {lon}" for lat, lon in corners)
    info = (f'<gml:Polygon {CRS2}><gml:exterior><gml:LinearRing><gml:posList>{pos_list}</gml:posList>'
            '</gml:LinearRing></gml:exterior></gml:Polygon>')
    await place(asterisk, tmp_path, number="+77059991100", pidf_lo=document(info, "Wiremap"), talk_ms=1500)
    [summary] = [s for s in await gateway.incidents() if s["number"] == "+77059991100"]
    incident = await gateway.incident(str(summary["id"]))
    assert [e.data for e in incident.timeline if e.kind == "location_rejected"] == []
    [loc] = incident.locations
    assert (loc.shape, loc.method, len(loc.points)) == ("polygon", "Wiremap", len(corners) - 1), loc  # open ring
    assert incident.timeline[1].kind == "location_found"  # on the incident from its first write
