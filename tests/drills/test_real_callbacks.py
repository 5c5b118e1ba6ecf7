"""Real tier, issue 13: abandoned and silent calls through our own Asterisk, sipp callers and phones.

One dispatcher position, so a second caller waits in the queue while the first talks: a caller who hangs
up there is on the call-back list; a dispatcher's call-back rings the position's phone, then the caller
behind the call-out trunk (a sipp UAS on loopback), and the outcome is on the incident; a caller who
says nothing hears the prompt, is marked silent and still reaches the dispatcher. Every call-back is
recorded on the incident beside its first call; a caller who calls again and is answered leaves the list."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio

from gateway.asterisk import sandbox
from gateway.incident.records import Incident
from gateway.people.accounts import Accounts
from sim import dtmf, sipp
from sim import sipp_xml as scenario
from sim.lab import AsteriskInstance, GatewayProcess, start_asterisk, stop_asterisk, write_config
from sim.sipp import free_port
from tests.conftest import _real_tier_available
from tests.console_pages import PASSWORD
from tests.drills.test_real_recordings import speech_pcap
from tests.drivers.test_console_browser import chromium_or_skip, in_browser

TOKEN = "tok-aigerim-dispatcher"
FIRST, SECOND, TALKER, AGAIN = "+77010000001", "+77012223344", "+77015556677", "+77018889900"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AsteriskInstance, int]]:
    """Our Asterisk with one position, the call-back trunk on a port of ours, prompts after 4 s of silence."""
    if reason := _real_tier_available():
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("callbacks")
    path = write_config(workdir, positions=1, ring_timeout=4, overflow=60)
    trunk = free_port()
    path.write_text(path.read_text() + f'\n[callback]\ntrunk_uri = "sip:127.0.0.1:{trunk}"\ncaller_id = "1102"\n'
                    '\n[silence]\nafter_s = 4\nrepeat_s = 30\n')
    instance = start_asterisk(path)
    yield instance, trunk
    stop_asterisk(instance)


@pytest.fixture
async def gateway(lab: tuple[AsteriskInstance, int], tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    asterisk, _ = lab
    accounts = Accounts(asterisk.cfg.store.path)
    if accounts.person("aigerim") is None:
        accounts.add("aigerim", ["dispatcher"], token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest())
    accounts.close()
    process = GatewayProcess(asterisk.path, tmp_path / "gateway.log")
    await process.start()
    yield process
    await process.stop()


@pytest.fixture
async def phones(lab: tuple[AsteriskInstance, int], tmp_path: Path) -> AsyncIterator[sipp.Phones]:
    async with sipp.phones(lab[0].cfg, tmp_path / "phones") as running:
        yield running


async def call(asterisk: AsteriskInstance, workdir: Path, number: str, talk_ms: int) -> sipp.CallResult:
    """A caller who presses 2 (Russian) then 0 (a dispatcher now) and hangs up ``talk_ms`` after the answer."""
    workdir.mkdir(parents=True, exist_ok=True)
    xml = scenario.caller("112", number, "", dtmf_pcap_file=dtmf.sequence_pcap("20", workdir / "keys.pcap"),
                          first_dtmf_ms=1200, talk_ms=talk_ms)
    return await sipp.place_call(asterisk.cfg, xml, workdir / "caller", 60)


def kinds(incident: Incident) -> list[str]:
    return [e.kind for e in incident.timeline]


async def callbacks(gateway: GatewayProcess) -> list[dict[str, object]]:
    async with httpx.AsyncClient(timeout=5, headers=gateway.host_headers()) as client:
        reply = await client.get(gateway.url + "/callbacks")
    reply.raise_for_status()
    return reply.json()  # type: ignore[no-any-return]


async def call_back(gateway: GatewayProcess, key: str, position: str = "pos1") -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        return await client.post(f"{gateway.url}/callbacks/{key}/call", json={"position": position})


async def abandon_while_the_first_talks(asterisk: AsteriskInstance, tmp_path: Path,
                                        second: str = SECOND) -> tuple[sipp.CallResult, ...]:
    """The first caller talks to pos1 for 11 s; the second waits in the queue and hangs up after 6 s."""
    results: dict[str, sipp.CallResult] = {}

    async def one(number: str, talk_ms: int, delay: float) -> None:
        await trio.sleep(delay)
        results[number] = await call(asterisk, tmp_path / number, number, talk_ms)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, FIRST, 11000, 0.0)
        nursery.start_soon(one, second, 6000, 1.5)
    return results[FIRST], results[second]


async def recordings_when(gateway: GatewayProcess, incident_id: str, count: int) -> list[dict[str, object]]:
    """The incident's recordings (``GET /incidents/{id}/recordings``) once ``count`` are indexed."""
    with trio.fail_after(60):
        while kinds(await gateway.incident(incident_id)).count("recording_indexed") < count:
            await trio.sleep(0.5)
    async with httpx.AsyncClient(timeout=5, headers=gateway.host_headers()) as client:
        reply = await client.get(f"{gateway.url}/incidents/{incident_id}/recordings")
    assert reply.status_code == 200, reply.text
    return [view["recording"] for view in reply.json()["recordings"] if view["state"] == "ok"]


