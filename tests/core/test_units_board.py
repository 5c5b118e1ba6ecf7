"""The units board with a real incident store and desk: assignment, status flow, restarts, acks."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from gateway.errors import ConfigError, NotFound
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk, no_caller
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident, Location
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.settings import UnitsConfig
from gateway.units.board import UnitBoard
from gateway.units.model import IllegalTransition, NoLocation, UnitInputError
from tests.store_backends import Backend

ROSTER = """
kinds = ["patrol", "ambulance"]
[[units]]
id = "ps101"
kind = "patrol"
name = "PS-101"
lat = 43.2566
lon = 76.9286
members = ["patrol_ps101_a", "patrol_ps101_b"]
[[units]]
id = "ps102"
kind = "patrol"
name = "PS-102"
lat = 43.2236
lon = 76.9063
members = ["patrol_ps102_a"]
[[units]]
id = "ss1"
kind = "ambulance"
name = "SS-1"
lat = 43.2497
lon = 76.9301
members = ["ambulance_ss1_a"]
"""
ABAI = Location(source="manual", shape="point", lat=43.2400, lon=76.9200, radius_m=10)


@asynccontextmanager
async def incident_desk(tmp_path: Path) -> AsyncIterator[Desk]:
    store = AsyncStore(SqliteStore(tmp_path / "incidents.db"))
    yield Desk(store, Recorder(store, Bus()))
    store.sync.close()


def make_board(tmp_path: Path, desk: Desk, roster: str = ROSTER, *, on: Backend | None = None) -> UnitBoard:
    """A board on ``units.db``, or ``on`` the backend's units tables (each call a connection of its own: on
    PostgreSQL, a node)."""
    (tmp_path / "units.toml").write_text(roster, encoding="utf-8")
    return UnitBoard(UnitsConfig(roster_file=str(tmp_path / "units.toml")), desk,
                     on.units_db() if on is not None else tmp_path / "units.db")


async def report(desk: Desk, *locations: Location) -> Incident:
    return await desk.open(service="102", source="api", caller=no_caller(), kind="reported", actor="aigerim",
                           locations=locations)


def kinds_of(incident: Incident) -> list[str]:
    return [e.kind for e in incident.timeline]


async def test_assignment_and_reports_move_the_incident_forward(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc = await report(desk, ABAI)
            assigned = await board.assign(inc.id, "ps101", actor="aigerim")
            assert assigned.status == "assigned" and assigned.incident == inc.id
            after = await desk.get(inc.id)
            assert after.status == "assigned" and after.units == ["ps101"]
            event = next(e for e in after.timeline if e.kind == "unit_assigned")
            assert event.actor == "aigerim" and event.data["unit"] == "ps101" and event.data["unit_kind"] == "patrol"
            await board.update("ps101", status="en_route", actor="patrol_ps101_a")
            assert (await desk.get(inc.id)).status == "en_route"
            await board.update("ps101", status="on_scene", lat=43.2401, lon=76.9201, actor="patrol_ps101_a")
            assert (await desk.get(inc.id)).status == "on_scene"
            freed = await board.update("ps101", status="free", actor="aigerim", reason="scene cleared")
            assert freed.incident == "" and freed.position_wall > 0
            final = await desk.get(inc.id)
            assert final.units == [] and final.status == "on_scene"  # a unit leaving does not close the incident
            assert [k for k in kinds_of(final) if k.startswith("unit_")] == [
                "unit_assigned", "unit_status", "unit_status", "unit_released"]
            released = final.timeline[-1]
            assert released.data["reason"] == "scene cleared" and released.data["previous"] == "on_scene"
            history = await board.history("ps101")
            assert [h.status for h in history] == ["free", "on_scene", "en_route", "assigned"]
            assert board.pending() == 0
            board.close()


async def test_second_unit_does_not_move_the_incident_back(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc = await report(desk, ABAI)
            await board.assign(inc.id, "ps101", actor="aigerim")
            await board.update("ps101", status="on_scene", actor="patrol_ps101_a")
            await board.assign(inc.id, "ss1", actor="aigerim")
            await board.update("ss1", status="en_route", actor="ambulance_ss1_a")
            after = await desk.get(inc.id)
            assert after.status == "on_scene" and after.units == ["ps101", "ss1"]
            board.close()


async def test_refusals(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc, other = await report(desk, ABAI), await report(desk, ABAI)
            await board.assign(inc.id, "ps101", actor="aigerim")
            with pytest.raises(IllegalTransition, match=f"ps101 is assigned for incident {inc.id}"):
                await board.assign(other.id, "ps101", actor="aigerim")
            with pytest.raises(NotFound, match="no unit 'ps999'"):
                await board.assign(inc.id, "ps999", actor="aigerim")
            with pytest.raises(NotFound):
                await board.assign("KZ-nothing", "ps102", actor="aigerim")
            with pytest.raises(IllegalTransition, match="no incident"):
                await board.update("ps102", status="on_scene", actor="aigerim")
            with pytest.raises(UnitInputError, match="nothing to change"):
                await board.update("ps102", actor="aigerim")
            await board.update("ps101", status="on_scene", actor="aigerim")
            with pytest.raises(IllegalTransition, match="may force"):
                await board.update("ps101", status="unavailable", actor="aigerim")
            forced = await board.update("ps101", status="unavailable", actor="aigerim", force=True,
                                        reason="vehicle damaged at the scene")
            assert forced.incident == "" and (await desk.get(inc.id)).timeline[-1].data["forced"] is True
            await desk.set_status(other.id, "closed", actor="aigerim")
            with pytest.raises(IllegalTransition, match="closed"):
                await board.assign(other.id, "ps102", actor="aigerim")
            assert board.get("ps102").status == "free"
            board.close()


async def test_proposals_use_the_incident_location(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc = await report(desk, ABAI)
            offers = await board.propose(inc.id, "patrol", 5)
            assert (offers.lat, offers.lon) == (ABAI.lat, ABAI.lon)
            assert [p.unit for p in offers.units] == ["ps101", "ps102"]  # both at base: stale, by distance
            await board.update("ps102", lat=43.2300, lon=76.9100, actor="gps")
            await board.assign(inc.id, "ss1", actor="aigerim")
            offers = await board.propose(inc.id, "", 5)
            assert [(p.unit, p.stale) for p in offers.units] == [("ps102", False), ("ps101", True)]
            nowhere = await report(desk)
            with pytest.raises(NoLocation, match="no location with coordinates"):
                await board.propose(nowhere.id, "patrol", 3)
            with pytest.raises(UnitInputError, match="unknown unit kind 'tank'"):
                await board.propose(inc.id, "tank", 3)
            board.close()


async def test_member_acknowledgement_sends_their_unit_on_its_way(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc, other = await report(desk, ABAI), await report(desk, ABAI)
            await board.assign(inc.id, "ps101", actor="aigerim")
            await board.on_member_ack("patrol_ps101_a", other.id)  # their unit is busy on another incident
            await board.on_member_ack("nobody", inc.id)
            assert board.get("ps101").status == "assigned" and (await desk.get(other.id)).units == []
            await board.on_member_ack("patrol_ps101_b", inc.id)
            assert board.get("ps101").status == "en_route"
            await board.on_member_ack("patrol_ps101_a", inc.id)  # the second crew member, later
            assert board.get("ps101").status == "en_route"
            after = await desk.get(inc.id)
            assert after.status == "en_route"
            assert [e.actor for e in after.timeline if e.kind == "unit_status"] == ["patrol_ps101_b"]
            board.close()


async def test_a_called_free_unit_is_assigned_by_its_acknowledgement(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc = await report(desk, ABAI)
            assert await board.nearest_for(inc.id, "ambulance") == ("ss1", "SS-1", ["ambulance_ss1_a"])
            await board.on_member_ack("ambulance_ss1_a", inc.id)
            unit = board.get("ss1")
            assert (unit.status, unit.incident) == ("en_route", inc.id)
            after = await desk.get(inc.id)
            assert after.status == "en_route" and after.units == ["ss1"]
            assert [(e.kind, e.actor) for e in after.timeline if e.kind.startswith("unit_")] == [
                ("unit_assigned", "ambulance_ss1_a"), ("unit_status", "ambulance_ss1_a")]
            assert await board.nearest_for(inc.id, "ambulance") is None  # the only one is busy
            assert await board.nearest_for(inc.id, "tank") is None
            nowhere = await report(desk)
            assert (await board.nearest_for(nowhere.id, "patrol") or ("",))[0] == "ps101"  # by id, no location
            with pytest.raises(NotFound):
                await board.nearest_for("KZ-nothing", "patrol")
            board.close()


async def test_state_survives_a_restart_and_the_roster_refreshes_crews(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc = await report(desk, ABAI)
            await board.assign(inc.id, "ps101", actor="aigerim")
            await board.update("ps101", status="en_route", lat=43.245, lon=76.925, actor="gps")
            board.close()
            new_crew = ROSTER.replace('["patrol_ps101_a", "patrol_ps101_b"]', '["patrol_ps101_c"]')
            new_crew += '[[units]]\nid = "ss2"\nkind = "ambulance"\nname = "SS-2"\nlat = 43.3\nlon = 76.9\n'
            board = make_board(tmp_path, desk, new_crew, on=backend)
            unit = board.get("ps101")
            assert (unit.status, unit.incident, unit.lat, unit.members) == ("en_route", inc.id, 43.245,
                                                                            ["patrol_ps101_c"])
            assert board.get("ss2").status == "free" and len(board.units()) == 4
            assert [u.id for u in board.units(kind="patrol", status="free")] == ["ps102"]
            board.close()


async def test_notes_wait_while_the_incident_store_is_locked_and_arrive_after_restart(tmp_path: Path,
                                                                                    backend: Backend) -> None:
    with trio.fail_after(30):
        async with incident_desk(tmp_path) as desk:
            board = make_board(tmp_path, desk, on=backend)
            inc = await report(desk, ABAI)
            blocker = sqlite3.connect(tmp_path / "incidents.db", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the incident store past its busy timeout
            unit = await board.assign(inc.id, "ps101", actor="aigerim")
            assert unit.status == "assigned" and board.pending() == 1  # the unit change stands
            assert "unit_assigned" not in kinds_of(await desk.store.get(inc.id))
            board.close()
            blocker.execute("ROLLBACK")
            blocker.close()
            board = make_board(tmp_path, desk, on=backend)
            assert board.pending() == 1 and board.get("ps101").incident == inc.id
            async with trio.open_nursery() as nursery:
                await nursery.start(board.run)
                assert board.pending() == 0
                nursery.cancel_scope.cancel()
            stored = await desk.store.get(inc.id)
            assert kinds_of(stored).count("unit_assigned") == 1
            assert stored.units == ["ps101"] and stored.status == "assigned"
            board.close()


async def test_bad_roster_refuses_to_start(tmp_path: Path, backend: Backend) -> None:
    with trio.fail_after(10):
        async with incident_desk(tmp_path) as desk:
            with pytest.raises(ConfigError, match="kind 'tank'"):
                make_board(tmp_path, desk, ROSTER.replace('kind = "ambulance"', 'kind = "tank"'), on=backend)
