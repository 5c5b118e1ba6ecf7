"""RFC 5491 shapes, RFC 7459 confidence, civic fields and notes of PIDF-LO documents written for the test."""

from __future__ import annotations

import math

import pytest

from gateway.geo import distance_m
from gateway.protocols import pidf
from gateway.protocols.pidf import LocationError

HEAD = ('<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
        'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml" '
        'xmlns:gs="http://www.opengis.net/pidflo/1.0" xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr" '
        'xmlns:con="urn:ietf:params:xml:ns:geopriv:conf" entity="sip:+77011234567@operator.invalid">')
SRS2 = 'srsName="urn:ogc:def:crs:EPSG::4326"'
SRS3 = 'srsName="urn:ogc:def:crs:EPSG::4979"'
M = 'uom="urn:ogc:def:uom:EPSG::9001"'
DEG = 'uom="urn:ogc:def:uom:EPSG::9102"'
RAD = 'uom="urn:ogc:def:uom:EPSG::9101"'
POINT = f"<gml:Point {SRS2}><gml:pos>43.2 76.9</gml:pos></gml:Point>"


def doc(body: str, method: str = "Cell", extra: str = "") -> str:
    return (f"{HEAD}<dm:device id='d'><gp:geopriv><gp:location-info>{body}</gp:location-info>"
            f"<gp:method>{method}</gp:method></gp:geopriv>{extra}</dm:device></presence>")


def arc(inner: str = "3594", outer: str = "4148", start: str = "20", opening: str = "20") -> str:
    return (f"<gs:ArcBand {SRS2}><gml:pos>43.2 76.9</gml:pos><gs:innerRadius {M}>{inner}</gs:innerRadius>"
            f"<gs:outerRadius {M}>{outer}</gs:outerRadius><gs:startAngle {DEG}>{start}</gs:startAngle>"
            f"<gs:openingAngle {DEG}>{opening}</gs:openingAngle></gs:ArcBand>")


def ring(coords: str, srs: str = SRS2) -> str:
    return (f"<gml:Polygon {srs}><gml:exterior><gml:LinearRing><gml:posList>{coords}</gml:posList>"
            "</gml:LinearRing></gml:exterior></gml:Polygon>")


# --- 3-D shapes keep altitude and vertical uncertainty, and give the map a circle -------------------

def test_sphere() -> None:
    [loc] = pidf.parse(doc(f"<gs:Sphere {SRS3}><gml:pos>43.2 76.9 850</gml:pos><gs:radius {M}>30</gs:radius>"
                           "</gs:Sphere>"))
    assert (loc.shape, loc.lat, loc.lon, loc.radius_m, loc.altitude_m, loc.vertical_m) == \
        ("sphere", 43.2, 76.9, 30.0, 850.0, 30.0)


def test_ellipsoid_with_orientation_in_radians() -> None:
    body = (f"<gs:Ellipsoid {SRS3}><gml:pos>43.2 76.9 850</gml:pos><gs:semiMajorAxis {M}>40</gs:semiMajorAxis>"
            f"<gs:semiMinorAxis {M}>10</gs:semiMinorAxis><gs:verticalAxis {M}>5</gs:verticalAxis>"
            f"<gs:orientation {RAD}>{math.pi / 4}</gs:orientation></gs:Ellipsoid>")
    [loc] = pidf.parse(doc(body))
    assert (loc.shape, loc.radius_m, loc.semi_minor_m, loc.altitude_m, loc.vertical_m) == \
        ("ellipsoid", 40.0, 10.0, 850.0, 5.0)
    assert loc.orientation_deg == pytest.approx(45.0)


