"""PIDF-LO build/parse round trips and hostile or malformed documents."""

from __future__ import annotations

import math

import pytest

from gateway.protocols import pidf
from gateway.protocols.pidf import LocationError

ALMATY = (43.2381, 76.9456)
SQUARE = [(43.1, 76.9), (43.2, 76.9), (43.2, 77.0), (43.1, 77.0)]
HEAD = ('<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
        'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml" '
        'xmlns:gs="http://www.opengis.net/pidflo/1.0" xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr">')
SRS = 'srsName="urn:ogc:def:crs:EPSG::4326"'
METRE = 'uom="urn:ogc:def:uom:EPSG::9001"'


def doc(body: str, method: str = "Cell") -> str:
    """A hand-written PIDF-LO around one location-info body."""
    return (f"{HEAD}<dm:device id='d'><gp:geopriv><gp:location-info>{body}</gp:location-info>"
            f"<gp:method>{method}</gp:method></gp:geopriv></dm:device></presence>")


def circle(pos: str = "43.2 76.9", radius: str = "25", uom: str = METRE) -> str:
    return doc(f"<gs:Circle {SRS}><gml:pos>{pos}</gml:pos><gs:radius {uom}>{radius}</gs:radius></gs:Circle>")


# --- round trips -------------------------------------------------------------------------------

def test_point_round_trip() -> None:
    [loc] = pidf.parse(pidf.build("point", lat=ALMATY[0], lon=ALMATY[1]))
    assert (loc.source, loc.shape, loc.lat, loc.lon) == ("pidf-lo", "point", *ALMATY)
    assert loc.radius_m is None
    assert loc.method == "GPS"


def test_circle_round_trip_and_bytes_input() -> None:
    text = pidf.build("circle", lat=ALMATY[0], lon=ALMATY[1], radius=25, method="Cell")
    for document in (text, text.encode("utf-8")):
        [loc] = pidf.parse(document, source="aml")
        assert (loc.source, loc.shape, loc.lat, loc.lon, loc.radius_m) == ("aml", "circle", *ALMATY, 25.0)
        assert loc.method == "Cell"


def test_ellipse_round_trip() -> None:
    [loc] = pidf.parse(pidf.build("ellipse", lat=43.2, lon=76.9, semi_major=100, semi_minor=40, orientation=30))
    assert loc.shape == "ellipse"
    assert (loc.lat, loc.lon) == (43.2, 76.9)
    assert loc.radius_m == 100.0  # the uncertainty is the larger axis
    assert loc.semi_minor_m == 40.0
    assert loc.orientation_deg == 30.0


def test_ellipse_with_swapped_axes_reports_the_smaller_as_minor() -> None:
    [loc] = pidf.parse(pidf.build("ellipse", lat=43.2, lon=76.9, semi_major=40, semi_minor=100))
    assert (loc.radius_m, loc.semi_minor_m) == (100.0, 40.0)
    assert loc.orientation_deg == 90.0  # the shape as sent: its long axis across the one named major


def test_ellipse_orientation_in_radians_is_converted_to_degrees() -> None:
    body = (f"<gs:Ellipse {SRS}><gml:pos>43.2 76.9</gml:pos><gs:semiMajorAxis {METRE}>100</gs:semiMajorAxis>"
            f"<gs:semiMinorAxis {METRE}>40</gs:semiMinorAxis>"
            f'<gs:orientation uom="urn:ogc:def:uom:EPSG::9101">{math.pi / 2}</gs:orientation></gs:Ellipse>')
    [loc] = pidf.parse(doc(body))
    assert loc.orientation_deg == pytest.approx(90.0)


def test_ellipse_without_orientation_defaults_to_zero() -> None:
    body = (f"<gs:Ellipse {SRS}><gml:pos>43.2 76.9</gml:pos><gs:semiMajorAxis>100</gs:semiMajorAxis>"
            "<gs:semiMinorAxis>40</gs:semiMinorAxis></gs:Ellipse>")
    [loc] = pidf.parse(doc(body))
    assert loc.orientation_deg == 0.0


@pytest.mark.parametrize("points", [SQUARE, SQUARE + SQUARE[:1]])
def test_polygon_round_trip_drops_closing_vertex(points: list[tuple[float, float]]) -> None:
    [loc] = pidf.parse(pidf.build("polygon", points=points))
    assert loc.shape == "polygon"
    assert loc.points == SQUARE
    assert loc.lat == pytest.approx(43.15)
    assert loc.lon == pytest.approx(76.95)
    assert 5000 < loc.radius_m < 8000  # centre to corner of a ~11 x 8 km box


