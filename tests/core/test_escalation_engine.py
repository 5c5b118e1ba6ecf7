"""The escalation engine with a real store: acknowledgements, repeats, escalation, category switch,
answer-time SLA, restart mid-scenario. Timers run on Trio's mock clock (``autojump_clock``): a test
waits in virtual time, so a loaded machine cannot make a deadline fire early or late."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from channels.base import Channel
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk, no_caller
from gateway.incident.recorder import Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, Statement
from gateway.scenario import texts
from gateway.scenario.catalogue import Catalogue, Category
from gateway.scenario.engine import Engine
from gateway.scenario.model import Scenario
from gateway.scenario.notifier import Notifier
from gateway.scenario.people import Directory, Person, Tier
from gateway.scenario.triggers import Triggers, TriggerSettings
from tests.store_backends import Backend

ROOT = Path(__file__).resolve().parents[2]
TEXTS = texts.load(ROOT / "alert_templates" / "responders")
PEOPLE = [Person(name="duty_a", roles=["duty_officer"], phone="+77010000001", channels=["sms"]),
          Person(name="duty_b", roles=["duty_officer"], phone="+77010000002", channels=["sms"]),
          Person(name="sup", roles=["shift_supervisor"], phone="+77010000003", channels=["sms"]),
          Person(name="fallback", roles=["fallback_test"], phone="+77010000004", telegram=42,
                 channels=["telegram", "sms"])]
DIRECTORY = Directory(people={p.name: p for p in PEOPLE}, watchers={}, centres={},
                      tiers={"sup": Tier(name="sup", roles=["shift_supervisor"], channels=["console"], ack="none")})
NOTIFY = {"do": "notify", "roles": ["duty_officer"], "channels": ["console"], "template": "incident_new",
          "ack": "any", "timeout_s": 0.4, "repeat": 2}


def scenario(name: str, *steps: dict[str, object]) -> Scenario:
    return msgspec.convert({"name": name, "steps": list(steps)}, Scenario)


def catalogue(*scenarios: Scenario) -> Catalogue:
    cats = {s.name: Category(name=s.name, title={"kk": s.name, "ru": s.name, "en": s.name}, priority=5,
                             scenario=s.name) for s in scenarios}
    cats["unclassified"] = Category(name="unclassified", title={"kk": "-", "ru": "-", "en": "-"}, priority=5,
                                    scenario=scenarios[0].name)
    return Catalogue(categories=cats, scenarios={s.name: s for s in scenarios})


class InlineStore(AsyncStore):
    """The real SQLite store with its calls made on the Trio thread: the mock clock jumps only when
    every task waits for a timer, never while a write is out on a worker thread."""

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return fn(*args)

    async def _write(self, statements: list[Statement], urgent: bool = False) -> None:
        error = self._commit([statements])[0]
        await trio.lowlevel.checkpoint()
        if error is not None:
            raise error


class Env(msgspec.Struct):
    engine: Engine
    desk: Desk
    triggers: Triggers

    async def open(self, category: str, source: str = "api", number: str = "", service: str = "112") -> Incident:
        caller = Caller(raw_number=number, number=number, display_name="", withheld=False) if number else no_caller()
        return await self.desk.open(service=service, source=source, caller=caller, kind="reported",  # type: ignore[arg-type]
                                    actor="test", category=category, priority=5)

    async def timeline(self, incident_id: str) -> list[tuple[str, dict[str, object]]]:
        incident = await self.desk.store.get(incident_id)
        return [(e.kind, dict(e.data)) for e in incident.timeline]

    async def wait_for(self, incident_id: str, kind: str, count: int = 1, timeout: float = 10.0,
                       **match: object) -> list[dict[str, object]]:
        with trio.fail_after(timeout):
            while True:
                found = [d for k, d in await self.timeline(incident_id) if k == kind
                         and all(d.get(key) == value for key, value in match.items())]
                if len(found) >= count:
                    return found
                await trio.sleep(0.05)


@asynccontextmanager
async def environment(backend: Backend, cat: Catalogue, channels: Mapping[str, Channel] | None = None,
                      settings: TriggerSettings | None = None, directory: Directory = DIRECTORY,
                      threaded: bool = False) -> AsyncIterator[Env]:
    """The engine and its triggers on ``backend``'s store; ``threaded`` for tests on the real clock."""
    store = (AsyncStore if threaded else InlineStore)(backend.open())
    recorder = Recorder(store, Bus())
    engine = Engine(recorder=recorder, catalogue=cat, directory=directory,
                    notifier=Notifier(dict(channels or {}), TEXTS, deliver_timeout_s=5))
    triggers = Triggers(engine, engine.notifier, settings or TriggerSettings(answer_sla_s=600))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            await nursery.start(triggers.run)
            yield Env(engine, Desk(store, recorder), triggers)
            nursery.cancel_scope.cancel()
    finally:
        store.sync.close()


