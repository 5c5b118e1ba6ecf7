"""Units core (pure): the status table, forced changes, proposals and the roster loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.incident.desk import no_caller
from gateway.incident.records import Incident, Location
from gateway.settings import UnitsConfig
from gateway.settings.units import units_problems
from gateway.units.model import (
    STATUSES,
    TRANSITIONS,
    IllegalTransition,
    NoLocation,
    Unit,
    UnitInputError,
    check_change,
    check_position,
    incident_point,
    load_roster,
    moved,
    parse_roster,
    propose,
)

NOW = 1_800_000_000.0
ROSTER = Path(__file__).resolve().parents[2] / "config" / "units.toml"


def unit(uid: str, *, kind: str = "patrol", status: str = "free", lat: float = 43.25, lon: float = 76.93,
         age: float | None = 30.0, incident: str = "") -> Unit:
    return Unit(id=uid, kind=kind, name=uid.upper(), status=status, lat=lat, lon=lon,  # type: ignore[arg-type]
                position_wall=0.0 if age is None else NOW - age, incident=incident)


def test_every_ordinary_move_in_the_table_is_allowed_and_nothing_else() -> None:
    for current in STATUSES:
        for target in STATUSES:
            u = unit("u1", status=current, incident="I1")  # with an incident only the table decides
            if target == current or target in TRANSITIONS[current]:
                check_change(u, target)
            else:
                with pytest.raises(IllegalTransition, match="may force"):
                    check_change(u, target)


def test_forced_change_needs_a_reason_and_active_statuses_need_an_incident() -> None:
    on_scene = unit("u1", status="on_scene", incident="I1")
    with pytest.raises(UnitInputError, match="needs a reason"):
        check_change(on_scene, "unavailable", force=True, reason="  ")
    check_change(on_scene, "unavailable", force=True, reason="vehicle broke down")
    with pytest.raises(IllegalTransition, match="no incident"):
        check_change(unit("u2"), "en_route", force=True, reason="dispatcher says so")
    with pytest.raises(IllegalTransition, match="no incident"):
        check_change(unit("u2"), "assigned")
    with pytest.raises(UnitInputError, match="unknown status 'lunch'"):
        check_change(unit("u2"), "lunch")


def test_leaving_the_active_statuses_ends_the_assignment_and_positions_are_stamped() -> None:
    u = unit("u1", status="on_scene", incident="I1")
    kept = moved(u, status=None, lat=43.3, lon=76.9, incident=None, now=NOW)
    assert kept.incident == "I1" and kept.position_wall == NOW and kept.lat == 43.3
    freed = moved(u, status="free", lat=None, lon=None, incident=None, now=NOW)
    assert freed.incident == "" and freed.status == "free" and freed.lat == u.lat and freed.updated_wall == NOW


def test_positions_must_be_whole_and_on_the_globe() -> None:
    check_position(None, None)
    check_position(43.2, 76.9)
    with pytest.raises(UnitInputError, match="both lat and lon"):
        check_position(43.2, None)
    with pytest.raises(UnitInputError, match="-90..90"):
        check_position(91.0, 76.9)


def test_proposals_rank_fresh_before_stale_then_by_distance_and_skip_busy_or_other_kinds() -> None:
    units = [
        unit("near-stale", lat=43.2501, lon=76.9301, age=3600),
        unit("far", lat=43.30, lon=76.93),
        unit("near", lat=43.251, lon=76.93),
        unit("base-only", lat=43.2500, lon=76.9300, age=None),
        unit("busy", lat=43.25, lon=76.93, status="assigned", incident="I9"),
        unit("medic", kind="ambulance", lat=43.25, lon=76.93),
    ]
    offers = propose(units, "patrol", 43.25, 76.93, 10, now=NOW, stale_after_s=600, speed_kmh=36)
    assert [p.unit for p in offers] == ["near", "far", "base-only", "near-stale"]
    near = offers[0]
    assert not near.stale and near.position_age_s == 30.0
    assert (near.distance_m == pytest.approx(111.2, abs=0.5)
            and near.eta_s == pytest.approx(near.distance_m / 10, abs=0.1))
    assert offers[2].stale and offers[2].position_age_s is None
    assert offers[3].stale and offers[3].position_age_s == 3600
    anyone = propose(units, "", 43.25, 76.93, 2, now=NOW, stale_after_s=600, speed_kmh=36)
    assert [p.unit for p in anyone] == ["medic", "near"]


def test_equal_offers_come_in_id_order_whatever_the_input_order() -> None:
    same = [unit(uid, lat=43.26, lon=76.94) for uid in ("c", "a", "b")]
    for order in (same, same[::-1]):
        assert [p.unit for p in propose(order, "patrol", 43.25, 76.93, 3, now=NOW, stale_after_s=600,
                                        speed_kmh=30)] == ["a", "b", "c"]


def test_proposal_limits_are_checked() -> None:
    for limit in (0, 51):
        with pytest.raises(UnitInputError, match="limit"):
            propose([], "patrol", 43.25, 76.93, limit, now=NOW, stale_after_s=600, speed_kmh=30)


def test_incident_point_uses_the_best_location_and_says_when_there_is_none() -> None:
    civic = Location(source="directory", shape="civic", address="Абая 10")
    point = Location(source="aml", shape="circle", lat=43.24, lon=76.91, radius_m=15)
    inc = Incident(id="I1", service="112", created_wall=NOW, caller=no_caller(), locations=[civic, point],
                   best_location=1)
    assert incident_point(inc) == (43.24, 76.91)
    with pytest.raises(NoLocation, match="incident I2 has no location with coordinates"):
        incident_point(Incident(id="I2", service="112", created_wall=NOW, caller=no_caller(), locations=[civic]))


def test_default_roster_is_valid() -> None:
    roster = load_roster(ROSTER)
    assert {"patrol", "fire_crew", "ambulance"} <= set(roster.kinds)  # the scenarios notify these kinds
    assert len(roster.units) >= 10 and {u.kind for u in roster.units} == set(roster.kinds)
    assert all(u.members for u in roster.units)
    assert units_problems(UnitsConfig()) == []


def test_roster_reports_every_problem_at_once() -> None:
    text = """
