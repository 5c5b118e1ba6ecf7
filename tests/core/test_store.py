"""The incident store on a real SQLite file and a real PostgreSQL (``backend``): durability, ordering,
correlation, failure paths."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from gateway.errors import NotFound, StoreError
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident, Location
from gateway.incident.store import (
    MAX_LINKS,
    AsyncStore,
    SqliteStore,
    Statement,
    event,
)
from gateway.incident.timeline_sql import EVENTS_PER_STATEMENT, put_events
from tests.store_backends import Backend


def incident(incident_id: str, number: str = "+77011234567", created: float = 1000.0,
             where: tuple[float, float] | None = None) -> Incident:
    inc = Incident(id=incident_id, service="112", created_wall=created,
                   caller=Caller(raw_number=number, number=number, display_name="", withheld=False))
    if where:
        inc.locations.append(Location(source="pidf-lo", shape="point", lat=where[0], lon=where[1]))
        inc.best_location = 0
    inc.timeline.append(event("call_arrived"))
    return inc


def test_round_trip_and_timeline_order(backend: Backend) -> None:
    store = backend.open()
    inc = incident("a")
    store.create(inc)
    for kind in ("queued", "ringing", "answered"):
        item = event(kind)
        inc.timeline.append(item)
        inc.state = "answered" if kind == "answered" else inc.state
        store.update(inc, [item])
    again = backend.open().get("a")  # a second connection sees committed data
    assert [e.kind for e in again.timeline] == ["call_arrived", "queued", "ringing", "answered"]
    assert again.state == "answered"
    with pytest.raises(NotFound):
        store.get("nope")


def test_a_long_timeline_and_a_write_of_many_events_keep_every_event_in_order(backend: Backend) -> None:
    store = backend.open()
    inc = incident("long")
    inc.timeline.extend(event("note", n=i) for i in range(EVENTS_PER_STATEMENT + 30))  # more than one statement's
    store.create(inc)
    more = [event("note", n=i) for i in range(EVENTS_PER_STATEMENT + 30, 2 * EVENTS_PER_STATEMENT + 40)]
    inc.timeline.extend(more)
    store.update(inc, more)
    saved = backend.open().get("long")
    assert [e.data.get("n") for e in saved.timeline[1:]] == list(range(2 * EVENTS_PER_STATEMENT + 40))


def test_an_event_twice_in_one_write_is_written_once_at_its_place(backend: Backend) -> None:
    store = backend.open()
    inc = incident("twice")
    store.create(inc)
    item = event("queued")
    inc.timeline.append(item)
    store.update(inc, [item, item])  # e.g. left pending by a failed write and named again
    assert [e.kind for e in backend.open().get("twice").timeline] == ["call_arrived", "queued"]


def test_events_of_one_write_go_in_one_statement_unless_a_place_repeats() -> None:
    placed = [(0, b"a"), (1, b"b"), (2, b"c")]
    [(sql, args)] = put_events("x", placed)
    assert sql.count("(?,?,?)") == 3 and args == ("x", 0, b"a", "x", 1, b"b", "x", 2, b"c")
    assert len(put_events("x", [(0, b"a"), (0, b"b")])) == 2
    assert [len(args) // 3 for _, args in put_events("x", [(i, b"") for i in range(EVENTS_PER_STATEMENT + 1)])] == [
        EVENTS_PER_STATEMENT, 1]


def test_related_by_number_and_place_within_window(backend: Backend) -> None:
    store = backend.open()
    store.create(incident("old", created=0.0, where=(43.2381, 76.9456)))  # outside the window
    store.create(incident("same-number", created=900.0))
    store.create(incident("same-place", number="+77019999999", created=950.0, where=(43.2382, 76.9457)))
    store.create(incident("far", number="+77018888888", created=950.0, where=(43.30, 76.90)))
    now = incident("new", created=1000.0, where=(43.2381, 76.9456))
    links = dict(store.related(now, window_s=500, radius_m=50))
    assert links == {"same-number": "same_number", "same-place": "same_address"}


def test_related_is_bounded_for_a_number_calling_again_and_again(backend: Backend) -> None:
    store = backend.open()
    for i in range(MAX_LINKS * 3):
        store.create(incident(f"r{i:03d}", created=float(i)))
    links = store.related(incident("new", created=100.0), window_s=1000, radius_m=50)
    assert len(links) == MAX_LINKS and ("r029", "same_number") in links


def test_related_is_bounded_for_a_place_called_from_again_and_again(backend: Backend) -> None:
    store = backend.open()
    for i in range(MAX_LINKS * 5):
        store.create(incident(f"p{i:03d}", number=f"+7701{i:07d}", created=float(i), where=(43.2381, 76.9456)))
    links = store.related(incident("new", created=100.0, where=(43.2381, 76.9456)), window_s=1000, radius_m=50)
    assert len(links) == 2 * MAX_LINKS and {r for _, r in links} == {"same_address"}


def test_a_place_is_found_among_many_calls_on_its_latitude_elsewhere(backend: Backend) -> None:
    """Calls along the same parallel hundreds of km away do not use up the bounded candidate rows."""
    store = backend.open()
    for i in range(MAX_LINKS * 12):  # more than the old latitude band's 100 rows, all before "near" in its index
        store.create(incident(f"e{i:03d}", number=f"+7702{i:07d}", created=float(i), where=(43.2381, 60.0 + i / 10)))
    store.create(incident("near", number="+77019999999", created=60.0, where=(43.2382, 76.9457)))
    links = store.related(incident("new", number="+77010000000", created=100.0, where=(43.2381, 76.9456)),
                          window_s=1000, radius_m=50)
    assert links == [("near", "same_address")]


async def test_group_commit_keeps_every_write(backend: Backend) -> None:
    store = AsyncStore(backend.open())
    incidents = [incident(f"i{n}") for n in range(50)]
    async with trio.open_nursery() as writers:
        for inc in incidents:
            writers.start_soon(store.create, inc)
    async with trio.open_nursery() as writers:
        for inc in incidents:
            item = event("queued")
            inc.timeline.append(item)
            writers.start_soon(store.update, inc, [item])
    check = backend.open()
    assert check.count() == 50
    assert all(len(check.get(f"i{n}").timeline) == 2 for n in range(50))


async def test_a_failing_write_does_not_fail_its_batch_neighbours(backend: Backend) -> None:
    store = AsyncStore(backend.open())
    await store.create(incident("dup"))
    outcomes: dict[str, str] = {}

    async def create(inc: Incident) -> None:
        try:
            await store.create(inc)
            outcomes[inc.id] = "ok"
        except StoreError:
            outcomes[inc.id] = "error"

    async with trio.open_nursery() as writers:
        writers.start_soon(create, incident("dup"))  # primary key clash
        writers.start_soon(create, incident("fine"))
    assert outcomes == {"dup": "error", "fine": "ok"}
    assert backend.open().get("fine").id == "fine"


class FlakyStore(AsyncStore):
    """Refuses the first create, as a full disk or a locked file would."""

    failed = False

    async def create(self, incident: Incident, extra: Sequence[Statement] = (), again: bool = False) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("disk full")
        await super().create(incident, extra, again)


class LostCommitStore(AsyncStore):
    """Commits the first create, then says it failed: PostgreSQL's connection lost during COMMIT."""

    lost = False

    async def create(self, incident: Incident, extra: Sequence[Statement] = (), again: bool = False) -> None:
        await super().create(incident, extra, again)
        if not self.lost:
            self.lost = True
            raise StoreError("connection lost during COMMIT")