def token_of(env: Env, incident_id: str, person: str) -> str:
    run = env.engine.runs[f"{incident_id}/category"]
    return next(t.token for t in run.targets if t.person == person)


async def test_an_acknowledgement_ends_the_wait_and_skips_the_escalation(
        backend: Backend, autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "timeout_s": 5}, {"do": "escalate", "tier": "sup", "when": {"last_acked": False}},
                 {"do": "close"})
    async with environment(backend, catalogue(s)) as env:
        incident = await env.open("s")
        await env.wait_for(incident.id, "awaiting_ack")
        token = token_of(env, incident.id, "duty_b")
        assert await env.engine.acknowledge(token, by="duty_b", via="console") == "acknowledged"
        finished = await env.wait_for(incident.id, "scenario_finished")
        kinds = [k for k, _ in await env.timeline(incident.id)]
        assert finished[0]["outcome"] == "closed" and "ack_timeout" not in kinds
        assert ("step_skipped", {"step": 2, "do": "escalate"}) in await env.timeline(incident.id)
        assert await env.engine.acknowledge("no-such-token", by="x", via="console") == "unknown"
        assert await env.engine.acknowledge(token, by="duty_b", via="sms") == "unknown"  # the run is over


async def test_nobody_acknowledges_so_it_repeats_then_escalates(backend: Backend,
                                                                autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", NOTIFY, {"do": "escalate", "tier": "sup", "when": {"last_acked": False}}, {"do": "close"})
    async with environment(backend, catalogue(s)) as env:
        incident = await env.open("s")
        await env.wait_for(incident.id, "scenario_finished")
        timeline = await env.timeline(incident.id)
        notified = [(d["person"], d["attempt"]) for k, d in timeline if k == "notified" and d["person"] != "sup"]
        assert sorted(notified) == [("duty_a", 1), ("duty_a", 2), ("duty_b", 1), ("duty_b", 2)]
        timeouts = [d for k, d in timeline if k == "ack_timeout"]
        assert [t.get("gave_up", False) for t in timeouts] == [False, True]
        assert ("step_started", "escalate") in [(k, d.get("do")) for k, d in timeline]
        assert len(env.engine.lateness_s) == 2 and max(env.engine.lateness_s) < 0.5


async def test_each_waits_for_every_person(backend: Backend, autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "ack": "each", "timeout_s": 5}, {"do": "close"})
    async with environment(backend, catalogue(s)) as env:
        incident = await env.open("s")
        await env.wait_for(incident.id, "awaiting_ack")
        await env.engine.acknowledge(token_of(env, incident.id, "duty_a"), by="duty_a", via="sms")
        await trio.sleep(0.2)
        assert env.engine.runs[f"{incident.id}/category"].phase == "waiting"
        await env.engine.acknowledge(token_of(env, incident.id, "duty_b"), by="duty_b", via="sms")
        await env.wait_for(incident.id, "scenario_finished")


async def test_changing_the_category_switches_scenario_cleanly(backend: Backend,
                                                               autojump_clock: trio.testing.MockClock) -> None:
    first = scenario("first", {**NOTIFY, "timeout_s": 30}, {"do": "close"})
    second = scenario("second", {**NOTIFY, "roles": ["shift_supervisor"], "ack": "none"}, {"do": "close"})
    async with environment(backend, catalogue(first, second)) as env:
        incident = await env.open("first")
        await env.wait_for(incident.id, "awaiting_ack")
        old_token = token_of(env, incident.id, "duty_a")
        await env.desk.set_category(incident.id, "second", 7, actor="dispatcher")
        switched = await env.wait_for(incident.id, "scenario_switched")
        assert (switched[0]["previous"], switched[0]["scenario"],
                switched[0]["previous_step"]) == ("first", "second", 1)
        await env.wait_for(incident.id, "scenario_finished", scenario="second")
        assert await env.engine.acknowledge(old_token, by="duty_a", via="console") == "unknown"
        assert [r.generation for r in await env.engine.runs_of(incident.id)] == [1]
        assert f"{incident.id}/category" not in env.engine.runs  # finished runs live on in the store only


