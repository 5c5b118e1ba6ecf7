"""Asterisk GEOLOC_PROFILE(location_info) parsing, civic text and the best-candidate rule."""

from __future__ import annotations

import math

import pytest

from gateway.incident.records import Location
from gateway.protocols import location
from gateway.protocols.pidf import LocationError

# Exactly what Asterisk 22 put in GEOLOC_PROFILE(location_info) for our simulated callers.
CIRCLE = 'shape="Circle",crs="2d",pos="43.238100 76.945600",radius="25"'
POINT = 'shape="Point",crs="2d",pos="43.238100 76.945600"'
ELLIPSE = ('shape="Ellipse",crs="2d",pos="43.200000 76.900000",semiMajorAxis="100",semiMinorAxis="40",'
           'orientation="30 degrees"')
POLYGON = ('shape="Polygon",crs="2d",posList="43.100000 76.900000 43.200000 76.900000 43.200000 77.000000 '
           '43.100000 76.900000"')
CIVIC = 'lang="",country="KZ",A1="Алматы",A6="Абая",HNO="10"'


def test_asterisk_circle() -> None:
    loc = location.parse_location_info(CIRCLE, "GML")
    assert (loc.source, loc.shape, loc.lat, loc.lon, loc.radius_m) == ("pidf-lo", "circle", 43.2381, 76.9456, 25.0)


def test_asterisk_point_has_no_radius() -> None:
    loc = location.parse_location_info(POINT, "GML")
    assert (loc.shape, loc.lat, loc.lon, loc.radius_m) == ("point", 43.2381, 76.9456, None)


def test_asterisk_ellipse() -> None:
    loc = location.parse_location_info(ELLIPSE, "GML")
    assert (loc.shape, loc.lat, loc.lon) == ("ellipse", 43.2, 76.9)
    assert (loc.radius_m, loc.semi_minor_m, loc.orientation_deg) == (100.0, 40.0, 30.0)


def test_asterisk_polygon_closing_vertex_dropped_and_centroid_computed() -> None:
    loc = location.parse_location_info(POLYGON, "GML")
    assert loc.shape == "polygon"
    assert loc.points == [(43.1, 76.9), (43.2, 76.9), (43.2, 77.0)]
    assert loc.lat == pytest.approx(43.1666667)
    assert loc.lon == pytest.approx(76.9333333)
    assert 5000 < loc.radius_m < 10000


def test_asterisk_civic_address() -> None:
    loc = location.parse_location_info(CIVIC, "civicAddress")
    assert loc.shape == "civic"
    assert loc.lat is None and loc.lon is None
    assert loc.civic == {"country": "KZ", "A1": "Алматы", "A6": "Абая", "HNO": "10"}  # lang is no civic field
    assert loc.address == "KZ, Алматы, Абая 10"


@pytest.mark.parametrize("orientation, degrees", [
    ("30 degrees", 30.0), ("30", 30.0), ("30 deg", 30.0), ("", 0.0),
    (f"{math.pi / 2} radians", 90.0), ("0.5 rad", math.degrees(0.5)),
])
def test_ellipse_orientation_units(orientation: str, degrees: float) -> None:
    info = ELLIPSE.replace('orientation="30 degrees"', f'orientation="{orientation}"')
    assert location.parse_location_info(info, "GML").orientation_deg == pytest.approx(degrees)


def test_ellipse_without_orientation_defaults_to_zero() -> None:
    info = ELLIPSE.replace(',orientation="30 degrees"', "")
    assert location.parse_location_info(info, "GML").orientation_deg == 0.0


@pytest.mark.parametrize("orientation", ["nan", "inf degrees", "30 grads", "north"])
def test_bad_orientation_is_rejected(orientation: str) -> None:
    with pytest.raises(LocationError):
        location.parse_location_info(ELLIPSE.replace("30 degrees", orientation), "GML")


def test_ellipse_axes_given_in_wrong_order_are_sorted() -> None:
    info = ELLIPSE.replace('semiMajorAxis="100"', 'semiMajorAxis="10"')
    loc = location.parse_location_info(info, "GML")
    assert (loc.radius_m, loc.semi_minor_m) == (40.0, 10.0)
    assert loc.orientation_deg == 120.0  # the long axis lies across the one named major (30 degrees)