kinds = ["patrol", "patrol", "Fire"]
colour = "blue"
[[units]]
id = "PS 1"
kind = "tank"
name = ""
lat = 95.0
lon = 76.9
members = ["Bob", "ann", "ann"]
[[units]]
id = "ok1"
kind = "patrol"
name = "OK-1"
lat = 43.2
lon = 76.9
[[units]]
id = "ok1"
kind = "patrol"
name = "OK-1 again"
lat = 43.2
lon = 76.9
[[units]]
id = "typo"
kind = "patrol"
name = "T"
lat = 43.2
lon = 76.9
memebrs = ["x"]
"""
    with pytest.raises(ConfigError) as caught:
        parse_roster(text, "units.toml")
    found = "\n".join(caught.value.problems)
    for expected in ("colour: unknown key", "'patrol' listed twice", "'Fire': expected lower-case",
                     "units[0] (PS 1): id: expected", "kind 'tank'", "name: expected the unit's callsign",
                     "lat/lon (95.0, 76.9)", "'Bob': expected a person's name", "'ann' listed twice",
                     "units[2] (ok1): id: used by another", "units[3] (typo): Object contains unknown field `memebrs`"):
        assert expected in found, found
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_roster("kinds = [", "units.toml")
    with pytest.raises(ConfigError, match="kinds: expected a non-empty list"):
        parse_roster("[[units]]\nid='a'\nkind='patrol'\nname='A'\nlat=1.0\nlon=1.0\n", "units.toml")


def test_config_problems_name_the_section(tmp_path: Path) -> None:
    wrong = units_problems(UnitsConfig(speed_kmh=0, stale_after_s=-1))
    assert any("units.speed_kmh" in p for p in wrong) and any("units.stale_after_s" in p for p in wrong)
    with pytest.raises(ConfigError, match="none.toml: cannot read"):
        load_roster(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_bytes(b"kinds = ['\xff']")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_roster(tmp_path / "bad.toml")
