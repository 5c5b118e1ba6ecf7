"""The call-back list's rule (pure): one entry per number, most urgent category first, then longest waiting;
a caller who called again and was answered is reached (and, on a real store, leaves the list)."""

from __future__ import annotations

import time

import msgspec
import pytest
import trio
import trio.testing

from gateway import settings as config
from gateway.asterisk import dialplan
from gateway.errors import ConfigError
from gateway.incident import callback_table
from gateway.incident.bus import Bus
from gateway.incident.callback_list import (
    Abandoned,
    Answered,
    Entry,
    auto_due,
    called_again,
    diallable,
    entries,
    find,
    outcome_of,
    outcome_of_cause,
    reached,
)
from gateway.incident.callback_table import CallbackTable, abandoned
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, event
from gateway.intake.call_back import LIST_FRESH_S, CallBacks
from gateway.settings.credentials import with_secrets
from tests.store_backends import Backend


def row(incident_id: str, number: str, wall: float, priority: int = 1, category: str = "", attempts: int = 0,
        outcome: str = "") -> Abandoned:
    return Abandoned(incident_id=incident_id, number=number, service="112", category=category, priority=priority,
                     wall=wall, attempts=attempts, outcome=outcome)


def test_priority_first_then_the_longest_waiting() -> None:
    listed = entries([row("a", "+77010000001", 30.0), row("b", "+77010000002", 10.0),
                      row("c", "+77010000003", 50.0, priority=9, category="fire"),
                      row("d", "+77010000004", 20.0, priority=9, category="fire")])
    assert [e.incidents for e in listed] == [["d"], ["c"], ["b"], ["a"]]


def test_the_same_number_is_one_entry_with_a_count_and_its_incidents_newest_first() -> None:
    listed = entries([row("a", "+77010000001", 10.0), row("x", "+77010000009", 15.0),
                      row("b", "+77010000001", 20.0, priority=8, category="medical", attempts=1, outcome="busy"),
                      row("c", "+77010000001", 30.0)])
    first = listed[0]
    assert (first.number, first.count, first.incidents) == ("+77010000001", 3, ["c", "b", "a"])
    # its most urgent call sets its place and category; its wait counts from its first call
    assert (first.priority, first.category, first.first_wall, first.last_wall) == (8, "medical", 10.0, 30.0)
    assert (first.attempts, first.last_outcome) == (1, "busy")
    assert [e.number for e in listed] == ["+77010000001", "+77010000009"]


def test_numbers_that_cannot_be_dialled_are_never_listed() -> None:
    assert not diallable("") and not diallable("anonymous") and not diallable("+7701&PJSIP/x")
    assert diallable("+77011234567") and diallable("102")
    assert entries([row("a", "", 1.0), row("b", "12;x", 2.0), row("c", "+77010000001", 3.0)])[0].incidents == ["c"]
    assert len(entries([row("a", "", 1.0)])) == 0


def test_an_entry_is_found_by_number_with_or_without_plus_or_by_any_of_its_incidents() -> None:
    listed = entries([row("a", "+77010000001", 10.0), row("b", "+77010000001", 20.0)])
    assert find(listed, "+77010000001") is listed[0]
    assert find(listed, "77010000001") is listed[0]
    assert find(listed, "a") is listed[0] and find(listed, "b") is listed[0]
    assert find(listed, "+77019999999") is None and find(listed, "") is None


def test_dial_results_and_which_of_them_take_the_number_off_the_list() -> None:
    assert [outcome_of(s) for s in ("", "RINGING", "PROGRESS")] == [None, None, None]
    assert outcome_of("ANSWER") == "answered" and reached("answered")
    assert outcome_of("BUSY") == "busy" and outcome_of("NOANSWER") == "no_answer"
    assert outcome_of("CHANUNAVAIL") == "failed" and outcome_of("CONGESTION") == "failed"
    assert outcome_of("SOMETHING-NEW") == "failed" and outcome_of("CANCEL") == "cancelled"
    assert not any(reached(o) for o in ("busy", "no_answer", "failed", "cancelled", "position_unanswered"))


