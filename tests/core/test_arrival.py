"""A new caller's incident made from their channel and facts (``intake.arrival``): whole facts give the
location; facts still to be read give a provisional incident that says nothing of the location yet; facts
REST could not give whole give a clear ``location_rejected``, never a location guessed from a part."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from gateway import settings as config
from gateway.asterisk.ari import Ari
from gateway.incident.bus import Bus
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.arrival import arrival
from gateway.intake.calls import FACTS_READ_S, Intake
from gateway.metrics import Metrics
from gateway.protocols import ari_events as ev
from gateway.protocols import call_facts
from tests.core.test_call_facts import asterisk_line
from tests.rest_double import RestDouble

CHANNEL = ev.Channel(id="c1", name="PJSIP/operator-trunk-1", caller=ev.CallerId(number="+77011234567"),
                     channelvars={"ECGW_INCIDENT": "20261205-000000-1.1"})
POINT = {"ECGW_SERVICE": "102", "ECGW_LOCATION_FORMAT": "GML", "ECGW_LOCATION": "shape=Point,crs=2d,pos=43.25 76.95"}


def test_whole_facts_give_the_located_incident() -> None:
    made = arrival(config.load(), CHANNEL, call_facts.parse(asterisk_line(POINT)), "", 1.0)
    assert (made.incident.id, made.incident.service) == ("20261205-000000-1.1", "102")
    assert [(loc.lat, loc.lon) for loc in made.incident.locations] == [(43.25, 76.95)]
    assert [e.kind for e in made.incident.timeline] == ["call_arrived", "location_found"] and made.bad_input == []


def test_a_location_still_to_be_read_is_not_guessed_from_its_part() -> None:
    long = dict(POINT, ECGW_LOCATION=LONG)
    facts = call_facts.parse(asterisk_line(long))
    assert facts.missing == ["ECGW_LOCATION"]
    provisional = arrival(config.load(), CHANNEL, facts, "", 1.0, provisional=True)
    assert provisional.incident.locations == [] and [e.kind for e in provisional.incident.timeline] == [
        "call_arrived"] and provisional.bad_input == []
    final = arrival(config.load(), CHANNEL, facts, "", 1.0, incident_id=provisional.incident.id)  # REST failed
    [rejected] = [e for e in final.incident.timeline if e.kind == "location_rejected"]
    assert "could not be read in full" in str(rejected.data["reason"]) and final.bad_input == ["location"]
    assert final.incident.id == provisional.incident.id and final.incident.locations == []


class SlowRest(RestDouble):
    """ARI's REST side that answers a variable read with ``value``, or never (``value`` None)."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.value is None:
            await trio.sleep_forever()
        return 200, json.dumps({"value": self.value}).encode()


async def read_cut_location(tmp_path: Path, value: str | None) -> Incident:
    intake = Intake(config.load(), AsyncStore(SqliteStore(tmp_path / "s.db")), Recorder(
        AsyncStore(SqliteStore(tmp_path / "s.db")), Bus()), Metrics())
    facts = call_facts.parse(asterisk_line(dict(POINT, ECGW_LOCATION=LONG)))
    call = intake._new_call(CHANNEL, "", facts)
    assert call.unread is not None and call.incident.locations == []
    await intake._read_facts(Ari(SimpleNamespace(process_ws=None), "ecgw", SlowRest(value)), call)  # type: ignore[arg-type]
    return call.incident


LONG = "shape=Polygon,crs=2d,posList=" + " ".join(f"43.{i:04d} 76.9{i % 7}" for i in range(150)) + " 43.0000 76.90"


async def test_a_cut_location_read_by_rest_reaches_the_incident(tmp_path: Path) -> None:
    incident = await read_cut_location(tmp_path, LONG)
    assert [loc.shape for loc in incident.locations] == ["polygon"] and len(incident.locations[0].points) == 150
    assert incident.id == "20261205-000000-1.1"


async def test_rest_that_never_answers_delays_the_call_two_seconds_at_most(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    started = trio.current_time()
    incident = await read_cut_location(tmp_path, None)
    assert trio.current_time() - started == pytest.approx(FACTS_READ_S)
    assert incident.locations == [] and "location_rejected" in [e.kind for e in incident.timeline]
