"""A new caller's incident made from their channel and facts (``intake.arrival``): whole facts give the
location; facts still to be read give a provisional incident that says nothing of the location yet; facts
REST could not give whole give a clear ``location_rejected``, never a location guessed from a part."""

from __future__ import annotations

from gateway import settings as config
from gateway.intake.arrival import arrival
from gateway.protocols import ari_events as ev
from gateway.protocols import call_facts
from tests.core.test_call_facts import asterisk_line

CHANNEL = ev.Channel(id="c1", name="PJSIP/operator-trunk-1", caller=ev.CallerId(number="+77011234567"),
                     channelvars={"ECGW_INCIDENT": "20261205-000000-1.1"})
POINT = {"ECGW_SERVICE": "102", "ECGW_LOCATION_FORMAT": "GML", "ECGW_LOCATION": "shape=Point,crs=2d,pos=43.25 76.95"}


def test_whole_facts_give_the_located_incident() -> None:
    made = arrival(config.load(), CHANNEL, call_facts.parse(asterisk_line(POINT)), "", 1.0)
    assert (made.incident.id, made.incident.service) == ("20261205-000000-1.1", "102")
    assert [(loc.lat, loc.lon) for loc in made.incident.locations] == [(43.25, 76.95)]
    assert [e.kind for e in made.incident.timeline] == ["call_arrived", "location_found"] and made.bad_input == []


def test_a_location_still_to_be_read_is_not_guessed_from_its_part() -> None:
    long = dict(POINT, ECGW_LOCATION="shape=Polygon,crs=2d,pos_list=" + " 43.25 76.95" * 200)
    facts = call_facts.parse(asterisk_line(long))
    assert facts.missing == ["ECGW_LOCATION"]
    provisional = arrival(config.load(), CHANNEL, facts, "", 1.0)
    assert provisional.incident.locations == [] and [e.kind for e in provisional.incident.timeline] == [
        "call_arrived"] and provisional.bad_input == []
    facts.unread = False  # REST could not give it either (the read failed)
    final = arrival(config.load(), CHANNEL, facts, "", 1.0, incident_id=provisional.incident.id)
    [rejected] = [e for e in final.incident.timeline if e.kind == "location_rejected"]
    assert "could not be read in full" in str(rejected.data["reason"]) and final.bad_input == ["location"]
    assert final.incident.id == provisional.incident.id and final.incident.locations == []