def test_prism_as_a_sequence_of_pos() -> None:
    vertices = "".join(f"<gml:pos>{a} {b} 100</gml:pos>" for a, b in [(43.1, 76.9), (43.2, 76.9), (43.2, 77.0),
                                                                      (43.1, 76.9)])
    body = (f"<gs:Prism {SRS3}><gs:base><gml:Polygon><gml:exterior><gml:LinearRing>{vertices}</gml:LinearRing>"
            f"</gml:exterior></gml:Polygon></gs:base><gs:height {M}>9</gs:height></gs:Prism>")
    [loc] = pidf.parse(doc(body))
    assert loc.shape == "prism" and loc.points == [(43.1, 76.9), (43.2, 76.9), (43.2, 77.0)]
    assert (loc.altitude_m, loc.vertical_m) == (104.5, 4.5)  # from 100 m up to 109 m


def test_prism_without_height_is_refused() -> None:
    body = (f"<gs:Prism {SRS3}><gs:base>{ring('43.1 76.9 1 43.2 76.9 1 43.2 77.0 1')}</gs:base></gs:Prism>")
    with pytest.raises(LocationError, match="^gs:Prism: no gs:height$"):
        pidf.parse(doc(body))


def test_3d_polygon_keeps_its_altitude() -> None:
    [loc] = pidf.parse(doc(ring("43.1 76.9 800 43.2 76.9 800 43.2 77.0 800", SRS3)))
    assert (loc.points, loc.altitude_m) == ([(43.1, 76.9), (43.2, 76.9), (43.2, 77.0)], 800.0)


def test_polygon_interior_ring_is_ignored_and_noted() -> None:
    body = (f"<gml:Polygon {SRS2}><gml:exterior><gml:LinearRing><gml:posList>43.1 76.9 43.2 76.9 43.2 77.0"
            "</gml:posList></gml:LinearRing></gml:exterior><gml:interior><gml:LinearRing><gml:posList>"
            "43.15 76.95 43.16 76.95 43.16 76.96</gml:posList></gml:LinearRing></gml:interior></gml:Polygon>")
    parsed = pidf.parse_document(doc(body))
    assert parsed.locations[0].points == [(43.1, 76.9), (43.2, 76.9), (43.2, 77.0)]
    assert any("gml:interior" in n for n in parsed.notes)


# --- ArcBand: drawn as its band -------------------------------------------------------------------

def test_arc_band_outline_and_centroid() -> None:
    [loc] = pidf.parse(doc(arc()))
    assert loc.shape == "arcband" and loc.arc_band is not None
    assert loc.arc_band.centre == (43.2, 76.9)
    assert 3594 < distance_m(43.2, 76.9, loc.lat, loc.lon) < 4148
    assert all(3593 < distance_m(43.2, 76.9, a, b) < 4149 for a, b in loc.points)
    assert all(radius <= loc.radius_m + 1e-6 for radius in (distance_m(loc.lat, loc.lon, a, b) for a, b in loc.points))


def test_sector_without_inner_radius_includes_the_centre() -> None:
    [loc] = pidf.parse(doc(arc(inner="0", outer="1000", start="350", opening="90")))
    assert (43.2, 76.9) in loc.points and loc.arc_band.start_angle_deg == 350.0


def test_full_ring_is_centred_on_its_centre() -> None:
    [loc] = pidf.parse(doc(arc(inner="500", outer="1000", start="0", opening="360")))
    assert distance_m(43.2, 76.9, loc.lat, loc.lon) < 1
    assert loc.radius_m == pytest.approx(1000, rel=1e-3)


@pytest.mark.parametrize("kw, message", [
    (dict(inner="5000"), "innerRadius 5000 m must be less than outerRadius 4148 m"),
    (dict(opening="0"), "openingAngle 0 degrees out of range"),
    (dict(opening="400"), "openingAngle 400 degrees out of range"),
    (dict(outer="-1"), "outerRadius: distance -1.0 m out of range"),
])
def test_bad_arc_band_is_refused(kw: dict[str, str], message: str) -> None:
    with pytest.raises(LocationError, match=f"^gs:ArcBand: {message}"):
        pidf.parse(doc(arc(**kw)))


def test_arc_band_without_opening_angle_is_refused() -> None:
    body = arc().replace(f"<gs:openingAngle {DEG}>20</gs:openingAngle>", "")
    with pytest.raises(LocationError, match="^gs:ArcBand: no gs:openingAngle$"):
        pidf.parse(doc(body))


