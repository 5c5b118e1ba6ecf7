"""Recordings: what the purge selects (expiry, holds, the 90-day floor), the config's refusals, the WAV
header, and the service on a real SQLite store: indexing through the recorder, the audited purge, files
missing or altered reported and kept in the index, and the daily purge on Trio's mock clock."""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.errors import ConfigError, NotFound
from gateway.incident import recording_index as rx
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.recording_index import DAY_S, Recording, RecordingIndex, expired, leg_stem, owner
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, event
from gateway.intake import recording_files as files
from gateway.intake import recordings as service
from gateway.intake.recordings import Recordings
from gateway.people.accounts import Accounts
from gateway.protocols.wav import WavError, read_header
from gateway.settings import RecordingsConfig, parse
from tests.store_backends import Backend

NOW = 2_000_000_000.0
BASE = {"services": [{"name": "112", "dialled": ["112"]}],
        "dispatch": {"positions": [{"name": "pos1", "contact": "sip:pos1@127.0.0.1:5070"}]}}


def rec(rid: str, days_ago: float, incident: str = "", purged: bool = False) -> Recording:
    start = NOW - days_ago * DAY_S
    return Recording(id=rid, incident_id=incident or rid, file=f"{rid}.WAV", codec="gsm", start_wall=start,
                     duration_s=60.0, size=1, sha256="0" * 64, indexed_wall=start, purged_wall=NOW if purged else None)


def wav49(seconds: float) -> bytes:
    """A wav49 file as Asterisk writes it: fmt (GSM 6.10, 65-byte blocks of 320 samples), fact, data."""
    blocks = int(seconds * 8000 / 320)
    fmt = struct.pack("<HHIIHHHH", 0x31, 1, 8000, 1625, 65, 0, 2, 320)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<II", 4, blocks * 320)
            + b"data" + struct.pack("<I", blocks * 65) + bytes(blocks * 65))
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- pure ------------------------------------------------------------------------------------------


def test_expired_recordings_go_and_recent_ones_stay() -> None:
    found = expired([rec("old", 91), rec("young", 89), rec("gone", 200, purged=True)], set(), NOW, 90)
    assert [r.id for r in found] == ["old"]


def test_a_legal_hold_keeps_every_recording_of_its_incident() -> None:
    rows = [rec("a1", 300, "a"), rec("a2", 120, "a"), rec("b1", 120, "b")]
    assert [r.id for r in expired(rows, {"a"}, NOW, 90)] == ["b1"]


def test_the_90_day_floor_holds_even_if_a_caller_asks_for_less() -> None:
    assert expired([rec("x", 89.9)], set(), NOW, 1) == []
    assert [r.id for r in expired([rec("x", 100)], set(), NOW, 1)] == ["x"]
    assert expired([rec("x", 100)], set(), NOW, 365) == []


def test_a_recording_file_names_its_incident_and_a_call_backs_its_leg() -> None:
    assert owner("20261204-101010-1764800000.12") == "20261204-101010-1764800000.12"  # the call itself
    assert owner("20261204-101010-1764800000.12-cb0a1b2c3d4e5f6789") == "20261204-101010-1764800000.12"
    assert owner("20261204-101010-cb1.00000001") == "20261204-101010-cb1.00000001"  # a node named cb1
    assert owner("20261204-101010-cb1.00000001-cbff") == "20261204-101010-cb1.00000001"
    for odd in ("20261204-101010-1.1-x", "20261204-101010-1.1-cb", "20261204-101010-1.1-cbXY", "a-b-c",
                "20261204-101010", "20261204-101010-1.1-cb1-cb2", "../20261204-101010-1.1"):
        assert owner(odd) is None, odd
    assert leg_stem("20261204-101010-1.1", "callback-0a1b2c3d4e5f6789") == "20261204-101010-1.1-cb0a1b2c3d4e5f6789"
    assert leg_stem("20261204-101010-1.1", "1764800000.12") is None  # a caller's own channel
    assert leg_stem("20261204-101010-1.1", "callback-../x") is None


def test_config_refuses_less_than_90_days_and_a_directory_outside_the_instance() -> None:
    assert parse(BASE).recordings == RecordingsConfig(enabled=True, dir="recordings", keep_days=90)
    with pytest.raises(ConfigError) as caught:
        parse({**BASE, "recordings": {"keep_days": 30, "dir": "../etc"}}, "g.toml")
    assert any("g.toml: recordings.keep_days: expected at least 90 days" in p for p in caught.value.problems)
    assert any("g.toml: recordings.dir" in p and "'../etc'" in p for p in caught.value.problems)
    with pytest.raises(ConfigError):
        parse({**BASE, "recordings": {"dir": "/var/rec"}})
    assert parse({**BASE, "recordings": {"keep_days": 3650, "dir": "archive/calls"}}).recordings.keep_days == 3650