def test_3d_point_and_polygon() -> None:
    point = location.parse_location_info('shape="Point",crs="3d",pos="43.2 76.9 850"', "GML")
    assert (point.lat, point.lon) == (43.2, 76.9)
    polygon = location.parse_location_info(
        'shape="Polygon",crs="3d",posList="43.1 76.9 800 43.2 76.9 800 43.2 77.0 800 43.1 76.9 800"', "GML")
    assert polygon.points == [(43.1, 76.9), (43.2, 76.9), (43.2, 77.0)]


@pytest.mark.parametrize("info", [
    'shape=Point, crs=2d, pos="43.2 76.9"',  # the unquoted style of Asterisk's own docs
    ' shape="Point" , pos="43.2 76.9" ',
    'shape="Point",pos="43.2 76.9",',
])
def test_quoting_and_spacing_variants(info: str) -> None:
    loc = location.parse_location_info(info, "GML")
    assert (loc.shape, loc.lat, loc.lon) == ("point", 43.2, 76.9)


def test_escaped_quote_inside_value() -> None:
    loc = location.parse_location_info('country="KZ",NAM="Bar \\"Astana\\", 2nd floor"', "civicAddress")
    assert loc.civic["NAM"] == 'Bar "Astana", 2nd floor'


@pytest.mark.parametrize("info, fmt", [
    ("", "GML"),
    ("garbage", "GML"),
    ('shape="Point"', "GML"),  # no position
    ('shape="Point",pos="43.2"', "GML"),
    ('shape="Point",pos="43.2 76.9 1 2"', "GML"),
    ('shape="Point",pos="north east"', "GML"),
    ('shape="Point",pos="91 76.9"', "GML"),
    ('shape="Point",pos="43.2 -181"', "GML"),
    ('shape="Point",pos="nan 76.9"', "GML"),
    ('shape="Point",pos="43.2 76.9" radius="5"', "GML"),  # missing comma
    ('shape="Point",pos="43.2 76.9,', "GML"),  # unterminated quote
    ('shape="Point",,pos="43.2 76.9"', "GML"),
    ('="x"', "GML"),
    ('shape="ArcBand",pos="43.2 76.9"', "GML"),
    ('shape="Circle",pos="43.2 76.9"', "GML"),  # no radius
    ('shape="Circle",pos="43.2 76.9",radius="-5"', "GML"),
    ('shape="Circle",pos="43.2 76.9",radius="2000000"', "GML"),
    ('shape="Circle",pos="43.2 76.9",radius="wide"', "GML"),
    ('shape="Circle",pos="43.2 76.9",radius="nan"', "GML"),
    ('shape="Ellipse",pos="43.2 76.9",semiMajorAxis="100"', "GML"),
    ('shape="Polygon",posList="43.1 76.9 43.2 76.9"', "GML"),
    ('shape="Polygon",posList="43.1 76.9 43.2 76.9 43.2 77.0 43.3"', "GML"),  # dangling number
    ('shape="Polygon",crs="3d",posList="43.1 76.9 43.2 76.9 43.2 77.0 43.3 77.0"', "GML"),  # 8 is no triplets
    ('shape="Polygon",posList="43.1 76.9 43.2 76.9 99 77.0"', "GML"),
    ('shape="Polygon",posList="a b c d e f"', "GML"),
    (POINT, "gml"),  # format names are exact
    (POINT, "URI"),
    (POINT, ""),
    ('lang="ru"', "civicAddress"),
    ('country=""', "civicAddress"),
    ("x" * (location.MAX_INFO + 1), "GML"),
])
def test_garbage_location_info_is_a_location_error(info: str, fmt: str) -> None:
    with pytest.raises(LocationError):
        location.parse_location_info(info, fmt)


def test_civic_values_are_capped() -> None:
    loc = location.parse_location_info(f'country="KZ",LOC="{"x" * 500}"', "civicAddress")
    assert len(loc.civic["LOC"]) == 128


# --- every shape Asterisk 22 carries over (formats as tests/data/real/pidf/asterisk-22.10.1-location_info.tsv) ---