async def test_incident_not_stored_at_arrival_is_written_whole_at_the_next_event(backend: Backend) -> None:
    store = FlakyStore(backend.open())
    recorder = Recorder(store, Bus())
    held = Held(incident("flaky"))
    with pytest.raises(StoreError):
        await recorder.create(held)
    await recorder.record(held, "queued", state="queued")
    saved = backend.open().get("flaky")
    assert [e.kind for e in saved.timeline] == ["call_arrived", "queued"] and saved.state == "queued"


async def test_a_create_committed_but_reported_failed_is_completed_not_duplicated(backend: Backend) -> None:
    store = LostCommitStore(backend.open())
    recorder = Recorder(store, Bus())
    held = Held(incident("lost"))
    with pytest.raises(StoreError):
        await recorder.create(held)
    await recorder.record(held, "queued", state="queued")  # the create again, then this event
    saved = backend.open().get("lost")
    assert [e.kind for e in saved.timeline] == ["call_arrived", "queued"] and saved.state == "queued"
    assert backend.open().count() == 1


async def test_a_create_again_never_overwrites_another_calls_incident(backend: Backend) -> None:
    sync = backend.open()
    other = incident("same-id")
    other.channel_id = "chan-other"
    sync.create(other)
    store = FlakyStore(sync)
    recorder = Recorder(store, Bus())
    mine = incident("same-id")
    mine.channel_id = "chan-mine"
    held = Held(mine)
    with pytest.raises(StoreError):
        await recorder.create(held)
    with pytest.raises(StoreError, match="another call's"):
        await recorder.record(held, "queued", state="queued")
    kept = backend.open().get("same-id")
    assert kept.channel_id == "chan-other" and [e.kind for e in kept.timeline] == ["call_arrived"]