def test_the_config_and_the_dialplan_it_renders() -> None:
    shipped = config.load()
    cfg = with_secrets(shipped, lambda service: f"{service}-generated-secret")
    text = dialplan.render_all(cfg, "/srv/ecgw/t", "/mods", "/data")["extensions.conf"]
    assert " same => n,Set(TALK_DETECT(set)=1200,128)" in text
    assert " same => n,Dial(PJSIP/ecgw-callout/sip:${ECGW_CALLBACK_TO}@127.0.0.1:5080,30)" in text
    assert " same => n(dial),Set(CALLERID(num)=112)" in text
    quiet = msgspec.structs.replace(cfg, silence=msgspec.structs.replace(cfg.silence, enabled=False))
    assert "TALK_DETECT" not in dialplan.render_all(quiet, "/srv/ecgw/t", "/mods", "/data")["extensions.conf"]
    raw = msgspec.to_builtins(shipped)
    raw["callback"] = {"caller_id": "112;x", "trunk_uri": "sip:user@host", "auto_after_s": 1}
    with pytest.raises(ConfigError) as refused:
        config.parse(raw, "gateway.toml")
    found = "\n".join(refused.value.problems)
    assert "callback.caller_id" in found and "callback.trunk_uri" in found and "callback.auto_after_s" in found


def test_the_gateway_calls_back_by_itself_once_only_when_no_dispatcher_is_free() -> None:
    [entry] = entries([row("a", "+77010000001", 100.0), row("b", "+77010000001", 130.0)])
    assert not auto_due(entry, 200.0, 0.0, position_free=False)  # off
    assert not auto_due(entry, 159.0, 30.0, position_free=False)  # too soon after its last call
    assert auto_due(entry, 160.0, 30.0, position_free=False)
    assert not auto_due(entry, 160.0, 30.0, position_free=True)  # a dispatcher can do it: the list shows it
    [tried] = entries([row("a", "+77010000001", 100.0, attempts=1, outcome="no_answer")])
    assert not auto_due(tried, 1e9, 30.0, position_free=False)  # one automatic attempt per entry


def test_why_a_dialled_caller_did_not_answer() -> None:
    assert outcome_of_cause(17) == "busy"
    assert [outcome_of_cause(c) for c in (18, 19, 21, 16)] == ["no_answer"] * 4
    assert outcome_of_cause(34) == "failed" and outcome_of_cause(0) == "failed"


def test_a_caller_who_called_again_and_was_answered_is_reached() -> None:
    rows = [row("a", "+77010000001", 100.0), row("b", "+77010000001", 130.0), row("x", "+77010000009", 100.0)]
    later = [Answered(incident_id="c", number="+77010000001", created_wall=150.0),
             Answered(incident_id="d", number="+77010000001", created_wall=200.0)]
    assert called_again(rows, later) == {"a": "c", "b": "c"}  # the first answered call after each, same number
    # a call that arrived before the listed one was abandoned did not call again; nor does the row's own incident
    # (its call-back answered), nor another number's call
    assert called_again(rows, [Answered(incident_id="e", number="+77010000001", created_wall=120.0)]) == {"a": "e"}
    assert called_again(rows, [Answered(incident_id="a", number="+77010000001", created_wall=150.0)]) == {"b": "a"}
    assert called_again(rows, [Answered(incident_id="f", number="+77010000002", created_wall=150.0)]) == {}
    assert called_again([], later) == {} and called_again(rows, []) == {}