def test_asterisk_polygon_as_repeated_pos_keeps_every_vertex() -> None:
    info = ('shape="Polygon",crs="2d",pos="43.1 76.9",pos="43.2 76.9",pos="43.2 77.0",pos="43.1 77.0",'
            'pos="43.1 76.9"')
    loc = location.parse_location_info(info, "GML")
    assert loc.points == [(43.1, 76.9), (43.2, 76.9), (43.2, 77.0), (43.1, 77.0)]
    assert loc == location.parse_location_info(
        'shape="Polygon",crs="2d",posList="43.1 76.9 43.2 76.9 43.2 77.0 43.1 77.0 43.1 76.9"', "GML")


def test_asterisk_arc_band() -> None:
    info = ('shape="ArcBand",crs="2d",pos="43.2 76.9",innerRadius="3594",outerRadius="4148",'
            'startAngle="20 degrees",openingAngle="0.349066 radians"')
    loc = location.parse_location_info(info, "GML")
    assert loc.shape == "arcband" and loc.arc_band is not None
    assert loc.arc_band.opening_angle_deg == pytest.approx(20.0, abs=1e-4)
    assert len(loc.points) == 6 and loc.radius_m is not None and loc.radius_m < 1000  # 3 outer + 3 inner


def test_asterisk_sphere_and_ellipsoid_keep_altitude() -> None:
    sphere = location.parse_location_info('shape="Sphere",crs="3d",pos="43.2 76.9 850",radius="30"', "GML")
    assert (sphere.shape, sphere.radius_m, sphere.altitude_m, sphere.vertical_m) == ("sphere", 30.0, 850.0, 30.0)
    ellipsoid = location.parse_location_info(
        'shape="Ellipsoid",crs="3d",pos="43.2 76.9 850",semiMajorAxis="40",semiMinorAxis="10",verticalAxis="5",'
        'orientation="90 degrees"', "GML")
    assert (ellipsoid.radius_m, ellipsoid.semi_minor_m, ellipsoid.orientation_deg) == (40.0, 10.0, 90.0)
    assert (ellipsoid.altitude_m, ellipsoid.vertical_m) == (850.0, 5.0)


def test_asterisk_prism_from_pos3d() -> None:
    info = ('shape="Prism",crs="3d",pos3d="43.1 76.9 100",pos3d="43.2 76.9 100",pos3d="43.2 77.0 100",'
            'height="9"')
    loc = location.parse_location_info(info, "GML")
    assert (loc.shape, len(loc.points), loc.altitude_m, loc.vertical_m) == ("prism", 3, 104.5, 4.5)


def test_confidence_and_method_from_their_own_profile_fields() -> None:
    loc = location.parse_location_info(CIRCLE, "GML", confidence='pdf="normal",value="66"', method="Manual")
    assert (loc.confidence, loc.confidence_pdf, loc.method) == (66.0, "normal", "Manual")


@pytest.mark.parametrize("confidence", ["", "garbage", 'pdf="weird",value="500"', 'value="x"'])
def test_unusable_confidence_never_costs_the_location(confidence: str) -> None:
    loc = location.parse_location_info(CIRCLE, "GML", confidence=confidence)
    assert loc.radius_m == 25.0 and loc.confidence is None


def test_shape_asterisk_filed_as_civic_is_recovered() -> None:
    """A location-info with a gml:Point before a civicAddress: Asterisk says civicAddress, gives pos only."""
    point = location.parse_location_info('pos="-46.8123 16.12"', "civicAddress")
    assert (point.shape, point.lat, point.lon) == ("point", -46.8123, 16.12)
    circle = location.parse_location_info('pos="43.2 76.9",radius="25"', "civicAddress")
    assert (circle.shape, circle.radius_m) == ("circle", 25.0)


def test_civic_keeps_extension_fields() -> None:
    loc = location.parse_location_info('lang="en-US",country="US",A1="CA",RD="I5",MP="248",PN="22-109-689"',
                                       "civicAddress")
    assert loc.civic == {"country": "US", "A1": "CA", "RD": "I5", "MP": "248", "PN": "22-109-689"}
    assert location.parse_location_info('BOGUS="x"', "civicAddress").civic == {"BOGUS": "x"}