def test_unwritable_store_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "db")  # a directory, not a database file
    with pytest.raises((StoreError, sqlite3.Error)):
        SqliteStore(tmp_path / "s.db").get("x")


async def test_a_failed_write_is_retried_at_its_own_places_and_nothing_is_lost(backend: Backend) -> None:
    from gateway.incident.desk import Desk, no_caller

    store = AsyncStore(backend.open(short_waits=True))
    recorder = Recorder(store, Bus())
    desk = Desk(store, recorder)
    incident = await desk.open(service="102", source="api", caller=no_caller(), kind="reported", actor="t")
    held = recorder.track(Held(await store.get(incident.id), saved=True))  # a live incident, as during a call
    with backend.locked(), pytest.raises(StoreError):  # another process holds the database: our writes fail
        await desk.set_status(incident.id, "assigned", actor="dispatcher")
    await desk.set_status(incident.id, "assigned", actor="dispatcher")  # the caller's retry: writes it now
    await desk.record(incident.id, "note", actor="dispatcher", text="after the retry")
    stored = await store.get(incident.id)
    assert [e.kind for e in stored.timeline] == ["reported", "status_changed", "note"] == \
        [e.kind for e in held.incident.timeline]
    assert stored.status == "assigned"
    recorder.release(held)


async def test_every_event_written_reaches_the_listeners_even_when_writes_overlap(backend: Backend) -> None:
    store = AsyncStore(backend.open())
    recorder = Recorder(store, Bus())
    heard: list[str] = []
    recorder.listeners.append(lambda incident, item: heard.append(item.kind))
    held = recorder.track(Held(incident("overlap")))
    await recorder.create(held)
    heard.clear()
    async with trio.open_nursery() as writers:  # the second is appended while the first is being written
        writers.start_soon(recorder.record, held, "category_changed")
        writers.start_soon(recorder.record, held, "step_done")
    assert sorted(heard) == ["category_changed", "step_done"]


def test_seen_keys_last_across_a_reopen_and_are_forgotten_after_the_retention(backend: Backend) -> None:
    now = time.time()
    store = backend.open(seen_retention_s=60)
    store.write(store.seen_statements("twilio:SM1", now - 120))  # older than the retention
    store.write(store.seen_statements("twilio:SM2", now))
    store.write(store.seen_statements("twilio:SM2", now))  # taken twice: still one row, no error
    store.close()
    again = backend.open(seen_retention_s=60)
    assert again.seen("twilio:SM2", now) and not again.seen("twilio:SM1", now) and not again.seen("other", now)
    assert again._read("SELECT key FROM seen") == [("twilio:SM2",)]  # the old key was pruned by the next insert


async def test_a_seen_key_is_written_with_its_event_even_when_that_write_fails_first(backend: Backend) -> None:
    from gateway.incident.desk import Desk, no_caller

    store = AsyncStore(backend.open(short_waits=True))
    desk = Desk(store, Recorder(store, Bus()))
    opened = await desk.open(service="112", source="sms", caller=no_caller(), kind="sms_received", actor="t",
                             seen_key="twilio:SM1")
    assert await desk.seen("twilio:SM1") and not await desk.seen("") and not await desk.seen("twilio:SM2")
    held = desk.recorder.track(Held(await store.get(opened.id), saved=True))  # live, as during a call
    with backend.locked(), pytest.raises(StoreError):
        await desk.record_report(opened.id, "sms_received", seen_key="twilio:SM2", actor="t")
    assert not await desk.seen("twilio:SM2")  # neither the event nor its key
    await desk.record(opened.id, "note", actor="dispatcher")  # writes the pending event, with its key
    assert await desk.seen("twilio:SM2")
    assert [e.kind for e in (await store.get(opened.id)).timeline] == ["sms_received", "sms_received", "note"]
    assert held.riders == []
    desk.recorder.release(held)