def test_call_backs_are_recorded_into_files_named_after_their_leg() -> None:
    cfg = with_secrets(config.load(), lambda service: f"{service}-generated-secret")
    text = dialplan.render_all(cfg, "/srv/ecgw/t", "/mods", "/data")["extensions.conf"]
    section = text[text.index("[ecgw-callback]"):text.index("[ecgw-phone-headers]")]
    assert section.count("MixMonitor(/srv/ecgw/t/recordings/${ECGW_CB_RECORDING}.WAV)") == 2
    assert " same => n,Set(ECGW_CB_RECORDING=${ECGW_CALLBACK_INCIDENT}-cb${CUT(UNIQUEID,-,2)})" in section
    assert " same => n,Set(ECGW_CB_RECORDING=${ECGW_INCIDENT}-cb${CUT(UNIQUEID,-,2)})" in section
    assert section.index("MixMonitor") < section.index(" same => n,Dial(")  # the dispatcher's: before the caller rings
    assert "exten => record,1," in section and " same => n,Stasis(ecgw,autocallback,${UNIQUEID},recorded)" in section
    off = msgspec.structs.replace(cfg, recordings=msgspec.structs.replace(cfg.recordings, enabled=False))
    assert "MixMonitor(" not in dialplan.render_all(off, "/srv/ecgw/t", "/mods", "/data")["extensions.conf"]


# --- on a real store: the answer of a later call takes the number off the list ---------------------


async def test_the_answer_of_a_later_call_resolves_the_entry_on_the_listed_incidents(backend: Backend) -> None:
    store = AsyncStore(backend.open())
    recorder = Recorder(store, Bus())
    callbacks = CallBacks(with_secrets(config.load(), lambda s: f"{s}-generated-secret"), CallbackTable(store),
                          recorder)
    number = "+77010000001"

    async def incident(incident_id: str, wall: float) -> Held:
        held = recorder.track(Held(Incident(id=incident_id, service="112", created_wall=wall, caller=Caller(
            raw_number=number, number=number, display_name="", withheld=False))))
        held.incident.timeline.append(event("call_arrived"))
        await recorder.create(held)
        return held

    first = await incident("20261204-100000-1.1", 1000.0)
    await recorder.record(first, "hung_up", state="closed", callback=True,
                          with_event=[abandoned(first.incident, 1010.0)])
    assert await callbacks.resolve(number) == 0  # nobody answered yet
    later = await incident("20261204-100100-2.2", 1060.0)
    await recorder.record(later, "answered", actor="pos1", changes={"position": "pos1", "answer_s": 3.0})
    assert await callbacks.resolve(number) == 1
    assert await callbacks.resolve(number) == 0  # once
    assert await callbacks.table.open_rows(0.0) == []
    reached = [e for e in (await store.get(first.incident.id)).timeline if e.kind == "callback_reached"]
    assert [(e.data["how"], e.data["answered_as"]) for e in reached] == [("called_again", later.incident.id)]
    assert reached[0].data["note"] == f"reached: called again, answered as {later.incident.id}"
    assert [e.kind for e in (await store.get(later.incident.id)).timeline][-1] == "answered"