def assert_call_back_recorded(asterisk: AsteriskInstance, incident_id: str, found: list[dict[str, object]]) -> None:
    """Two recordings on the incident: its call (``<id>.WAV``) and the call-back (``<id>-cb<leg>.WAV``), the
    latter as indexed on disk and read by sox."""
    assert sorted(str(r["file"]).startswith(incident_id + "-cb") for r in found) == [False, True], found
    leg = next(r for r in found if str(r["file"]).startswith(incident_id + "-cb"))
    assert leg["incident_id"] == incident_id and leg["id"] == str(leg["file"]).removesuffix(".WAV")
    path = sandbox.locate(asterisk.cfg).host_dir / asterisk.cfg.recordings.dir / str(leg["file"])
    data = path.read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (leg["size"], leg["sha256"])
    info = subprocess.run(["sox", "--i", str(path)], capture_output=True, text=True, check=True).stdout
    assert "GSM" in info and "8000" in info, info
    played = float(subprocess.run(["sox", "--i", "-D", str(path)], capture_output=True, text=True, check=True).stdout)
    # (short: MixMonitor writes the audio that flows, and these sipp phones send little or none)
    assert played > 0 and abs(played - float(leg["duration_s"])) < 0.1, (played, leg)  # type: ignore[arg-type]