# --- coordinate reference systems and units -------------------------------------------------------

def test_missing_srs_name_is_assumed_wgs84_and_noted() -> None:
    parsed = pidf.parse_document(doc("<gml:Point><gml:pos>43.2 76.9</gml:pos></gml:Point>"))
    assert (parsed.locations[0].lat, parsed.locations[0].lon) == (43.2, 76.9)
    assert parsed.notes == ["gml:Point has no srsName: WGS 84 assumed (RFC 5491 requires one)"]


@pytest.mark.parametrize("srs", ["EPSG:4326", "epsg:4326", "urn:ogc:def:crs:EPSG:6.6:4326",
                                 "http://www.opengis.net/gml/srs/epsg.xml#4326"])
def test_other_names_of_wgs84_are_read_and_noted(srs: str) -> None:
    parsed = pidf.parse_document(doc(f'<gml:Point srsName="{srs}"><gml:pos>43.2 76.9</gml:pos></gml:Point>'))
    assert parsed.locations[0].lat == 43.2 and "read as EPSG::4326" in parsed.notes[0]


@pytest.mark.parametrize("srs", ["urn:ogc:def:crs:EPSG::32643", "urn:ogc:def:crs:EPSG::43260", "local"])
def test_other_crs_is_refused(srs: str) -> None:
    with pytest.raises(LocationError, match=f"^gml:Point: unsupported CRS '{srs}'"):
        pidf.parse(doc(f'<gml:Point srsName="{srs}"><gml:pos>43.2 76.9</gml:pos></gml:Point>'))


def test_angle_in_grads_is_refused() -> None:
    body = (f"<gs:Ellipse {SRS2}><gml:pos>43.2 76.9</gml:pos><gs:semiMajorAxis>9</gs:semiMajorAxis>"
            "<gs:semiMinorAxis>4</gs:semiMinorAxis><gs:orientation uom='urn:ogc:def:uom:EPSG::9105'>10"
            "</gs:orientation></gs:Ellipse>")
    with pytest.raises(LocationError, match="unsupported angle unit"):
        pidf.parse(doc(body))


def test_duplicate_radius_is_refused() -> None:
    body = f"<gs:Circle {SRS2}><gml:pos>43.2 76.9</gml:pos><gs:radius>5</gs:radius><gs:radius>7</gs:radius></gs:Circle>"
    with pytest.raises(LocationError, match="^gs:Circle: gs:radius given 2 times$"):
        pidf.parse(doc(body))


# --- confidence (RFC 7459) and the siblings of shapes ---------------------------------------------

@pytest.mark.parametrize("element, value, pdf", [
    ('<con:confidence pdf="normal">95</con:confidence>', 95.0, "normal"),
    ('<con:confidence pdf="rectangular">67.5</con:confidence>', 67.5, "rectangular"),
    ("<con:confidence>68</con:confidence>", 68.0, "unknown"),  # pdf defaults to unknown
    ('<con:confidence pdf="normal">unknown</con:confidence>', None, "normal"),
])
def test_confidence_is_kept(element: str, value: float | None, pdf: str) -> None:
    parsed = pidf.parse_document(doc(POINT + element))
    assert (parsed.locations[0].confidence, parsed.locations[0].confidence_pdf) == (value, pdf)
    assert parsed.notes == []


@pytest.mark.parametrize("element, note", [
    ('<con:confidence pdf="normal">150</con:confidence>', "con:confidence '150' is no percentage"),
    ('<con:confidence pdf="normal">high</con:confidence>', "con:confidence 'high' is no percentage"),
    ('<con:confidence pdf="gaussian">90</con:confidence>', "con:confidence pdf 'gaussian' is none of"),
])
def test_unusable_confidence_is_noted_never_fatal(element: str, note: str) -> None:
    parsed = pidf.parse_document(doc(element + POINT))
    assert parsed.locations[0].lat == 43.2
    assert any(n.startswith(note) for n in parsed.notes), parsed.notes