async def test_the_list_is_read_once_a_second_for_all_who_ask_and_at_once_after_our_own_change(
        backend: Backend, autojump_clock: object) -> None:
    store = AsyncStore(backend.open())
    recorder = Recorder(store, Bus())
    table = CallbackTable(store)
    callbacks = CallBacks(with_secrets(config.load(), lambda s: f"{s}-generated-secret"), table, recorder)
    reads: list[float] = []
    open_entries = table.open_entries

    async def counting(since_wall: float) -> list[Entry]:
        reads.append(trio.current_time())
        return await open_entries(since_wall)

    table.open_entries = counting  # type: ignore[method-assign]
    number = "+77010000001"
    held = recorder.track(Held(Incident(id="20261204-100000-1.1", service="112", created_wall=time.time(),
                                        caller=Caller(raw_number=number, number=number, display_name="",
                                                      withheld=False))))
    held.incident.timeline.append(event("call_arrived"))
    await recorder.create(held)
    await recorder.record(held, "hung_up", state="closed", callback=True,
                          with_event=[abandoned(held.incident, time.time())])
    found: list[list[Entry]] = []

    async def look() -> None:
        found.append(await callbacks.entries())

    async with trio.open_nursery() as nursery:  # every console polling at once: one read
        for _ in range(20):
            nursery.start_soon(look)
    assert len(reads) == 1 and all(f == found[0] for f in found) and found[0][0].number == number
    await trio.sleep(LIST_FRESH_S / 2)
    await callbacks.entries()
    assert len(reads) == 1
    await trio.sleep(LIST_FRESH_S)
    await callbacks.entries()
    assert len(reads) == 2  # a second on: read again (a row another node or the intake wrote shows by then)
    later = recorder.track(Held(Incident(id="20261204-100100-2.2", service="112", created_wall=time.time(),
                                         caller=held.incident.caller)))
    later.incident.timeline.append(event("call_arrived"))
    await recorder.create(later)
    await recorder.record(later, "answered", actor="pos1", changes={"position": "pos1", "answer_s": 3.0})
    assert await callbacks.resolve(number) == 1  # our own callback_reached: the copy is dropped
    assert await callbacks.entries() == [] and len(reads) == 3  # within the second, yet read again
    assert await callbacks.entries(fresh=True) == [] and len(reads) == 4


async def test_the_list_is_read_in_pages_missing_and_repeating_nobody(backend: Backend,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(callback_table, "PAGE", 2)
    store = AsyncStore(backend.open())
    recorder = Recorder(store, Bus())
    table = CallbackTable(store)
    wall = time.time() - 60
    for n in range(7):  # the same time for five of them: pages meet inside a run of equal walls
        number = f"+770100000{n % 4:02d}"
        held = recorder.track(Held(Incident(id=f"20261204-100000-{n}.{n}", service="112", created_wall=wall,
                                            caller=Caller(raw_number=number, number=number, display_name="",
                                                          withheld=False))))
        held.incident.timeline.append(event("call_arrived"))
        await recorder.create(held)
        await recorder.record(held, "hung_up", state="closed", callback=True,
                              with_event=[abandoned(held.incident, wall + max(0, n - 4))])
    listed = await table.open_entries(wall - 1)
    assert listed == entries(await table.open_rows(wall - 1))
    assert sorted(i for e in listed for i in e.incidents) == [f"20261204-100000-{n}.{n}" for n in range(7)]
    assert [e.count for e in listed] == [2, 2, 2, 1]
    assert await table.open_entries(wall + 1.5) == entries(await table.open_rows(wall + 1.5))  # a later start


async def test_a_list_read_before_our_own_change_is_not_kept(backend: Backend) -> None:
    store = AsyncStore(backend.open())
    recorder = Recorder(store, Bus())
    table = CallbackTable(store)
    callbacks = CallBacks(with_secrets(config.load(), lambda s: f"{s}-generated-secret"), table, recorder)
    reads: list[int] = []
    release = trio.Event()
    open_entries = table.open_entries

    async def slow(since_wall: float) -> list[Entry]:
        found = await open_entries(since_wall)
        reads.append(len(found))
        if len(reads) == 1:
            await release.wait()  # the first read is under way while our own event is written
        return found

    table.open_entries = slow  # type: ignore[method-assign]
    held = recorder.track(Held(Incident(id="20261204-100000-1.1", service="112", created_wall=time.time(),
                                        caller=Caller(raw_number="+77010000001", number="+77010000001",
                                                      display_name="", withheld=False))))
    held.incident.timeline.append(event("call_arrived"))
    await recorder.create(held)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(callbacks.entries)
        await trio.testing.wait_all_tasks_blocked()
        await recorder.record(held, "hung_up", state="closed", callback=True,
                              with_event=[abandoned(held.incident, time.time())])
        await callbacks._note(held.incident.id, event("callback_outcome", "pos1", outcome="busy"))
        release.set()
    assert [e.number for e in await callbacks.entries()] == ["+77010000001"] and reads == [0, 1]
