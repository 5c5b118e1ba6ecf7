"""Real tier: sipp callers -> Asterisk (our own instance) -> gateway process -> sipp dispatcher phones."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.incident.records import Incident
from gateway.protocols import pidf
from sim import dtmf, sipp
from sim import sipp_xml as scenario
from sim.lab import AsteriskInstance, GatewayProcess

ALMATY = (43.2381, 76.9456)


async def place(asterisk: AsteriskInstance, workdir: Path, *, dialled: str = "112", number: str | None = "+77011234567",
                name: str = "Айгерім", pidf_lo: str | None = None, keys: str = "", talk_ms: int = 6000,
                timeout: float = 40) -> sipp.CallResult:
    pcap = dtmf.sequence_pcap(keys, workdir / "keys.pcap") if keys else None
    workdir.mkdir(parents=True, exist_ok=True)
    xml = scenario.caller(dialled, number, name, pidf_lo=pidf_lo, dtmf_pcap_file=pcap, first_dtmf_ms=1200,
                          talk_ms=talk_ms)
    return await sipp.place_call(asterisk.cfg, xml, workdir / "caller", timeout)


def kinds(incident: Incident) -> list[str]:
    return [e.kind for e in incident.timeline]


def assert_in_order(incident: Incident, *expected: str) -> None:
    seen = kinds(incident)
    positions = [seen.index(k) for k in expected]
    assert positions == sorted(positions), seen


async def test_112_with_pidf_lo_creates_located_incident_and_reaches_dispatcher(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    circle = pidf.build("circle", lat=ALMATY[0], lon=ALMATY[1], radius=25)
    result = await place(asterisk, tmp_path, pidf_lo=circle, keys="21")
    assert result.returncode == 0, result.workdir
    incident = await gateway.wait_incident(result.call_id, until="hung_up")
    assert incident.service == "112"
    assert incident.caller.number == "+77011234567"
    assert (incident.language, incident.category, incident.priority) == ("ru", "crime_in_progress", 8)
    assert incident.ivr_choice == "crime_in_progress"  # the queue shows it was the caller's own choice
    assert incident.best_location == 0
    loc = incident.locations[0]
    assert (loc.source, loc.shape, loc.lat, loc.lon, loc.radius_m) == ("pidf-lo", "circle", *ALMATY, 25.0)
    assert incident.position in ("pos1", "pos2") and incident.queue_wait_s is not None
    assert_in_order(incident, "call_arrived", "incident_stored", "ivr_language", "ivr_category", "queued",
                    "ringing", "answered", "hung_up")
    rings = [line for line in phones.lines() if line.fields.get("incident") == incident.id]
    assert rings and rings[0].fields["caller"] == result.call_id


async def test_102_withheld_silent_caller_with_polygon_reaches_dispatcher(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    area = pidf.build("polygon", points=[(51.16, 71.42), (51.17, 71.42), (51.17, 71.44), (51.16, 71.44)])
    result = await place(asterisk, tmp_path, dialled="+7102", number=None, pidf_lo=area, talk_ms=10000)
    assert result.returncode == 0
    incident = await gateway.wait_incident(result.call_id, until="hung_up")
    assert incident.service == "102"
    assert incident.caller.withheld and incident.caller.number == ""
    assert incident.locations[0].shape == "polygon" and len(incident.locations[0].points) == 4
    # The spoken menu outlasts the test config's 6 s IVR limit: silence goes to a human on time.
    assert_in_order(incident, "incident_stored", "ivr_time_limit", "queued", "answered")


async def test_hostile_caller_data_is_repaired_and_still_reaches_dispatcher(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    hostile_pidf = '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple><status>'
    name = 'Robert"); DROP TABLE incidents;-- <b>\u202ex</b>\\'
    result = await place(asterisk, tmp_path, number="%3Cimg%3E1234", name=name, pidf_lo=hostile_pidf,
                         keys="79", talk_ms=7000)
    assert result.returncode == 0
    incident = await gateway.wait_incident(result.call_id, until="hung_up")
    assert "<" not in incident.caller.display_name and "\u202e" not in incident.caller.display_name
    assert {"name_markup", "name_control_chars"} <= set(incident.caller.flags)
    assert incident.caller.number == "" and "number_not_numeric" in incident.caller.flags
    assert incident.locations == [] and "location_rejected" in kinds(incident)
    assert kinds(incident).count("ivr_unknown_digit") == 2
    assert "answered" in kinds(incident)


async def test_gateway_down_fallback_dialplan_rings_dispatchers_directly(
    asterisk: AsteriskInstance, phones: sipp.Phones, tmp_path: Path
) -> None:
    result = await place(asterisk, tmp_path, talk_ms=2000)
    assert result.returncode == 0, "the call was not answered by a dispatcher phone"
    assert result.invite_wall is not None and result.answered_wall is not None
    rings = [line for line in phones.lines() if line.wall >= result.invite_wall]
    assert rings, "no dispatcher phone rang"


async def newest_answered(gateway: GatewayProcess) -> str:
    """The id of the newest incident once a dispatcher has answered its call."""
    with trio.fail_after(15):
        while True:
            rows = await gateway.incidents()
            if rows and rows[0]["state"] == "answered":
                return str(rows[0]["id"])
            await trio.sleep(0.2)


async def test_gateway_killed_mid_call_keeps_call_and_completes_incident(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        results: list[sipp.CallResult] = []

        async def caller() -> None:
            results.append(await place(asterisk, tmp_path, keys="11", talk_ms=14000))

        nursery.start_soon(caller)
        incident_id = await newest_answered(gateway)
        gateway.kill()
        await gateway.start()
    result = results[0]
    assert result.returncode == 0, "the call dropped when the gateway died"
    incident = await gateway.wait_incident(result.call_id, until="hung_up")
    assert incident.id == incident_id
    assert_in_order(incident, "call_arrived", "ivr_category", "answered", "adopted", "hung_up")
    assert incident.state == "closed" and incident.position


async def test_a_call_that_ended_while_the_gateway_was_down_is_closed_on_its_record(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    """Its hang-up came while nobody listened: once back, the gateway finds the channel gone and closes the
    incident (``hung_up``, ``unseen``) instead of leaving a caller "answered" on the board for ever."""
    async with trio.open_nursery() as nursery:
        results: list[sipp.CallResult] = []

        async def caller() -> None:
            results.append(await place(asterisk, tmp_path, keys="11", talk_ms=4000))

        nursery.start_soon(caller)
        incident_id = await newest_answered(gateway)
        gateway.kill()
    assert results[0].returncode == 0  # the call went on to its end without the gateway
    await gateway.start()
    incident = await gateway.wait_incident(results[0].call_id, until="hung_up")
    assert incident.id == incident_id and incident.state == "closed"
    [ended] = [e for e in incident.timeline if e.kind == "hung_up"]
    assert ended.data["unseen"] is True and ended.data["answered"] is True and ended.data["callback"] is False
