"""The incident's own location (its scene) against a running gateway: copied from a caller's candidate or
corrected by hand, the caller's candidates never changed, every change on the timeline with what it was."""

from __future__ import annotations

from pathlib import Path

from gateway.incident.records import Caller, Incident, Location, response_location
from gateway.units.model import incident_point
from tests.drivers.test_api_inputs import api


async def test_a_dispatcher_copies_the_callers_location_then_corrects_it_and_the_callers_stays(tmp_path: Path) -> None:
    async with api(tmp_path) as a, a.as_("marat") as dispatcher:
        made = (await dispatcher.post("/incidents", json={"lat": 43.2389123, "lon": 76.8897456,
                                                          "address": "пр. Абая, 10"})).json()
        path = f"/incidents/{made['id']}/scene"
        copied = await dispatcher.post(path, json={"copy": 0})
        assert copied.status_code == 200, copied.text
        assert copied.json()["scene"] == made["locations"][0]
        corrected = await dispatcher.post(path, json={"lat": 43.2401234567, "lon": 76.8912345678,
                                                      "address": "пр. Абая, 12, подъезд 3"})
        assert corrected.status_code == 200, corrected.text
        incident = (await dispatcher.get(f"/incidents/{made['id']}")).json()
    scene = incident["scene"]
    assert (scene["lat"], scene["lon"], scene["source"]) == (43.2401234567, 76.8912345678, "manual")  # as given
    assert scene["address"] == "пр. Абая, 12, подъезд 3"
    assert incident["locations"] == made["locations"]  # the caller's candidate as received
    events = [e for e in incident["timeline"] if e["kind"] == "scene_set"]
    assert [(e["actor"], e["data"].get("copied_from")) for e in events] == [("marat", 0), ("marat", None)]
    assert events[1]["data"]["previous_lat"] == 43.2389123


async def test_bad_scene_requests_are_refused_with_the_reason_and_change_nothing(tmp_path: Path) -> None:
    async with api(tmp_path) as a, a.as_("marat") as dispatcher, a.as_("aigerim") as officer:
        made = (await dispatcher.post("/incidents", json={"note": "по рации"})).json()
        path = f"/incidents/{made['id']}/scene"
        cases = [({"copy": 0}, 409, "no caller location #0"), ({"lat": 43.2}, 400, "both or neither"),
                 ({"copy": 0, "address": "x"}, 400, "not both"), ({}, 400, "give copy"),
                 ({"address": "   "}, 400, "give copy"), ({"lat": 91, "lon": 0}, 400, "$.lat"),
                 ({"copy": -1}, 400, "$.copy")]
        for body, status, words in cases:
            reply = await dispatcher.post(path, json=body)
            assert (reply.status_code, words in reply.json()["error"]) == (status, True), (body, reply.text)
        assert (await officer.post(path, json={"address": "x"})).status_code == 403
        assert (await dispatcher.post("/incidents/nope/scene", json={"address": "x"})).status_code == 404
        incident = (await dispatcher.get(f"/incidents/{made['id']}")).json()
    assert "scene" not in incident or incident["scene"] is None
    assert not [e for e in incident["timeline"] if e["kind"] == "scene_set"]


def test_units_go_to_the_scene_when_set_else_to_the_callers_best_candidate() -> None:
    caller = Caller(raw_number="", number="", display_name="", withheld=False)
    near = Location(source="pidf-lo", shape="circle", lat=43.2, lon=76.9, radius_m=50)
    incident = Incident(id="i", service="112", created_wall=0, caller=caller, locations=[near], best_location=0)
    assert response_location(incident) is near and incident_point(incident) == (43.2, 76.9)
    incident.scene = Location(source="manual", shape="civic", address="Абая 12")  # an address alone
    assert incident_point(incident) == (43.2, 76.9)  # units still have a point: the caller's
    incident.scene = Location(source="manual", shape="point", lat=43.25, lon=76.95)
    assert incident_point(incident) == (43.25, 76.95)
    assert incident.locations == [near]