def test_polygon_from_separate_pos_elements() -> None:
    ring = "".join(f"<gml:pos>{a} {b}</gml:pos>" for a, b in SQUARE + SQUARE[:1])
    body = f"<gml:Polygon {SRS}><gml:exterior><gml:LinearRing>{ring}</gml:LinearRing></gml:exterior></gml:Polygon>"
    [loc] = pidf.parse(doc(body))
    assert loc.points == SQUARE


def test_polygon_3d_poslist_is_read_as_triplets() -> None:
    coords = " ".join(f"{a} {b} 800" for a, b in SQUARE)
    body = (f'<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4979"><gml:exterior><gml:LinearRing>'
            f'<gml:posList srsDimension="3">{coords}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>')
    [loc] = pidf.parse(doc(body))
    assert loc.points == SQUARE


def test_civic_round_trip_escapes_and_ignores_unknown_fields() -> None:
    civic = {"country": "KZ", "A1": "Алматы", "A6": "Абая", "HNO": "10", "NAM": '<b>"Café" & Co</b>', "BOGUS": "x"}
    [loc] = pidf.parse(pidf.build("civic", civic=civic))
    assert loc.shape == "civic"
    assert loc.lat is None and loc.lon is None
    assert loc.civic == {k: v for k, v in civic.items() if k != "BOGUS"}


def test_civic_values_are_capped() -> None:
    [loc] = pidf.parse(pidf.build("civic", civic={"country": "KZ", "LOC": "x" * 1000}))
    assert len(loc.civic["LOC"]) == 128


def test_several_locations_are_all_returned() -> None:
    body = (f"<gml:Point {SRS}><gml:pos>43.2 76.9</gml:pos></gml:Point>"
            "<ca:civicAddress><ca:country>KZ</ca:country></ca:civicAddress>")
    assert [loc.shape for loc in pidf.parse(doc(body))] == ["point", "civic"]


def test_three_dimensional_pos_is_accepted() -> None:
    [loc] = pidf.parse(doc(f"<gml:Point {SRS}><gml:pos>43.2 76.9 850</gml:pos></gml:Point>"))
    assert (loc.lat, loc.lon) == (43.2, 76.9)


def test_method_is_capped() -> None:
    [loc] = pidf.parse(pidf.build("point", lat=1, lon=2, method="M" * 500))
    assert loc.method == "M" * 32


def test_build_rejects_unknown_shape() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        pidf.build("triangle")


def test_build_escapes_entity() -> None:
    text = pidf.build("point", entity='sip:a"<b>&@x')
    assert pidf.parse(text)[0].shape == "point"


# --- hostile XML -------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + f"]>{HEAD}<x>&lol9;</x></presence>"
)
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                   f"{HEAD}<x>&xxe;</x></presence>")
EXTERNAL_DTD = f'<?xml version="1.0"?><!DOCTYPE presence SYSTEM "http://evil.invalid/x.dtd">{HEAD}</presence>'
PARAMETER_ENTITY = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY % ext SYSTEM "http://evil.invalid/x"> %ext;]>'
                    f"{HEAD}</presence>")


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
                         ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"])
def test_hostile_xml_is_rejected(document: str) -> None:
    with pytest.raises(LocationError, match="hostile"):
        pidf.parse(document)


def test_undeclared_entity_is_not_well_formed() -> None:
    with pytest.raises(LocationError, match="well-formed"):
        pidf.parse(f"{HEAD}<x>&undeclared;</x></presence>")


def test_oversize_document_is_rejected_before_parsing() -> None:
    big = doc(f"<gml:Point {SRS}><gml:pos>43.2 76.9</gml:pos></gml:Point>") + " " * pidf.MAX_BYTES
    with pytest.raises(LocationError, match="exceeds"):
        pidf.parse(big)
    with pytest.raises(LocationError, match="exceeds"):
        pidf.parse(big.encode())