def test_wav49_header_gives_codec_and_duration() -> None:
    data = wav49(12.0)
    info = read_header(data[:4096], len(data))
    assert (info.codec, info.rate, info.duration_s) == ("gsm", 8000, 12.0)
    unfinished = data[:40] + b"\0\0\0\0" + data[44:]  # fact/data sizes not written yet: the bytes decide
    unfinished = unfinished.replace(b"data" + data[data.index(b"data") + 4:data.index(b"data") + 8], b"data\0\0\0\0")
    assert read_header(unfinished[:4096], len(unfinished)).duration_s == 12.0
    with pytest.raises(WavError, match="not a RIFF/WAVE"):
        read_header(b"OggS" + bytes(100), 104)


# --- the service on a real store --------------------------------------------------------------------


class Lab:
    def __init__(self, tmp_path: Path, store: AsyncStore) -> None:
        self.dir = tmp_path / "recordings"
        self.dir.mkdir()
        self.store = store
        self.recorder = Recorder(store, Bus())
        self.accounts = Accounts(tmp_path / "people.sqlite3")
        self.recordings = Recordings(RecordingsConfig(), self.dir, RecordingIndex(store), self.recorder,
                                     self.accounts.audit)

    async def call(self, incident_id: str, seconds: float = 10.0, age_days: float = 0.0) -> Path:
        """An incident whose call was recorded ``age_days`` ago."""
        inc = Incident(id=incident_id, service="112", created_wall=time.time(),
                       caller=Caller(raw_number="+77011234567", number="+77011234567", display_name="",
                                     withheld=False))
        inc.timeline.append(event("call_arrived"))
        await self.recorder.create(Held(inc))
        return self.file(incident_id, seconds, age_days)

    def file(self, stem: str, seconds: float = 10.0, age_days: float = 0.0) -> Path:
        path = self.dir / f"{stem}.WAV"
        path.write_bytes(wav49(seconds))
        when = time.time() - age_days * DAY_S
        os.utime(path, (when, when))
        return path

    def actions(self) -> list[str]:
        return [e.action for e in self.accounts.audit_trail()]


@pytest.fixture
async def lab(tmp_path: Path, backend: Backend) -> AsyncIterator[Lab]:
    store = AsyncStore(backend.open())
    yield Lab(tmp_path, store)


async def test_a_recording_is_indexed_on_its_incident_through_the_recorder(lab: Lab) -> None:
    path = await lab.call("20261204-101010-1.1", seconds=30.0)
    found = await lab.recordings.index_file(path.name)
    assert found is not None
    data = path.read_bytes()
    assert (found.size, found.sha256, found.duration_s) == (len(data), hashlib.sha256(data).hexdigest(), 30.0)
    assert abs(found.start_wall - (path.stat().st_mtime - 30.0)) < 0.01
    incident = await lab.store.get(found.incident_id)
    assert incident.timeline[-1].kind == "recording_indexed"
    assert incident.timeline[-1].data["sha256"] == found.sha256
    listing = await lab.recordings.of_incident(found.incident_id)
    assert [(v.recording.id, v.state) for v in listing.recordings] == [(found.id, "ok")]
    with pytest.raises(NotFound):
        await lab.recordings.of_incident("20261204-101010-9.9")


async def test_the_purge_removes_only_expired_unheld_recordings_and_is_audited(lab: Lab) -> None:
    old = await lab.call("20260801-000000-1.1", age_days=100)
    held = await lab.call("20260801-000000-2.2", age_days=100)
    young = await lab.call("20261201-000000-3.3", age_days=3)
    assert await lab.recordings.sweep(min_age_s=0) == 3
    await lab.recordings.hold(held.stem, "saule", "court order 12/2026")
    report = await lab.recordings.purge()
    assert report.purged == [old.stem] and report.kept_on_hold == 1 and report.checked == 2
    assert not old.exists() and held.exists() and young.exists()
    assert (report.missing, report.altered, lab.recordings.problems) == ([], [], [])
    assert lab.actions()[-1] == "recordings_purged"
    assert "purged 1, kept on hold 1" in lab.accounts.audit_trail()[-1].detail
    listing = await lab.recordings.of_incident(old.stem)
    assert [v.state for v in listing.recordings] == ["purged"]  # the index remembers it
    kinds = [e.kind for e in (await lab.store.get(old.stem)).timeline]
    assert kinds[-1] == "recording_purged"
    await lab.recordings.release(held.stem, "saule")
    assert (await lab.recordings.purge()).purged == [held.stem]
    with pytest.raises(NotFound, match="not on legal hold"):
        await lab.recordings.release(held.stem, "saule")