def test_unknown_siblings_are_ignored_and_noted() -> None:
    body = POINT + "<x:heading xmlns:x='urn:example:ext'>270</x:heading>"
    parsed = pidf.parse_document(doc(body))
    assert [loc.shape for loc in parsed.locations] == ["point"]
    assert parsed.notes == ["unsupported element {urn:example:ext}heading in location-info ignored"]


def test_a_bad_shape_beside_a_good_one_is_noted_and_the_good_one_kept() -> None:
    body = f"<gs:Circle {SRS2}><gml:pos>95 76.9</gml:pos><gs:radius>5</gs:radius></gs:Circle>{POINT}"
    parsed = pidf.parse_document(doc(body))
    assert [loc.shape for loc in parsed.locations] == ["point"]
    assert parsed.notes == ["refused: gs:Circle: coordinates out of range: 95.0, 76.9"]


def test_several_bad_shapes_are_all_named() -> None:
    body = "<gml:Triangle/><gml:location/>"
    with pytest.raises(LocationError, match=r"^unsupported shape gml:Triangle; obsolete RFC 4119 form"):
        pidf.parse(doc(body))


# --- what the document says besides shapes --------------------------------------------------------

def test_document_entity_method_and_timestamp() -> None:
    parsed = pidf.parse_document(doc(POINT, method="A-GPS", extra="<dm:timestamp>2026-01-02T03:04:05Z</dm:timestamp>"))
    assert parsed.entity == "sip:+77011234567@operator.invalid"
    [loc] = parsed.locations
    assert (loc.method, loc.timestamp) == ("A-GPS", "2026-01-02T03:04:05Z")


def test_each_geopriv_keeps_its_own_method() -> None:
    second = (f"<dm:person id='p'><gp:geopriv><gp:location-info>{POINT}</gp:location-info>"
              "<gp:method>Manual</gp:method></gp:geopriv></dm:person></presence>")
    document = doc(POINT, method="GPS").replace("</presence>", second)
    assert [loc.method for loc in pidf.parse(document)] == ["GPS", "Manual"]


# --- civic addresses keep every field ---------------------------------------------------------------

def test_every_rfc_5139_field_is_kept() -> None:
    fields = {"country": "KZ", "A1": "Алматы", "RD": "Абая", "RDSEC": "1", "RDBR": "Левый", "RDSUBBR": "2",
              "PRM": "Old", "POM": "Extension", "HNO": "10", "BLD": "B", "UNIT": "7", "FLR": "3", "ROOM": "12",
              "SEAT": "4", "PCN": "Алматы", "POBOX": "55", "ADDCODE": "A-1", "PLC": "office"}
    inner = "".join(f"<ca:{k}>{v}</ca:{k}>" for k, v in fields.items())
    [loc] = pidf.parse(doc(f"<ca:civicAddress xml:lang='ru'>{inner}</ca:civicAddress>"))
    assert loc.civic == fields
    assert loc.address == "KZ, Алматы, Old Абая Extension 10, bldg. B, fl. 3, unit 7, room 12, seat 4"


def test_civic_extension_clashing_with_a_field_keeps_its_namespace_and_repeats_are_joined() -> None:
    body = ("<ca:civicAddress xmlns:x='urn:example:x'><ca:country>KZ</ca:country><x:country>other</x:country>"
            "<ca:LOC>door 1</ca:LOC><ca:LOC>door 2</ca:LOC><ca:NAM> </ca:NAM></ca:civicAddress>")
    [loc] = pidf.parse(doc(body))
    assert loc.civic == {"country": "KZ", "{urn:example:x}country": "other", "LOC": "door 1; door 2"}


def test_civic_address_without_any_value_is_refused() -> None:
    with pytest.raises(LocationError, match="^civicAddress without any value$"):
        pidf.parse(doc("<ca:civicAddress><ca:country></ca:country></ca:civicAddress>"))