async def test_a_call_not_answered_in_time_runs_the_sla_scenario(backend: Backend,
                                                                 autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "timeout_s": 30}, {"do": "close"})
    sla = scenario("answer_sla", {**NOTIFY, "roles": ["shift_supervisor"], "ack": "none"}, {"do": "close"})
    settings = TriggerSettings(answer_sla_s=0.3, unclassified_after_s=30, sla_scenario="answer_sla")
    async with environment(backend, catalogue(s, sla), settings=settings) as env:
        waiting = await env.open("", source="call", number="+77011234567")
        started = await env.wait_for(waiting.id, "scenario_started", run="sla")
        assert started[0]["reason"] == "sla_breach" and started[0]["waited_s"] >= 0.3
        await env.wait_for(waiting.id, "notified", person="sup")
        assert env.triggers.breaches == 1
        assert f"{waiting.id}/category" not in env.engine.runs  # not classified yet: no category scenario
        line = await env.open("", source="call", number="+77011234568", service="1402")
        await env.wait_for(line.id, "scenario_started", run="sla")  # on its timeline, as any wait past the SLA
        assert env.triggers.breaches == 1  # but the board's breaches are the emergency lines'


async def test_deadlines_an_answer_and_a_category_made_moot_load_nothing(backend: Backend,
                                                                        autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "ack": "none"}, {"do": "close"})
    settings = TriggerSettings(answer_sla_s=5, unclassified_after_s=10)
    async with environment(backend, catalogue(s), settings=settings) as env:
        call = await env.open("", source="call", number="+77011234567")
        await env.desk.record(call.id, "answered", actor="p1", changes={"state": "answered", "answer_s": 1.0})
        await env.desk.set_category(call.id, "s", 5, actor="dispatcher")
        await env.wait_for(call.id, "scenario_finished")
        loads: list[str] = []
        load = env.engine.store.get

        async def counted(incident_id: str) -> Incident:
            loads.append(incident_id)
            return await load(incident_id)

        env.engine.store.get = counted  # type: ignore[method-assign]
        await trio.sleep(11)  # both deadlines pass
        assert loads == []  # once, each was an incident load from the store to find nothing to do
        assert env.triggers.breaches == 0 and not env.triggers._due
        assert [d.get("run") for k, d in await env.timeline(call.id) if k == "scenario_started"] == ["category"]


async def test_a_deadline_before_the_one_waited_for_fires_on_time_past_moot_ones(
        backend: Backend, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    sla = scenario("answer_sla", {**NOTIFY, "roles": ["shift_supervisor"], "ack": "none"}, {"do": "close"})
    settings = TriggerSettings(answer_sla_s=5, unclassified_after_s=600, sla_scenario="answer_sla")
    async with environment(backend, catalogue(sla), settings=settings) as env:
        answered = await env.open("", source="call", number="+77011234560")
        await env.desk.record(answered.id, "answered", actor="p1", changes={"state": "answered", "answer_s": 0.5})
        waiting = await env.open("", source="call", number="+77011234561")  # the loop waits for its deadline
        await trio.sleep(1)
        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() - 3.0)
        adopted = await env.open("", source="call", number="+77011234562")  # came 3 s ago: due 2 s from now
        monkeypatch.setattr(time, "time", wall)
        first = await env.wait_for(adopted.id, "scenario_started", run="sla")
        assert first[0]["waited_s"] == 5.0  # at its own deadline, not at the later one being waited for
        assert (await env.wait_for(waiting.id, "scenario_started", run="sla"))[0]["waited_s"] == 5.0
        assert env.triggers.breaches == 2 and not [key for key in env.triggers._due if key[0] == "answer"]