async def test_a_caller_who_hangs_up_in_the_queue_is_listed_and_the_call_back_reaches_them(
    lab: tuple[AsteriskInstance, int], gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    asterisk, trunk = lab
    first, second = await abandon_while_the_first_talks(asterisk, tmp_path)
    assert first.returncode == 0 and second.returncode == 0
    gone = await gateway.wait_incident(second.call_id, until="hung_up")
    assert "queued" in kinds(gone) and "answered" not in kinds(gone)
    assert next(e for e in gone.timeline if e.kind == "hung_up").data["callback"] is True
    listed = await callbacks(gateway)
    assert [(e["number"], e["incidents"]) for e in listed] == [(SECOND, [gone.id])]

    resident = scenario.resident(hang_up_after_ms={SECOND: 2000})
    uas = sipp.Uas("caller-phone", resident, trunk, media_port=free_port(),
                   extra=("-trace_msg", "-message_file", str(tmp_path / "caller-phone.msg")))
    async with sipp.answering_sipp(tmp_path / "trunk", [uas], "the caller's phone") as [log]:
        started = await call_back(gateway, SECOND)
        assert started.status_code == 202, started.text
        with trio.fail_after(30):
            while "callback_outcome" not in kinds(incident := await gateway.incident(gone.id)):
                await trio.sleep(0.3)
        with trio.fail_after(15):  # the caller hangs up 2 s after answering: the call-back ends
            while "callback_ended" not in kinds(await gateway.incident(gone.id)):
                await trio.sleep(0.3)
    outcome = next(e for e in incident.timeline if e.kind == "callback_outcome")
    assert (outcome.data["outcome"], outcome.data["position"]) == ("answered", "pos1")
    assert_in_order(incident, "hung_up", "callback_started", "callback_outcome")
    # the position's phone rang first, then the caller, who saw the centre's number
    rang = [line for line in phones.lines() if line.kind == "RINGING"]
    invites = [line for line in sipp.parse_log(sipp.read_log(log)) if line.kind == "INVITE"]
    assert rang and invites and rang[-1].wall < invites[0].wall and invites[0].fields["number"] == SECOND
    assert rang[-1].fields.get("incident") == gone.id  # the position's phone was told which incident
    assert 'From: "1102" <sip:1102@' in (tmp_path / "caller-phone.msg").read_text()
    assert await callbacks(gateway) == []  # reached: off the list
    # recorded like every call, into a file of its own on the same incident
    assert_call_back_recorded(asterisk, gone.id, await recordings_when(gateway, gone.id, 2))
    ended = next(e for e in (await gateway.incident(gone.id)).timeline if e.kind == "callback_ended")
    assert ended.actor == "pos1" and str(ended.data["recording"]).startswith(gone.id + "-cb")


async def test_a_caller_who_calls_again_and_is_answered_leaves_the_list(
    lab: tuple[AsteriskInstance, int], gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    asterisk, _ = lab
    first, abandoned = await abandon_while_the_first_talks(asterisk, tmp_path, AGAIN)
    assert first.returncode == 0 and abandoned.returncode == 0
    gone = await gateway.wait_incident(abandoned.call_id, until="hung_up")
    assert [e["incidents"] for e in await callbacks(gateway) if e["number"] == AGAIN] == [[gone.id]]
    again = await call(asterisk, tmp_path / "again", AGAIN, 5000)  # pos1 is free now: answered
    assert again.returncode == 0
    answered = await gateway.wait_incident(again.call_id, until="answered")
    with trio.fail_after(15):
        while "callback_reached" not in kinds(incident := await gateway.incident(gone.id)):
            await trio.sleep(0.3)
    reached = next(e for e in incident.timeline if e.kind == "callback_reached")
    assert (reached.data["how"], reached.data["answered_as"]) == ("called_again", answered.id)
    assert reached.data["note"] == f"reached: called again, answered as {answered.id}"
    assert all(e["number"] != AGAIN for e in await callbacks(gateway))  # off the list
    assert "callback_reached" not in kinds(await gateway.incident(answered.id))


async def test_a_busy_caller_stays_on_the_list_with_the_attempt_counted(
    lab: tuple[AsteriskInstance, int], gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    asterisk, trunk = lab
    _first, second = await abandon_while_the_first_talks(asterisk, tmp_path)
    gone = await gateway.wait_incident(second.call_id, until="hung_up")
    uas = sipp.Uas("caller-phone", scenario.resident(reject={SECOND: 486}), trunk, media_port=free_port())
    async with sipp.answering_sipp(tmp_path / "trunk", [uas], "the caller's phone"):
        assert (await call_back(gateway, gone.id)).status_code == 202
        with trio.fail_after(30):
            while "callback_outcome" not in kinds(incident := await gateway.incident(gone.id)):
                await trio.sleep(0.3)
    assert next(e for e in incident.timeline if e.kind == "callback_outcome").data["outcome"] == "busy"
    entry = next(e for e in await callbacks(gateway) if e["number"] == SECOND)
    assert gone.id in entry["incidents"] and entry["attempts"] == 1 and entry["last_outcome"] == "busy"  # type: ignore[operator]


async def test_a_silent_caller_hears_the_prompt_is_marked_and_still_reaches_the_dispatcher(
    lab: tuple[AsteriskInstance, int], gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    asterisk, _ = lab
    results: dict[str, sipp.CallResult] = {}

    async def one(number: str, talk_ms: int, delay: float) -> None:
        await trio.sleep(delay)
        results[number] = await call(asterisk, tmp_path / number, number, talk_ms)

    async def talker() -> None:  # talks from the answer, waits in the queue, gives up after 10 s
        await trio.sleep(2.0)
        audio = speech_pcap(10.0, tmp_path / "speech.pcap")
        xml = scenario.caller("112", TALKER, "", dtmf_pcap_file=audio, first_dtmf_ms=0, talk_ms=10000)
        results[TALKER] = await sipp.place_call(asterisk.cfg, xml, tmp_path / "talker", 60)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, FIRST, 16000, 0.0)  # keeps the one position busy
        nursery.start_soon(one, SECOND, 26000, 1.5)  # says nothing, waits, then is answered
        nursery.start_soon(talker)
    talking = await gateway.wait_incident(results[TALKER].call_id, until="hung_up")
    assert "queued" in kinds(talking) and "silent" not in kinds(talking) and not talking.silent
    silent = results[SECOND]
    assert silent.returncode == 0, "the silent caller's call did not end normally"
    incident = await gateway.wait_incident(silent.call_id, until="hung_up")
    assert incident.silent
    assert_in_order(incident, "queued", "silent", "silent_prompt", "answered", "hung_up")
    assert next(e for e in incident.timeline if e.kind == "hung_up").actor == "caller"  # the caller hung up
    marked = next(e for e in incident.timeline if e.kind == "silent")
    assert 4.0 <= float(marked.data["after_s"] or 0) < 8.0
    rows = [r for r in await gateway.incidents() if r["id"] == incident.id]
    assert rows and rows[0]["silent"] is True  # the queue's rows carry the flag


async def test_a_dispatcher_calls_back_from_the_console(
    lab: tuple[AsteriskInstance, int], gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    chromium = chromium_or_skip()
    asterisk, trunk = lab
    accounts = Accounts(asterisk.cfg.store.path)
    accounts.reset("aigerim", PASSWORD)
    accounts.close()
    _first, second = await abandon_while_the_first_talks(asterisk, tmp_path)
    gone = await gateway.wait_incident(second.call_id, until="hung_up")
    uas = sipp.Uas("caller-phone", scenario.resident(hang_up_after_ms={SECOND: 1500}), trunk, media_port=free_port())
    async with sipp.answering_sipp(tmp_path / "trunk", [uas], "the caller's phone"):
        seen = await in_browser("call_back_page", tmp_path, chromium=chromium, url=gateway.url, name="aigerim",
                                number=SECOND)
        with trio.fail_after(30):
            while "callback_outcome" not in kinds(incident := await gateway.incident(gone.id)):
                await trio.sleep(0.3)
    assert SECOND in str(seen["row"]) and "Перезвонить" not in str(seen["error"]) and not seen["error"], seen
    started = next(e for e in incident.timeline if e.kind == "callback_started")
    assert started.actor == "aigerim" and started.data["position"] == "pos1"
    assert next(e for e in incident.timeline if e.kind == "callback_outcome").data["outcome"] == "answered"
    assert all(e["number"] != SECOND for e in await callbacks(gateway))


async def test_with_no_dispatcher_free_the_gateway_calls_back_by_itself_and_queues_the_caller(
    lab: tuple[AsteriskInstance, int], phones: sipp.Phones, tmp_path: Path
) -> None:
    asterisk, trunk = lab
    text = asterisk.path.read_text().replace("[callback]\n", "[callback]\nauto_after_s = 3\n")
    text = text.replace(asterisk.cfg.store.path, str(tmp_path / "auto.sqlite3"))  # a list of its own
    path = tmp_path / "auto.toml"
    path.write_text(text)
    gateway = GatewayProcess(path, tmp_path / "gateway.log")
    await gateway.start()
    results: dict[str, sipp.CallResult] = {}

    async def one(number: str, talk_ms: int, delay: float) -> None:
        await trio.sleep(delay)
        results[number] = await call(asterisk, tmp_path / number, number, talk_ms)

    uas = sipp.Uas("caller-phone", scenario.resident(hang_up_after_ms={SECOND: 25000}), trunk, media_port=free_port())
    try:
        async with sipp.answering_sipp(tmp_path / "trunk", [uas], "the caller's phone") as [log]:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, FIRST, 25000, 0.0)  # the one position stays busy for 25 s
                nursery.start_soon(one, SECOND, 5000, 1.5)  # gives up in the queue
            gone = await gateway.wait_incident(results[SECOND].call_id, until="callback_connected", timeout=30)
            with trio.fail_after(40):
                while kinds(incident := await gateway.incident(gone.id)).count("hung_up") < 2:
                    await trio.sleep(0.5)
        invites = [line for line in sipp.parse_log(sipp.read_log(log)) if line.kind == "INVITE"]
        recorded = await recordings_when(gateway, gone.id, 2)
    finally:
        await gateway.stop()
    assert [line.fields["number"] for line in invites] == [SECOND]  # once, straight to the caller
    assert_in_order(incident, "queued", "hung_up", "callback_started", "callback_outcome", "answered")
    assert_in_order(incident, "callback_started", "callback_connected", "answered")
    started = next(e for e in incident.timeline if e.kind == "callback_started")
    assert started.actor == "gateway" and started.data["auto"] is True
    assert next(e for e in incident.timeline if e.kind == "callback_outcome").data["outcome"] == "answered"
    seen = kinds(incident)
    assert seen.index("answered") > seen.index("callback_connected") and incident.position == "pos1"
    assert incident.state == "closed" and seen[-1] in ("hung_up", "recording_indexed", "recording_failed")
    # the call-back leg is recorded from the caller's answer, beside the first call
    assert_call_back_recorded(asterisk, gone.id, recorded)


def assert_in_order(incident: Incident, *expected: str) -> None:
    seen = kinds(incident)
    positions = [seen.index(k) for k in expected]
    assert positions == sorted(positions), seen
