"""``POST /warnings/audience`` of a running gateway (the shipped zones, its own store): who an area being
composed reaches per channel, for named zones, drawn polygons and circles and their mix; a bad shape
refused with the reason; who may ask. And the approver reads a draft's exact areas as CAP XML."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.drivers.test_api_inputs import api

ALL = ["sms", "email", "telegram", "voice", "siren"]
PEOPLE = [  # ref, zones, channels, addresses
    ("a1", ["almaly"], ["sms"], {"phone": "+77010000001"}),
    ("a2", ["almaly"], ["sms", "email"], {"phone": "+77010000002", "email": "a2@example.kz"}),
    ("a3", ["almaly"], ["telegram"], {"telegram": "1003"}),
    ("a4", ["almaly", "medeu"], ["sms"], {"phone": "+77010000004"}),  # in two zones: counted once
    ("m1", ["medeu"], ["voice", "sms"], {"phone": "+77010000005"}),
    ("m2", ["medeu"], ["email"], {"email": "m2@example.kz"}),
    ("z1", ["auezov"], ["sms"], {"phone": "+77010000007"}),
]
# Inside Almaly only (43.228-43.262 N, 76.895-76.955 E), more than 2 decimals, closed as CAP wants it.
IN_ALMALY = [[43.2412345, 76.9101234], [43.2498765, 76.9301111], [43.2355555, 76.9404444], [43.2412345, 76.9101234]]
IN_MEDEU = {"lat": 43.2001234, "lon": 77.0305678, "radius_km": 1.2345678}


async def test_counts_per_channel_for_zones_polygons_circles_and_their_mix(tmp_path: Path) -> None:
    async with api(tmp_path) as a, a.as_("aigerim") as officer, a.as_("saule") as supervisor:
        for ref, zones, channels, addresses in PEOPLE:
            body = {"ref": ref, "language": "ru", "zones": zones, "channels": channels, **addresses}
            assert (await officer.put(f"/recipients/{ref}", json=body)).status_code == 200
        zone = await ask(officer, zones=["almaly"], channels=ALL)
        assert zone == {"zones": ["almaly"], "sirens": 4, "boards": 1, "total": 4,
                        "channels": {"sms": 3, "email": 1, "telegram": 1, "voice": 0, "siren": 4}}
        assert await ask(officer, polygons=[IN_ALMALY], channels=ALL) == zone
        circle = await ask(supervisor, circles=[IN_MEDEU], channels=["sms", "voice", "email"])
        assert circle == {"zones": ["medeu"], "sirens": 8, "boards": 0, "total": 3,
                          "channels": {"sms": 2, "voice": 1, "email": 1}}
        mix = await ask(officer, zones=["auezov"], polygons=[IN_ALMALY], circles=[IN_MEDEU], channels=["sms", "email"])
        assert mix["zones"] == ["almaly", "medeu", "auezov"] and mix["channels"] == {"sms": 5, "email": 2}
        assert mix["total"] == 6  # a3 is reached by Telegram only, not chosen
        nothing = await ask(officer, channels=["sms"])
        assert nothing == {"zones": [], "sirens": 0, "boards": 0, "channels": {"sms": 0}, "total": 0}


async def test_a_bad_shape_is_refused_with_the_reason_and_its_index(tmp_path: Path) -> None:
    async with api(tmp_path) as a, a.as_("aigerim") as officer:
        bow_tie = [[43.24, 76.90], [43.25, 76.94], [43.25, 76.90], [43.24, 76.94], [43.24, 76.90]]
        for body, reason in (
                ({"polygons": [IN_ALMALY, bow_tie]}, "polygons[1]: polygon is not simple: Self-intersection"),
                ({"polygons": [[[43.24, 76.9], [43.25, 76.9]]]}, "polygons[0]: polygon needs at least 3 distinct"),
                ({"circles": [IN_MEDEU | {"radius_km": 5000}]}, "circles[0]: circle radius 5000"),
                ({"polygons": [[[95.0, 76.9], [43.25, 76.9], [43.2, 77.0]]]}, "polygons[0]: polygon point"),
                ({"zones": ["atlantis"]}, "unknown zone 'atlantis'"),
                ({"zones": ["almaly"], "channels": ["fax"]}, "channels: expected some of"),
                ({"zones": ["almaly"], "colour": "red"}, "unknown field `colour`")):
            reply = await officer.post("/warnings/audience", json=body)
            assert reply.status_code == 400 and reason in reply.json()["error"], (body, reply.text)


async def test_who_may_ask(tmp_path: Path) -> None:
    async with api(tmp_path) as a, a.as_("marat") as dispatcher, httpx.AsyncClient(base_url=a.gateway.url) as nobody:
        body = {"zones": ["almaly"]}
        denied = await dispatcher.post("/warnings/audience", json=body)
        assert denied.status_code == 403 and "needs one of the roles" in denied.json()["error"], denied.text
        assert (await nobody.post("/warnings/audience", json=body)).status_code == 401
        assert (await nobody.post("/warnings/audience", content=b"{not json")).status_code == 401  # who, first


async def test_the_approver_reads_a_drafts_exact_areas_as_cap_xml_the_public_does_not(tmp_path: Path) -> None:
    async with api(tmp_path) as a, a.as_("aigerim") as officer, a.as_("daniyar") as approver, \
            httpx.AsyncClient(base_url=a.gateway.url) as nobody:
        draft = (await officer.post("/alerts", json={"event": "mudflow", "status": "Exercise", "channels": ["sms"],
                                                     "polygons": [IN_ALMALY], "circles": [IN_MEDEU]})).json()
        assert draft["zones"] == ["almaly", "medeu"]
        xml = await approver.get(f"/cap/alerts/{draft['id']}.xml")
        assert xml.status_code == 200, xml.text
        assert "<polygon>43.2412345,76.9101234 43.2498765,76.9301111 43.2355555,76.9404444 43.2412345,76.9101234" \
               "</polygon>" in xml.text
        assert "<circle>43.2001234,77.0305678 1.2345678</circle>" in xml.text
        assert (await nobody.get(f"/cap/alerts/{draft['id']}.xml")).status_code == 404


async def ask(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    reply = await client.post("/warnings/audience", json=body)
    assert reply.status_code == 200, reply.text
    result: dict[str, object] = reply.json()
    return result