async def test_restart_mid_scenario_resumes_without_repeating_a_step(backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                                                    autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "timeout_s": 0.8, "repeat": 3}, {"do": "close"})
    db = backend
    async with environment(db, catalogue(s)) as env:
        incident = await env.open("s")
        await env.wait_for(incident.id, "awaiting_ack")  # attempt 1 sent, waiting
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 1.0)  # the gateway was down for a second, past the deadline
    async with environment(db, catalogue(s)) as env:
        await env.wait_for(incident.id, "scenario_finished", timeout=10)
        timeline = await env.timeline(incident.id)
        overdue = env.engine.lateness_s[0]
    assert 0.15 < overdue < 0.3  # the stored deadline (0.8 s) had passed 0.2 s before: it fired at once
    attempts = sorted((d["person"], d["attempt"]) for k, d in timeline if k == "notified")
    assert attempts == [(p, n) for p in ("duty_a", "duty_b") for n in (1, 2, 3)]
    assert [k for k, _ in timeline].count("step_started") == 1
    assert [d.get("gave_up", False) for k, d in timeline if k == "ack_timeout"] == [False, False, True]



async def test_a_status_change_is_told_to_the_category_watchers(backend: Backend,
                                                                autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "ack": "none"}, {"do": "close"})
    watched = msgspec.structs.replace(DIRECTORY, watchers={"*": ["shift_supervisor"]})
    async with environment(backend, catalogue(s), directory=watched) as env:
        incident = await env.open("s")
        await env.wait_for(incident.id, "scenario_finished", count=2)  # its scenario and the "new" status run
        await env.desk.set_status(incident.id, "on_scene", actor="dispatcher")
        await env.wait_for(incident.id, "scenario_finished", scenario="_watch:s", count=2)
        timeline = await env.timeline(incident.id)
        started = [d for k, d in timeline if k == "scenario_started" and d["run"] == "status"]
        assert [d["status"] for d in started] == ["new", "on_scene"]  # one durable run per status
        failed = [(d["person"], d["channel"]) for k, d in timeline if k == "channel_failed"]
        assert failed == [("sup", "sms"), ("sup", "sms")]  # no SMS channel here: recorded, not lost silently
        runs = {r.key.split("/")[1]: r.outcome for r in await env.engine.runs_of(incident.id)}
        assert runs == {"category": "closed", "status:new": "closed", "status:on_scene": "closed"}


async def test_closing_the_incident_stops_its_scenario(backend: Backend,
                                                       autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "timeout_s": 30}, {"do": "close"})
    async with environment(backend, catalogue(s)) as env:
        incident = await env.open("s")
        await env.wait_for(incident.id, "awaiting_ack")
        token = token_of(env, incident.id, "duty_a")
        await env.desk.set_status(incident.id, "closed", actor="dispatcher")
        stopped = await env.wait_for(incident.id, "scenario_stopped")
        assert stopped[0]["reason"] == "incident closed"
        assert await env.engine.acknowledge(token, by="duty_a", via="sms") == "unknown"
        assert [r.outcome for r in await env.engine.runs_of(incident.id)] == ["incident closed"]


async def test_the_nearest_free_patrol_is_called_and_its_acknowledgement_sends_it(backend: Backend,
                                                                                  tmp_path: Path) -> None:
    # The units board keeps its own SQLite on worker threads: these run on the real clock.
    from gateway.incident.records import Location
    from gateway.settings import UnitsConfig
    from gateway.units.board import UnitBoard

    roster = tmp_path / "units.toml"
    roster.write_text('kinds = ["patrol"]\n' + "".join(
        f'[[units]]\nid = "{uid}"\nkind = "patrol"\nname = "{uid.upper()}"\nlat = {lat}\nlon = 76.90\n'
        f'members = ["{member}"]\n' for uid, lat, member in (("far", 43.30, "duty_b"), ("near", 43.241, "duty_a"))))
    s = scenario("s", {**NOTIFY, "roles": [], "units": ["patrol"], "timeout_s": 10}, {"do": "close"})
    async with environment(backend, catalogue(s), threaded=True) as env:
        board = UnitBoard(UnitsConfig(roster_file=str(roster)), env.desk, tmp_path / "units.db")
        env.engine.board = board
        try:
            caller = Caller(raw_number="+77011112233", number="+77011112233", display_name="", withheld=False)
            incident = await env.desk.open(service="102", source="api", caller=caller, kind="reported", actor="t",
                                           category="s", locations=[Location(source="manual", shape="point",
                                                                             lat=43.24, lon=76.90)])
            started = await env.wait_for(incident.id, "step_started")
            assert started[0]["units"] == "near"
            await env.wait_for(incident.id, "awaiting_ack")
            called = env.engine.runs[f"{incident.id}/category"].targets
            assert {(t.unit, t.unit_name) for t in called} == {("near", "NEAR")}  # the crew hears its callsign
            await env.engine.acknowledge(token_of(env, incident.id, "duty_a"), by="duty_a", via="voice")
            await env.wait_for(incident.id, "scenario_finished")
            assert (board.get("near").status, board.get("near").incident) == ("en_route", incident.id)
            assert board.get("far").status == "free"
            assert (await env.desk.get(incident.id)).status == "en_route"
        finally:
            board.close()