@pytest.mark.parametrize("info, fmt, message", [
    ('shape="Triangle",pos="1 2"', "GML", "^unsupported shape 'Triangle'$"),
    ('shape="location",crs="unknown",pos="1 2"', "GML", r"^obsolete RFC 4119 form \(gml:location\)"),
    ('shape="confidence",crs="unknown"', "GML", "^no shape: Asterisk took con:confidence"),
    ('shape="Circle",crs="2d",radius="24"', "GML", r"^Circle: no position \(pos missing\)$"),
    ('shape="Polygon",crs="2d"', "GML", r"^Polygon: no position \(no posList or pos\)$"),
    ('shape="Circle",pos="1 2",radius="5",radius="6"', "GML", "^Circle: radius: expected a distance"),
    ('crs="2d",pos="1 2"', "GML", "^no shape in location_info$"),
    ('URI="http://lis.invalid/loc/1"', "URI", "^location by reference"),
    ('shape="ArcBand",pos="1 2",innerRadius="1",outerRadius="2",openingAngle="10"', "GML",
     "^ArcBand: no startAngle$"),
])
def test_errors_say_what_is_wrong(info: str, fmt: str, message: str) -> None:
    with pytest.raises(LocationError, match=message):
        location.parse_location_info(info, fmt)


# --- civic_text --------------------------------------------------------------------------------

@pytest.mark.parametrize("civic, text", [
    ({"country": "KZ", "A1": "Алматы", "A6": "Абая", "HNO": "10", "FLR": "3"}, "KZ, Алматы, Абая 10, fl. 3"),
    ({"A1": "Астана", "RD": "Kabanbay Batyr", "HNO": "53", "HNS": "A", "UNIT": "7", "ROOM": "12"},
     "Астана, Kabanbay Batyr 53 A, unit 7, room 12"),
    ({"A6": "Абая", "RD": "ignored when A6 is set"}, "Абая"),
    ({"PRD": "N", "A6": "Main", "STS": "St", "HNO": "1", "LMK": "near the mosque", "LOC": "rear door"},
     "N Main St 1, near the mosque, rear door"),
    ({}, ""),
])
def test_civic_text(civic: dict[str, str], text: str) -> None:
    assert location.civic_text(civic) == text


# --- best candidate ----------------------------------------------------------------------------

def loc(source: str = "pidf-lo", radius: float | None = None, lat: float | None = 43.2) -> Location:
    if lat is None:
        return Location(source=source, shape="civic", civic={"country": "KZ"})  # type: ignore[arg-type]
    return Location(source=source, shape="circle" if radius is not None else "point",  # type: ignore[arg-type]
                    lat=lat, lon=76.9, radius_m=radius)


def test_best_of_nothing_is_none() -> None:
    assert location.best([]) is None


def test_single_candidate_wins() -> None:
    assert location.best([loc(lat=None)]) == 0


def test_coordinates_beat_civic_only_even_when_vague() -> None:
    assert location.best([loc("pidf-lo", lat=None), loc("manual", radius=900_000)]) == 1


def test_smallest_radius_wins_regardless_of_source() -> None:
    assert location.best([loc("pidf-lo", 500), loc("directory", 50), loc("aml", 80)]) == 1


def test_unstated_radius_counts_as_five_km() -> None:
    point = loc("pidf-lo", None)
    assert location.best([point, loc("directory", 4999)]) == 1
    assert location.best([point, loc("directory", 5001)]) == 0


@pytest.mark.parametrize("order", [["manual", "directory", "aml", "pidf-lo"], ["aml", "pidf-lo", "manual"],
                                   ["directory", "manual"]])
def test_ties_go_to_the_more_direct_source(order: list[str]) -> None:
    candidates = [loc(s, 50) for s in order]
    expected = min(order, key=lambda s: ["pidf-lo", "aml", "directory", "manual"].index(s))
    assert candidates[location.best(candidates)].source == expected


def test_civic_only_ties_go_by_source() -> None:
    assert location.best([loc("directory", lat=None), loc("aml", lat=None)]) == 1


def test_exact_tie_keeps_the_first() -> None:
    assert location.best([loc("aml", 50), loc("aml", 50)]) == 0


def test_rank_orders_a_mixed_list() -> None:
    mixed = [loc("pidf-lo", lat=None), loc("manual", 10), loc("directory", None), loc("pidf-lo", 10), loc("aml", 3)]
    ordered = sorted(range(len(mixed)), key=lambda i: location.rank(mixed[i]))
    assert ordered == [4, 3, 1, 2, 0]
