"""Real tier, issue 13: the 1402 line through our own Asterisk, sipp callers and phones.

Two positions: pos1 for 102/112, pos2 for the 1402 line, and ``emergency_may_use_1402 = true``. Four
callers in one run (about 20 s): a 112 caller talks to pos1; a 1402 caller gets pos2 (service 1402, its
own menu); a 102 caller moves to 1402 by the menu key and waits, and a 112 caller queued after it waits
too. When pos2 frees, the emergency takes it although the 1402 caller waited longer; when pos1 frees,
the 1402 caller still does not take it (a 102/112 position); it gets pos2 once the emergency is done."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from gateway.incident.records import Incident
from sim import dtmf, sipp
from sim import sipp_xml as scenario
from sim.lab import AsteriskInstance, GatewayProcess, start_asterisk, stop_asterisk, write_config
from tests.conftest import _real_tier_available


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskInstance]:
    """Our Asterisk with pos1 (102/112) and pos2 (1402), 1402 dialled as 1402/+71402/81402, 102's key 5."""
    if reason := _real_tier_available():
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("line1402")
    path = write_config(workdir, positions=2, ring_timeout=4, overflow=60)
    text = path.read_text()
    text = re.sub(r'(name = "pos2"\ncontact = "[^"]+")', r'\1\ngroup = "1402"', text)
    text = text.replace("announce_every_s = 15\n", "announce_every_s = 15\nemergency_may_use_1402 = true\n")
    text = text.replace("max_s = 6\n", 'max_s = 6\noffer_1402_digit = "5"\n')
    path.write_text(text + '\n[[services]]\nname = "1402"\ndialled = ["1402", "+71402", "81402"]\n'
                    '\n[ivr.menu_1402]\ncategories = [{ digit = "1", name = "public_order", priority = 2 }]\n')
    instance = start_asterisk(path)
    assert [p.group for p in instance.cfg.dispatch.positions] == ["emergency", "1402"]
    yield instance
    stop_asterisk(instance)


@pytest.fixture
async def gateway(lab: AsteriskInstance, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(lab.path, tmp_path / "gateway.log")
    await process.start()
    yield process
    await process.stop()


@pytest.fixture
async def phones(lab: AsteriskInstance, tmp_path: Path) -> AsyncIterator[sipp.Phones]:
    async with sipp.phones(lab.cfg, tmp_path / "phones") as running:
        yield running


def at(incident: Incident, kind: str) -> float:
    return next(e.wall for e in incident.timeline if e.kind == kind)


def dialled(incident: Incident) -> list[object]:
    """Every position the gateway handed this caller to."""
    return [e.data["position"] for e in incident.timeline if e.kind == "position_dialled"]


async def test_1402_has_its_own_positions_and_an_emergency_waiting_takes_them_first(
    lab: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    calls = {  # name: (delay s, dialled, number, keys, ms from the gateway's answer to the caller's hang-up)
        "a112": (0.0, "112", "+77010000001", "20", 12000),  # Russian, a dispatcher at once: pos1
        "b1402": (0.3, "81402", "+77010000002", "21", 10000),  # public order on the 1402 line: pos2
        "d102": (3.0, "102", "+77010000004", "250", 17000),  # 5: "not an emergency", moved to 1402; 0 there
        "c112": (4.0, "+7112", "+77010000003", "20", 10000),  # queued after d102, both wait
    }
    results: dict[str, sipp.CallResult] = {}

    async def one(name: str) -> None:
        delay, number_dialled, number, keys, talk_ms = calls[name]
        await trio.sleep(delay)
        workdir = tmp_path / name
        workdir.mkdir()
        xml = scenario.caller(number_dialled, number, "", first_dtmf_ms=1200, talk_ms=talk_ms,
                              dtmf_pcap_file=dtmf.sequence_pcap(keys, workdir / "keys.pcap"))
        results[name] = await sipp.place_call(lab.cfg, xml, workdir / "caller", 60)

    moved_var: list[str] = []
    async with trio.open_nursery() as nursery:
        for name in calls:
            nursery.start_soon(one, name)
        nursery.start_soon(service_variable_once_moved, lab, gateway, "+77010000004", moved_var)
    assert {name: r.returncode for name, r in results.items()} == dict.fromkeys(calls, 0)
    # Asterisk's own record of the moved call says 1402 too: a fallback from here rings the 1402 position
    assert moved_var == ["1402"], moved_var
    a, b, c, d = [await gateway.wait_incident(results[n].call_id, until="hung_up") for n in ("a112", "b1402",
                                                                                             "c112", "d102")]
    # a 1402 call is a service "1402" incident, with its own menu, and rings the 1402 position
    assert (b.service, b.category, b.priority, b.position) == ("1402", "public_order", 2, "pos2")
    assert any(line.fields.get("incident") == b.id for line in phones.lines())
    assert (a.service, a.position, dialled(a)) == ("112", "pos1", ["pos1"])
    # the 102 caller who pressed 5 became a 1402 call, the move on its timeline
    moved = next(e for e in d.timeline if e.kind == "transferred_to_1402")
    assert (moved.data["service"], moved.data["digit"], d.service, d.ivr_choice) == ("102", "5", "1402", "dispatcher")
    # both waited; pos2 freed: the emergency, queued later, took the 1402 position
    assert at(d, "queued") < at(c, "queued") < at(b, "hung_up")
    assert (c.position, dialled(c)) == ("pos2", ["pos2"])
    # the 1402 caller never took pos1, even once it was free; it got pos2 when the emergency was done
    assert at(a, "hung_up") < at(c, "hung_up") < at(d, "answered")
    assert (d.position, dialled(d), dialled(b)) == ("pos2", ["pos2"], ["pos2"])


async def service_variable_once_moved(lab: AsteriskInstance, gateway: GatewayProcess, number: str,
                                      found: list[str]) -> None:
    """The caller channel's ECGW_SERVICE (what the fallback dialplan reads) once the gateway moved it to 1402."""
    with trio.fail_after(40):
        while True:
            rows = [r for r in await gateway.incidents() if r["number"] == number]
            incident = await gateway.incident(str(rows[0]["id"])) if rows else None
            if incident is not None and any(e.kind == "transferred_to_1402" for e in incident.timeline):
                break
            await trio.sleep(0.2)
    await trio.sleep(0.3)
    listing = await trio.to_thread.run_sync(lab.cli, "core show channels concise")
    name = next(line.split("!")[0] for line in listing.splitlines() if incident.channel_id in line.split("!"))
    shown = await trio.to_thread.run_sync(lab.cli, f"core show channel {name}")
    found.extend(line.split("=", 1)[1].strip() for line in shown.splitlines()
                 if line.strip().startswith("ECGW_SERVICE="))