async def test_an_ivr_choice_starts_the_scenario_unless_configured_to_wait_for_a_dispatcher(
        backend: Backend, autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "ack": "none"}, {"do": "close"})
    for start_on_ivr in (True, False):
        settings = TriggerSettings(answer_sla_s=600, unclassified_after_s=600, start_on_ivr_category=start_on_ivr)
        async with environment(backend.sibling(f"ivr-{start_on_ivr}"), catalogue(s), settings=settings) as env:
            call = await env.open("", source="call", number="+77011234567")
            await env.desk.record(call.id, "ivr_category", actor="caller", changes={"category": "s"}, category="s")
            if start_on_ivr:
                await env.wait_for(call.id, "scenario_finished")
                continue
            await trio.sleep(0.3)
            assert "scenario_started" not in [k for k, _ in await env.timeline(call.id)]
            await env.desk.set_category(call.id, "s", 5, actor="dispatcher")  # the dispatcher confirms it
            await env.wait_for(call.id, "scenario_finished")


async def test_people_of_a_dynamic_role_are_reached_and_finished_runs_leave_nothing_behind(
        backend: Backend, autojump_clock: trio.testing.MockClock) -> None:
    s = scenario("s", {**NOTIFY, "roles": ["site_contacts"], "ack": "none"}, {"do": "close"})
    async with environment(backend, catalogue(s)) as env:
        env.engine.dynamic_people["site_contacts"] = lambda incident: [
            Person(name=f"site:{incident.reporter}:0", display="Director", phone="+77010005555", channels=["sms"])]
        incident = await env.desk.open(service="102", source="alarm", caller=no_caller(), kind="alarm_received",
                                       actor="panel", category="s", reporter="1201")
        await env.wait_for(incident.id, "scenario_finished")
        reached = [(k, d["person"], d.get("channel")) for k, d in await env.timeline(incident.id)
                   if k in ("notified", "notify_failed")]
        assert reached == [("notified", "site:1201:0", "console")]  # resolved again from the incident, by name
        assert env.engine.runs == {} and env.engine._scopes == {} and env.engine.tokens == {}


async def test_a_crew_member_whose_unit_is_busy_elsewhere_does_not_acknowledge(backend: Backend,
                                                                                tmp_path: Path) -> None:
    # The units board keeps its own SQLite on worker threads: these run on the real clock.
    from gateway.incident.records import Location
    from gateway.settings import UnitsConfig
    from gateway.units.board import UnitBoard

    roster = tmp_path / "units.toml"
    roster.write_text('kinds = ["patrol"]\n[[units]]\nid = "p1"\nkind = "patrol"\nname = "P1"\nlat = 43.24\n'
                      'lon = 76.9\nmembers = ["duty_a"]\n')
    s = scenario("s", {**NOTIFY, "roles": [], "units": ["patrol"], "timeout_s": 10}, {"do": "close"})
    place = [Location(source="manual", shape="point", lat=43.24, lon=76.9)]
    async with environment(backend, catalogue(s), threaded=True) as env:
        board = UnitBoard(UnitsConfig(roster_file=str(roster)), env.desk, tmp_path / "units.db")
        env.engine.board = board
        try:
            first, second = [await env.desk.open(service="102", source="api", caller=no_caller(), kind="reported",
                                                 actor="t", category="s", locations=place) for _ in range(2)]
            for incident in (first, second):
                await env.wait_for(incident.id, "awaiting_ack")
            tokens = [token_of(env, i.id, "duty_a") for i in (first, second)]
            assert await env.engine.acknowledge(tokens[0], by="duty_a", via="sms") == "acknowledged"
            assert await env.engine.acknowledge(tokens[1], by="duty_a", via="sms") == "unit_busy"
            busy = await env.wait_for(second.id, "unit_unavailable")
            assert busy[0]["unit"] == "p1"
            assert env.engine.runs[f"{second.id}/category"].phase == "waiting"  # still looking for a unit
            assert board.get("p1").incident == first.id
        finally:
            board.close()