async def test_missing_and_altered_files_are_reported_never_dropped(lab: Lab) -> None:
    lost = await lab.call("20261201-000000-1.1")
    changed = await lab.call("20261201-000000-2.2")
    await lab.recordings.sweep(min_age_s=0)
    lost.unlink()
    data = bytearray(changed.read_bytes())
    data[-1] ^= 0xFF  # same size, another checksum
    changed.write_bytes(bytes(data))
    report = await lab.recordings.purge()
    assert (report.missing, report.altered) == ([lost.stem], [changed.stem])
    assert len(lab.recordings.problems) == 2 and lost.stem in lab.recordings.problems[0]
    assert [v.state for v in (await lab.recordings.of_incident(lost.stem)).recordings] == ["missing"]
    with pytest.raises(NotFound, match="missing from disk"):
        await lab.recordings.file(lost.stem)


async def test_a_file_without_incident_is_listed_not_lost(lab: Lab) -> None:
    (lab.dir / "20261204-000000-7.7.WAV").write_bytes(wav49(2.0))
    assert await lab.recordings.sweep(min_age_s=0) == 0
    assert lab.recordings.orphans == ["20261204-000000-7.7.WAV"]


async def test_the_purge_runs_daily_on_trios_clock(lab: Lab, autojump_clock: trio.testing.MockClock,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[float] = []

    async def purge() -> None:
        runs.append(trio.current_time())

    monkeypatch.setattr(lab.recordings, "purge", purge)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(lab.recordings.purge_daily)
        await trio.sleep(2 * DAY_S + service.FIRST_PURGE_AFTER_S + 1)
        nursery.cancel_scope.cancel()
    first = start + service.FIRST_PURGE_AFTER_S
    assert runs == [first, first + DAY_S, first + 2 * DAY_S]


async def indexed(lab: Lab, incident_id: str) -> list[str]:
    """The incident's event kinds once its recording is indexed (or after ``SETTLE_MOST_S`` of Trio's clock)."""
    for _ in range(int(service.SETTLE_MOST_S)):  # the file is settled after a second of Trio's clock
        kinds = [e.kind for e in (await lab.store.get(incident_id)).timeline]
        if "recording_indexed" in kinds:
            break
        await trio.sleep(1.0)
    return kinds


async def test_the_end_of_a_call_indexes_its_recording(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    await lab.call("20261204-121212-5.5", seconds=4.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(lab.recordings.run)
        held = await lab.recorder.acquire("20261204-121212-5.5")
        await lab.recorder.record(held, "hung_up", actor="caller", state="closed")
        lab.recorder.release(held)
        kinds = await indexed(lab, "20261204-121212-5.5")
        nursery.cancel_scope.cancel()
    assert kinds[-2:] == ["hung_up", "recording_indexed"]


async def test_a_call_ended_before_the_service_ran_is_indexed_once_it_runs(
        lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    await lab.call("20261204-161616-1.1", seconds=2.0)
    held = await lab.recorder.acquire("20261204-161616-1.1")
    await lab.recorder.record(held, "hung_up", actor="caller", state="closed")  # nobody indexes yet (a restart)
    lab.recorder.release(held)
    async with trio.open_nursery() as nursery:
        await nursery.start(lab.recordings.run)
        kinds = await indexed(lab, "20261204-161616-1.1")
        nursery.cancel_scope.cancel()
    assert kinds[-2:] == ["hung_up", "recording_indexed"]


def test_calls_ending_close_together_are_looked_at_together() -> None:
    grid, quiet = service.LOOK_GRID_S, service.SETTLE_QUIET_S
    ends = [10.01, 10.1, 10.2, grid * 41 - 0.001]  # within one cell of the grid
    looks = {service.next_look(end) for end in ends}
    assert looks == {grid * 45} and all(grid * 45 - end >= quiet for end in ends)  # one wake-up, each quiet long
    assert service.next_look(grid * 41) == grid * 45  # on the grid: no wait beyond the quiet
    assert service.next_look(grid * 41 + 0.001) == grid * 46


async def test_a_call_back_is_indexed_beside_the_call_on_the_same_incident(lab: Lab) -> None:
    call = await lab.call("20261204-131313-6.6", seconds=20.0)
    leg = lab.file("20261204-131313-6.6-cb0a1b2c3d4e5f6789", seconds=7.0)
    lab.file("20261204-131313-6.6-cbzz", seconds=1.0)  # no recording's name: an orphan, never indexed
    assert await lab.recordings.sweep(min_age_s=0) == 2
    listing = await lab.recordings.of_incident(call.stem)
    assert [(v.recording.id, v.recording.file, v.recording.duration_s, v.state) for v in listing.recordings] == [
        (call.stem, call.name, 20.0, "ok"), (leg.stem, leg.name, 7.0, "ok")]  # by start: the call-back later
    assert lab.recordings.orphans == ["20261204-131313-6.6-cbzz.WAV"]
    rec, path = await lab.recordings.file(leg.stem)
    assert (rec.incident_id, path) == (call.stem, leg)
    kinds = [e.kind for e in (await lab.store.get(call.stem)).timeline]
    assert kinds.count("recording_indexed") == 2


async def test_the_end_of_a_call_back_indexes_its_recording(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    incident_id = "20261204-141414-7.7"
    await lab.call(incident_id, seconds=4.0)
    dispatcher = lab.file(f"{incident_id}-cb00000000000000aa", seconds=3.0)  # a dispatcher's call-back
    auto = lab.file(f"{incident_id}-cb00000000000000bb", seconds=5.0)  # the gateway's own, then the channel
    async with trio.open_nursery() as nursery:
        await nursery.start(lab.recordings.run)
        held = await lab.recorder.acquire(incident_id)
        await lab.recorder.record(held, "hung_up", actor="caller", state="closed")
        await lab.recorder.record(held, "callback_ended", actor="pos1", recording=dispatcher.stem)
        await lab.recorder.record(held, "callback_connected", changes={"channel_id": "callback-00000000000000bb"})
        await lab.recorder.record(held, "hung_up", actor="caller", state="closed")
        lab.recorder.release(held)
        for _ in range(int(service.SETTLE_MOST_S)):
            found = await lab.recordings.of_incident(incident_id)
            if len(found.recordings) == 3:
                break
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert sorted(v.recording.id for v in found.recordings) == sorted([incident_id, dispatcher.stem, auto.stem])
    kinds = [e.kind for e in (await lab.store.get(incident_id)).timeline]
    assert kinds.count("recording_indexed") == 3 and "recording_failed" not in kinds


def test_a_recording_is_read_once_asterisk_has_left_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "20261204-151515-8.8.WAV"
    assert files.final_facts(path, None, 1.0) is None  # not there (yet)
    path.write_bytes(wav49(2.0))
    fresh = files.final_facts(path, None, 1.0)
    assert isinstance(fresh, os.stat_result)  # written just now: still being written, for all we know
    found = files.final_facts(path, fresh, 1.0)  # unchanged since the last look: finished
    assert isinstance(found, files.Facts)
    assert (found.size, found.sha256) == (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    os.utime(path, (time.time() - 5, time.time() - 5))
    assert isinstance(files.final_facts(path, None, 1.0), files.Facts)  # untouched for long enough: one look
    with path.open("ab") as f:
        f.write(b"\0" * 65)
    assert isinstance(files.final_facts(path, found.stat, 1.0), os.stat_result)  # grew since: not yet


# --- a 90-day archive: read in pages, looked up in chunks, checked at a bounded rate -----------------------


async def test_the_purge_reads_the_archive_in_pages_missing_and_repeating_nothing(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rx, "PAGE", 2)
    ids = [f"20260801-000000-{n}.{n}" for n in range(1, 8)]
    for rid in ids:
        await lab.call(rid, age_days=100)
    young = [f"20261201-000000-{n}.{n}" for n in range(8, 10)]
    for rid in young:
        await lab.call(rid, age_days=3)
    when = time.time() - 100 * DAY_S
    for path in lab.dir.iterdir():  # the same start for every old one: pages meet inside a run of equal starts
        if path.stem in ids:
            os.utime(path, (when, when))
    assert await lab.recordings.sweep(min_age_s=0) == 9
    await lab.recordings.hold(ids[3], "saule", "court order 13/2026")
    pages: list[int] = []
    read = lab.store.read

    async def counting(sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        rows = await read(sql, args)
        if "FROM recordings WHERE purged_wall IS NULL" in sql:
            pages.append(len(rows))
        return rows

    monkeypatch.setattr(lab.store, "read", counting)
    report = await lab.recordings.purge()
    assert report.purged == sorted(set(ids) - {ids[3]}) and report.kept_on_hold == 1 and report.checked == 3
    assert pages == [2, 2, 2, 2, 1, 0]
    assert sorted(p.stem for p in lab.dir.iterdir()) == sorted([ids[3], *young])
    again = await lab.recordings.purge()
    assert (again.purged, again.checked, again.missing, again.altered) == ([], 3, [], [])


async def test_a_sweep_asks_the_index_in_chunks_and_later_sweeps_look_only_at_what_changed(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rx, "LOOKUP_CHUNK", 2)
    asked: list[int] = []  # ids per read of the index
    read = lab.store.read

    async def counting(sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if sql.startswith("SELECT id FROM recordings WHERE id IN"):
            asked.append(len(args))
        return await read(sql, args)

    monkeypatch.setattr(lab.store, "read", counting)
    for n in range(1, 6):
        await lab.call(f"20261204-000000-{n}.{n}", age_days=1)
    assert await lab.recordings.sweep(min_age_s=0) == 5 and asked == [2, 2, 1]  # the first after a start: all
    await lab.call("20261204-000000-6.6", age_days=0)  # changed since the last sweep
    lab.file("20261204-000000-7.7", age_days=0)  # its incident comes later
    await lab.call("20260101-000000-8.8", age_days=300)  # appears with an old time (a copy from a backup)
    assert await lab.recordings.sweep(min_age_s=0) == 1 and asked[3:] == [2]
    assert lab.recordings.orphans == ["20261204-000000-7.7.WAV"]
    await lab.recordings.recorder.create(Held(Incident(
        id="20261204-000000-7.7", service="112", created_wall=time.time(),
        caller=Caller(raw_number="+77011234567", number="+77011234567", display_name="", withheld=False))))
    assert await lab.recordings.sweep(min_age_s=0) == 1  # an orphan is looked at again, whatever its age
    assert lab.recordings.orphans == []
    fresh = Recordings(RecordingsConfig(), lab.dir, RecordingIndex(lab.store), lab.recorder, lab.accounts.audit)
    assert await fresh.sweep(min_age_s=0) == 1  # after a restart every file once more: the old copy too
    listing = await fresh.of_incident("20260101-000000-8.8")
    assert [v.state for v in listing.recordings] == ["ok"]
    await lab.call("20260102-000000-9.9", age_days=299)
    fresh._swept_to = time.time() + 3600  # the last sweep's horizon is ahead of now: the clock went back an hour
    assert await fresh.sweep(min_age_s=0) == 1  # so every file is looked at again


def test_the_daily_check_reads_no_faster_than_its_rate() -> None:
    assert files.ahead_s(50_000_000, 0.5, 50e6) == 0.5  # 1 s worth read in half of it: wait the rest
    assert files.ahead_s(50_000_000, 1.5, 50e6) == 0.0  # behind: no wait
    assert files.ahead_s(0, 0.0, 50e6) == 0.0


def test_config_refuses_a_check_rate_that_never_ends() -> None:
    for rate in (0, -5):
        with pytest.raises(ConfigError, match="recordings.check_mb_s: expected a rate above 0"):
            parse({**BASE, "recordings": {"check_mb_s": rate}}, "g.toml")
    assert parse({**BASE, "recordings": {"check_mb_s": 5}}, "g.toml").recordings.check_mb_s == 5.0


async def test_a_file_that_stays_unreadable_is_reported_once_and_indexed_once_it_is_well(lab: Lab) -> None:
    path = await lab.call("20261204-171717-9.9", seconds=3.0)
    path.write_bytes(b"OggS" + bytes(100))  # not what Asterisk writes: the header says so
    for _ in range(3):  # tried at every sweep, reported once
        assert await lab.recordings.sweep(min_age_s=0) == 0
    kinds = [e.kind for e in (await lab.store.get(path.stem)).timeline]
    assert kinds.count("recording_failed") == 1
    path.write_bytes(wav49(3.0))
    assert await lab.recordings.sweep(min_age_s=0) == 1
    kinds = [e.kind for e in (await lab.store.get(path.stem)).timeline]
    assert kinds[-2:] == ["recording_failed", "recording_indexed"]