def test_size_limit_counts_bytes_not_characters() -> None:
    name = "Ж" * (pidf.MAX_BYTES * 3 // 4)  # fewer characters than MAX_BYTES, but twice as many bytes
    document = pidf.build("civic", civic={"country": "KZ", "NAM": name})
    assert len(document) < pidf.MAX_BYTES < len(document.encode())
    with pytest.raises(LocationError, match="exceeds"):
        pidf.parse(document)


@pytest.mark.parametrize(
    "document",
    ["", b"", "not xml", "<presence", b"\xff\xfe\x00<", "\ud800",
     b'<?xml version="1.0" encoding="no-such-codec"?><presence/>'],
    ids=["empty-str", "empty-bytes", "text", "truncated", "bad-bytes", "lone-surrogate", "unknown-encoding"],
)
def test_garbage_is_a_location_error(document: str | bytes) -> None:
    with pytest.raises(LocationError):
        pidf.parse(document)


@pytest.mark.parametrize("document", ["<presence/>", "<html><body/></html>",
                                      '<presence xmlns="urn:example:other"/>'])
def test_wrong_root_is_rejected(document: str) -> None:
    with pytest.raises(LocationError, match="root element"):
        pidf.parse(document)


@pytest.mark.parametrize("document, why", [
    (f"{HEAD}</presence>", "carries no location-info"),
    (f"{HEAD}<dm:device id='d'><gp:geopriv><gp:method>GPS</gp:method></gp:geopriv></dm:device></presence>",
     "carries no location-info"),
    (doc(""), "location-info is empty"),
])
def test_missing_location_info_is_rejected(document: str, why: str) -> None:
    with pytest.raises(LocationError, match=f"^no position in the document: .*{why}"):
        pidf.parse(document)


@pytest.mark.parametrize("body, message", [
    (f"<gml:Triangle {SRS}><gml:pos>1 2</gml:pos></gml:Triangle>", "^unsupported shape gml:Triangle$"),
    (f"<gs:Cone {SRS}><gml:pos>1 2</gml:pos></gs:Cone>", "^unsupported shape gs:Cone$"),
    ("<unknown xmlns='urn:x'><gml:pos>1 2</gml:pos></unknown>",
     "^no position in the document: location-info holds only the unsupported element {urn:x}unknown$"),
])
def test_unknown_shape_is_rejected(body: str, message: str) -> None:
    with pytest.raises(LocationError, match=message):
        pidf.parse(doc(body))


@pytest.mark.parametrize("body, message", [
    ("<gml:Triangle/>", "unsupported shape gml:Triangle"),
    ("<unknown xmlns='urn:x'/>", "no position in the document"),
    ("<gml:Point/>", r"gml:Point: no position \(gml:pos missing\)"),
    (f"<gs:Circle {SRS}><gs:radius>5</gs:radius></gs:Circle>", r"gs:Circle: no position \(gml:pos missing\)"),
])
def test_shape_without_position_is_rejected(body: str, message: str) -> None:
    with pytest.raises(LocationError, match=message):
        pidf.parse(doc(body))


# --- bad values --------------------------------------------------------------------------------

@pytest.mark.parametrize("pos", ["", "43.2", "43.2 76.9 1 2", "abc def", "43,2 76,9", "NaN 76.9", "43.2 inf",
                                 "90.0001 0", "-91 0", "0 180.5", "0 -181", "1e999 0"])
def test_bad_coordinates_are_rejected(pos: str) -> None:
    with pytest.raises(LocationError):
        pidf.parse(circle(pos=pos))


@pytest.mark.parametrize("pos", ["90 180", "-90 -180", "0 0"])
def test_coordinate_limits_are_inclusive(pos: str) -> None:
    assert pidf.parse(circle(pos=pos))[0].shape == "circle"


@pytest.mark.parametrize("radius", ["-1", "1000001", "abc", "nan", "", "1 2"])
def test_bad_radius_is_rejected(radius: str) -> None:
    with pytest.raises(LocationError):
        pidf.parse(circle(radius=radius))


@pytest.mark.parametrize("uom", ['uom="urn:ogc:def:uom:EPSG::9002"', 'uom="km"', 'uom=""'])
def test_radius_in_other_units_is_rejected(uom: str) -> None:
    with pytest.raises(LocationError, match="unit"):
        pidf.parse(circle(uom=uom))


def test_radius_without_uom_counts_as_metres() -> None:
    assert pidf.parse(circle(uom=""))[0].radius_m == 25.0


def test_circle_without_radius_is_rejected() -> None:
    with pytest.raises(LocationError, match="^gs:Circle: no gs:radius$"):
        pidf.parse(doc(f"<gs:Circle {SRS}><gml:pos>43.2 76.9</gml:pos></gs:Circle>"))


@pytest.mark.parametrize("coords", [
    "43.1 76.9 43.2 76.9",  # two vertices
    "43.1 76.9 43.2 76.9 43.1 76.9",  # closed two-vertex ring
    "43.1 76.9 43.2 76.9 43.2 77.0 43.3",  # dangling number: lat/lon pairing is broken
    "43.1 76.9 43.2 76.9 95.0 77.0",  # vertex out of range
    "43.1 76.9 43.2 x 43.2 77.0",
    " ".join(f"43.{i:04d} 76.9" for i in range(501)),  # more than 500 vertices
])
def test_bad_polygons_are_rejected(coords: str) -> None:
    body = (f"<gml:Polygon {SRS}><gml:exterior><gml:LinearRing><gml:posList>{coords}</gml:posList>"
            "</gml:LinearRing></gml:exterior></gml:Polygon>")
    with pytest.raises(LocationError):
        pidf.parse(doc(body))
