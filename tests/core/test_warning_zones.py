"""Zones: loading with every problem reported, targeting areas, locating a point."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ZoneError
from gateway.protocols.cap import Area, Circle
from gateway.warning import zones

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def almaty() -> zones.ZoneSet:
    return zones.load(ROOT / "config" / "zones.toml")


def test_shipped_zones_load(almaty: zones.ZoneSet) -> None:
    assert "medeu" in almaty.names() and len(almaty.names()) >= 8
    assert almaty.get("medeu").sirens


def test_named_zones_and_shapes_are_targeted(almaty: zones.ZoneSet) -> None:
    dam = Area(area_desc="dam", circles=[Circle(lat=43.1575, lon=77.0585, radius_km=0.5)])
    assert set(almaty.matching([dam])) == {"medeu", "medeu-dam"}
    square = Area(area_desc="centre", polygons=[[(43.25, 76.90), (43.25, 76.91), (43.24, 76.91), (43.24, 76.90),
                                                  (43.25, 76.90)]])
    assert almaty.matching([square]) == ["almaly"]
    assert almaty.matching([Area(area_desc="n", zones=["turksib"])]) == ["turksib"]


def test_far_away_area_reaches_nothing(almaty: zones.ZoneSet) -> None:
    astana = Area(area_desc="Astana", circles=[Circle(lat=51.16, lon=71.47, radius_km=10)])
    assert almaty.matching([astana]) == []


@pytest.mark.parametrize("area, problem", [
    (Area(area_desc="x", zones=["atlantis"]), "unknown zone"),
    (Area(area_desc="x", polygons=[[(43.2, 76.9), (43.3, 77.0), (43.2, 77.0), (43.3, 76.9)]]), "not simple"),
    (Area(area_desc="x", polygons=[[(43.2, 76.9), (43.3, 77.0)]]), "at least 3"),
    (Area(area_desc="x", polygons=[[(95.0, 76.9), (43.3, 77.0), (43.2, 77.0)]]), "out of range"),
    (Area(area_desc="x", circles=[Circle(lat=43.2, lon=76.9, radius_km=-1)]), "radius"),
])
def test_invalid_areas_are_refused(almaty: zones.ZoneSet, area: Area, problem: str) -> None:
    with pytest.raises(ZoneError, match=problem):
        almaty.matching([area])


def test_point_location(almaty: zones.ZoneSet) -> None:
    assert almaty.zone_of(43.25, 76.92) == "almaly"
    assert almaty.zone_of(51.16, 71.47) is None


def test_bad_zone_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "zones.toml"
    path.write_text('''
[[zones]]
name = "Bad Name"
polygon = [[43.2, 76.9], [43.3, 77.0]]
[[zones]]
name = "dup"
circle = { lat = 43.2, lon = 76.9, radius_km = 1 }
[[zones]]
name = "dup"
circle = { lat = 43.2, lon = 76.9, radius_km = 1 }
polygon = [[43.2, 76.9], [43.3, 77.0], [43.2, 77.0]]
sirens = [{ line = "l", unit = 300, coils = [0] }]
''')
    with pytest.raises(ZoneError) as err:
        zones.load(path)
    text = str(err.value)
    for problem in ("name: expected", "at least 3", "duplicate zone", "exactly one of polygon or circle", "unit 1-247"):
        assert problem in text
    assert str(path) in text


def test_unreadable_or_mistyped_zone_file(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match="cannot read"):
        zones.load(tmp_path / "missing.toml")
    (tmp_path / "z.toml").write_text("[[zones]]\nname = 1\n")
    with pytest.raises(ZoneError, match="Expected `str`"):
        zones.load(tmp_path / "z.toml")
