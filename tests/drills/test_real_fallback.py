"""Real tier, issue 13 ("no call without an incident"): the gateway is killed, callers reach the dispatcher
phones through the fallback dialplan, and once the gateway is back each call is an incident of its own
(source "fallback": number, answering position, arrival, answer and end, its recording), under the id
the phone was given; a second restart adds none, and the call the gateway saw before is not doubled.

Its own Asterisk instance: the fallback calls of other tests stay out of this one's CEL log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from gateway.incident.records import Incident
from sim import sipp
from sim import sipp_xml as scenario
from sim.lab import AsteriskInstance, GatewayProcess, start_asterisk, stop_asterisk, write_config
from tests.conftest import _real_tier_available
from tests.drills.test_real_recordings import speech_pcap

TALK_S = 2.0
NUMBERS = [f"+7701999000{n}" for n in range(5)]
SEEN = "+77019998877"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskInstance]:
    if reason := _real_tier_available():
        pytest.skip(reason)
    instance = start_asterisk(write_config(tmp_path_factory.mktemp("fallback"), ring_timeout=4, overflow=30))
    yield instance
    stop_asterisk(instance)


async def place(asterisk: AsteriskInstance, workdir: Path, number: str, talk_s: float = TALK_S) -> sipp.CallResult:
    """A 112 caller talking (audio, so the recording has some) ``talk_s`` from the answer, then hanging up."""
    workdir.mkdir(parents=True, exist_ok=True)
    xml = scenario.caller("112", number, "Fallback", dtmf_pcap_file=speech_pcap(talk_s, workdir / "speech.pcap"),
                          first_dtmf_ms=0, talk_ms=int(talk_s * 1000))
    return await sipp.place_call(asterisk.cfg, xml, workdir / "caller", 40)


async def fallback_incidents(gateway: GatewayProcess) -> dict[str, Incident]:
    """The gateway's fallback incidents by number."""
    rows = [r for r in await gateway.incidents() if r["source"] == "fallback"]
    return {str(r["number"]): await gateway.incident(str(r["id"])) for r in rows}


async def reconciled(gateway: GatewayProcess, runs: int = 1) -> str:
    """/metrics once the gateway has read the CEL log ``runs`` times since it started."""
    with trio.fail_after(20):
        while True:
            async with httpx.AsyncClient(timeout=5) as client:
                text = (await client.get(gateway.url + "/metrics")).text
            done = [line for line in text.splitlines() if line.startswith("ecgw_fallback_reconcile_runs_total")]
            if sum(float(line.split()[-1]) for line in done) >= runs:
                return text
            await trio.sleep(0.2)


async def test_calls_served_while_the_gateway_was_down_become_incidents_once(
    lab: AsteriskInstance, tmp_path: Path
) -> None:
    gateway = GatewayProcess(lab.path, tmp_path / "gateway.log")
    async with sipp.phones(lab.cfg, tmp_path / "phones") as phones:
        await gateway.start()
        try:
            seen = await place(lab, tmp_path / "seen", SEEN)
            before = await gateway.wait_incident(seen.call_id, until="hung_up")
            gateway.kill()
            results: dict[str, sipp.CallResult] = {}

            async def one(number: str) -> None:
                results[number] = await place(lab, tmp_path / number, number)

            async with trio.open_nursery() as nursery:
                for number in NUMBERS:
                    nursery.start_soon(one, number)
            assert all(r.returncode == 0 for r in results.values()), "a caller did not reach a dispatcher phone"
            began = trio.current_time()
            await gateway.start()
            await reconciled(gateway)
            found = await fallback_incidents(gateway)
            registered_s = trio.current_time() - began
            assert sorted(found) == NUMBERS
            for number, incident in found.items():
                check(incident, results[number], phones)
            assert [r["id"] for r in await gateway.incidents() if r["number"] == SEEN] == [before.id]
            await recorded(gateway, found)
            await gateway.stop()
            await gateway.start()
            metrics = await reconciled(gateway, runs=2)
            assert sorted(await fallback_incidents(gateway)) == NUMBERS  # the second restart added none
            assert "ecgw_fallback_calls_registered_total 0.0" in metrics
            assert len([r for r in await gateway.incidents() if r["number"] == SEEN]) == 1
            async with httpx.AsyncClient(timeout=5) as client:
                health = (await client.get(gateway.url + "/health")).json()
            assert not [r for r in health["reasons"] if "fallback" in r], health
            print(f"5 fallback calls registered {registered_s:.2f} s after the restart began")
        finally:
            await gateway.stop()


def check(incident: Incident, result: sipp.CallResult, phones: sipp.Phones, talk_s: float = TALK_S) -> None:
    """The incident of one fallback call against what its caller and the dispatcher phone saw."""
    assert (incident.source, incident.state, incident.service) == ("fallback", "fallback", "112")
    assert incident.call_id == result.call_id and incident.position in ("pos1", "pos2")
    assert result.invite_wall is not None and result.answered_wall is not None
    assert abs(incident.created_wall - result.invite_wall) < 1.0
    events = {e.kind: e for e in incident.timeline}
    assert abs(events["answered"].wall - result.answered_wall) < 1.0
    assert events["answered"].data["position"] == incident.position
    assert incident.answer_s is not None and 0 < incident.answer_s < 4
    talked = events["hung_up"].wall - events["answered"].wall
    assert talk_s - 1.0 < talked < talk_s + 1.5, talked
    assert events["hung_up"].actor == "caller"
    rings = [line for line in phones.lines() if line.fields.get("caller") == result.call_id]
    assert rings and {line.fields["incident"] for line in rings} == {incident.id}  # the id the phone was given


async def recorded(gateway: GatewayProcess, found: dict[str, Incident]) -> None:
    """Each fallback call's recording (MixMonitor stays on through the fallback) is indexed on its incident."""
    with trio.fail_after(40):
        for incident in found.values():
            while not any(e.kind == "recording_indexed" for e in (await gateway.incident(incident.id)).timeline):
                await trio.sleep(0.5)


async def test_a_fallback_call_still_going_on_when_the_gateway_returns_is_registered_at_once(
    lab: AsteriskInstance, tmp_path: Path
) -> None:
    gateway = GatewayProcess(lab.path, tmp_path / "gateway.log")
    number = "+77019990099"
    async with sipp.phones(lab.cfg, tmp_path / "phones") as phones, trio.open_nursery() as nursery:
        result: list[sipp.CallResult] = []

        async def caller() -> None:
            result.append(await place(lab, tmp_path / "caller", number, talk_s=14.0))

        nursery.start_soon(caller)  # the gateway is not running: the fallback dialplan rings the phones
        await trio.sleep(3.0)
        await gateway.start()
        try:
            with trio.fail_after(15):
                while not (found := await fallback_incidents(gateway)).get(number):
                    await trio.sleep(0.2)
            going_on = [e.kind for e in found[number].timeline]
            assert not result and "answered" in going_on and "hung_up" not in going_on  # the call is still on
            assert found[number].position in ("pos1", "pos2")
            with trio.fail_after(40):
                while not result:
                    await trio.sleep(0.2)
                while "hung_up" not in [e.kind for e in (await fallback_incidents(gateway))[number].timeline]:
                    await trio.sleep(0.5)
            done = (await fallback_incidents(gateway))[number]
            assert result[0].returncode == 0
            check(done, result[0], phones, talk_s=14.0)
        finally:
            await gateway.stop()
