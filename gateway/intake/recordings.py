"""Call recordings: indexing what Asterisk recorded, the daily purge, legal holds, and reading them.

Asterisk records every emergency call with MixMonitor (``dialplans/extensions.conf``) into
``<incident id>.WAV`` in the recordings directory. When an incident's call ends (its ``hung_up``
event), the file is indexed once Asterisk has finished writing it (untouched for ``SETTLE_QUIET_S``:
looked at once, a second after the end, in one worker-thread call that also hashes it; again only
while it is still being written or not there yet): duration from the WAV header, size and SHA-256,
written through the incident ``Recorder`` with a ``recording_indexed`` event. A
served call without a file gets ``recording_failed`` (a full or unwritable disk must show on the
incident). Files nobody indexed (a call that ended while the gateway was down, or was handed to the
dialplan) are picked up by a sweep. A call-back is recorded too, into a file of its own on the same
incident (``<incident id>-cb<leg>.WAV``, ``recording_index.owner``): a dispatcher's is indexed at its
``callback_ended``, the gateway's own (its leg then the incident's channel) at the ``hung_up``.

The purge (``purge_daily``, owned by the composition root) removes what ``incident.recording_index.expired``
selects, marks each row purged with a ``recording_purged`` event, checks every other recording's file
(present, same size and SHA-256) and writes one audit entry with its figures. What it found missing or
altered stays in the index and is reported in ``problems`` (``/health``) until a later check finds it
well again.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import trio

from gateway.errors import NotFound, StoreError
from gateway.incident import recording_index as rx
from gateway.incident.recorder import Held, Recorder
from gateway.incident.recording_index import Hold, Recording, RecordingIndex
from gateway.incident.records import Incident, TimelineEvent
from gateway.incident.store import Statement, event
from gateway.intake.recording_files import EXT, Facts, final_facts, finished_stems, read_facts, verify
from gateway.protocols.wav import WavError, read_header
from gateway.settings.recordings import RecordingsConfig
from gateway.threads import Lane

log = logging.getLogger(__name__)
FIRST_PURGE_AFTER_S = 60.0
SWEEP_EVERY_S = 300.0
SWEEP_MIN_AGE_S = 120.0  # a file untouched this long belongs to a call that has ended
SWEEP_OVERLAP_S = 2 * SWEEP_EVERY_S  # a sweep looks again this far behind the last one's horizon (clock steps)
SETTLE_QUIET_S = 1.0  # Asterisk closes the file shortly after the hang-up
SETTLE_MOST_S = 30.0
SETTLE_ABSENT_S = 5.0  # MixMonitor creates the file with the call's first audio, long before it ends
# Looks at files fall on this grid of Trio's clock: calls ending close together are looked at in one wake-up
# of the loop and of the recordings' thread, not one each (at 50 calls/s, ~12 of them).
LOOK_GRID_S = 0.25
PURGE_CONCURRENCY = 16
SERVED = ("queued", "ringing", "answered", "ivr_language", "ivr_category", "ivr_time_limit")
Audit = Callable[[str, str, str, str, str], None]  # who, via, action, target, detail (blocking)


class PurgeReport(msgspec.Struct, kw_only=True):
    """One purge: what went, what a hold kept, and every file found missing or altered (by recording id)."""

    started_wall: float
    elapsed_s: float
    keep_days: int
    purged: list[str]
    kept_on_hold: int
    checked: int
    missing: list[str]
    altered: list[str]


class _Tally:
    """A purge's figures, summed over the archive's pages."""

    def __init__(self) -> None:
        self.purged: list[str] = []
        self.checked = 0
        self.kept_on_hold = 0
        self.missing: list[str] = []  # also those found missing when purged
        self.altered: list[str] = []


class RecordingView(msgspec.Struct, frozen=True, kw_only=True):
    recording: Recording
    state: str  # ok, missing (no file), altered (size differs), purged


class IncidentRecordings(msgspec.Struct, frozen=True, kw_only=True):
    incident_id: str
    hold: Hold | None
    recordings: list[RecordingView]


def next_look(now: float) -> float:
    """When to look at a file next (Trio's clock): ``SETTLE_QUIET_S`` from ``now``, at the next point of the grid."""
    return math.ceil((now + SETTLE_QUIET_S) / LOOK_GRID_S) * LOOK_GRID_S


def problem_lines(report: PurgeReport) -> list[str]:
    """The ``/health`` reasons of a check: never silent about a recording that is not as indexed."""
    lines = []
    for what, ids in (("missing from disk", report.missing), ("not as indexed (size or SHA-256)", report.altered)):
        if ids:
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            lines.append(f"recordings: {len(ids)} {what}: {shown}")
    return lines


class Recordings:
    """The recordings service. ``run`` indexes; ``purge_daily`` purges; both owned by the app's nursery."""

    def __init__(self, cfg: RecordingsConfig, directory: Path, index: RecordingIndex, recorder: Recorder,
                 audit: Audit) -> None:
        self.cfg = cfg
        self.dir = directory
        self.index = index
        self.recorder = recorder
        self.audit = audit
        self.problems: list[str] = []  # of the last check, for /health
        self.orphans: list[str] = []  # files whose incident the store does not have
        self.last_report: PurgeReport | None = None
        self._indexing: set[str] = set()
        self._swept_to: float | None = None  # every file changed before this was looked at by a sweep
        # file -> the reason of the ``recording_failed`` recorded for it, until it is indexed: tried at every sweep
        self._reported: dict[str, str] = {}
        self._lane = Lane("recordings")  # reading and hashing finished files, one at a time
        # (incident, stem, the incident kept live for it: no reload from the store to index it), ended while
        # ``run`` is not running; once it is, each is indexed from a task started there and then (a step fewer)
        self._send, self._receive = trio.open_memory_channel[tuple[str, str, Held | None]](math.inf)
        self._nursery: trio.Nursery | None = None
        recorder.listeners.append(self._on_event)

    def _on_event(self, incident: Incident, item: TimelineEvent) -> None:
        if item.kind == "hung_up":
            self._ended(incident.id, incident.id)
            if (leg := rx.leg_stem(incident.id, incident.channel_id)) is not None:  # the gateway's own call-back
                self._ended(incident.id, leg)
        elif item.kind == "callback_ended" and isinstance(stem := item.data.get("recording"), str):
            self._ended(incident.id, stem)

    def _ended(self, incident_id: str, stem: str) -> None:
        held = self.recorder.keep(incident_id)
        if self._nursery is not None:
            self._nursery.start_soon(self._index_ended_call, incident_id, stem, held)
        else:
            self._send.send_nowait((incident_id, stem, held))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Index each ended call's recording, and sweep for files nobody indexed every few minutes."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep_forever)
            while True:
                try:
                    nursery.start_soon(self._index_ended_call, *self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except (OSError, StoreError) as exc:
                log.error("recordings: sweep failed: %s", exc)
            await trio.sleep(SWEEP_EVERY_S)

    async def _index_ended_call(self, incident_id: str, stem: str, held: Held | None = None) -> None:
        """Index the recording ``stem`` of a call (or call-back) of ``incident_id`` that has just ended
        (``held``: the incident, kept live for this; released here)."""
        name = stem + EXT
        if name in self._indexing or rx.owner(stem) != incident_id:
            self._let_go(held)
            return
        self._indexing.add(name)
        try:
            if await self._indexed_already(stem, held):
                return  # a call adopted again after a restart ends once more
            facts = await self._settled(self.dir / name)
            if isinstance(facts, Facts):
                await self._index_facts(name, facts, held)
            elif isinstance(facts, OSError):
                await self._record(incident_id, "recording_failed", held=held, reason=f"{name}: {facts}"[:300])
            elif stem != incident_id or await self._was_served(incident_id, held):
                await self._record(incident_id, "recording_failed", held=held,
                                   reason=f"no recording file {name} after the call ended (disk full or unwritable?)")
        except StoreError as exc:
            log.error("incident %s: recording not indexed: %s", incident_id, exc)
        finally:
            self._indexing.discard(name)
            self._let_go(held)

    def _let_go(self, held: Held | None) -> None:
        if held is not None:
            self.recorder.release(held)

    async def _indexed_already(self, stem: str, held: Held | None) -> bool:
        if held is not None:  # its timeline says so, without a store read
            return any(e.kind == "recording_indexed" and e.data.get("recording") == stem
                       for e in held.incident.timeline)
        return await self.index.get(stem) is not None

    async def _settled(self, path: Path) -> Facts | OSError | None:
        """The finished file's Facts (see ``final_facts``), looked at ``next_look`` after the call ended and
        again only while Asterisk still writes it (at most ``SETTLE_MOST_S``; then taken as it is); None if it
        is still absent ``SETTLE_ABSENT_S`` after the call ended (MixMonitor could not create it); the OSError
        if it cannot be read."""
        began = trio.current_time()
        last: os.stat_result | None = None
        while True:
            await trio.sleep_until(next_look(trio.current_time()))
            quiet = 0.0 if trio.current_time() - began >= SETTLE_MOST_S else SETTLE_QUIET_S
            try:
                found = await self._lane.run(final_facts, path, last, quiet)
            except OSError as exc:
                return exc
            if isinstance(found, Facts):
                return found
            if found is None and trio.current_time() - began >= SETTLE_ABSENT_S:
                return None
            last = found

    async def _was_served(self, incident_id: str, held: Held | None) -> bool:
        incident = held.incident if held is not None else await self.recorder.store.get(incident_id)
        return any(e.kind in SERVED for e in incident.timeline)

    async def index_file(self, name: str) -> Recording | None:
        """Index one finished file (``<incident id>.WAV`` or a call-back's ``<incident id>-cb<leg>.WAV``) on
        its incident; None if unreadable (then the incident says ``recording_failed``). Raises NotFound when
        no incident has that id (or the name is no recording's)."""
        stem, path = name.removesuffix(EXT), self.dir / name
        incident_id = rx.owner(stem)
        if incident_id is None:
            raise NotFound(f"{name}: not the name of an incident's recording")
        try:
            facts = await self._lane.run(read_facts, path)
        except OSError as exc:
            await self._failed(incident_id, name, f"{name}: {exc}"[:300])
            return None
        return await self._index_facts(name, facts)

    async def _failed(self, incident_id: str, name: str, reason: str, held: Held | None = None) -> None:
        """``recording_failed`` on the incident, once per file and reason while the gateway runs: a file that
        stays unreadable is tried at every sweep, and its incident's timeline must not grow by one event every
        five minutes."""
        if self._reported.get(name) != reason:
            await self._record(incident_id, "recording_failed", held=held, reason=reason)
            self._reported[name] = reason

    async def _index_facts(self, name: str, facts: Facts, held: Held | None = None) -> Recording | None:
        stem = name.removesuffix(EXT)
        incident_id = rx.owner(stem)
        assert incident_id is not None
        size, sha = facts.size, facts.sha256
        try:
            wav = read_header(facts.head, size)
        except WavError as exc:
            await self._failed(incident_id, name, f"{name}: {exc}"[:300], held)
            return None
        rec = Recording(id=stem, incident_id=incident_id, file=name, codec=wav.codec,
                        start_wall=facts.stat.st_mtime - wav.duration_s, duration_s=round(wav.duration_s, 3),
                        size=size, sha256=sha, indexed_wall=time.time())
        await self._record(incident_id, "recording_indexed", [rx.insert(rec)], held=held, recording=rec.id,
                           duration_s=rec.duration_s, size=size, sha256=sha)
        self._reported.pop(name, None)
        return rec

    async def _record(self, incident_id: str, kind: str, extra: Sequence[Statement] = (), actor: str = "gateway",
                      held: Held | None = None, **data: str | int | float | bool | None) -> None:
        """Record on ``held`` if given (its user releases it), else on the incident loaded for this."""
        if held is not None:
            await self.recorder.record_event(held, event(kind, actor, **data), extra=extra)
            return
        loaded = await self.recorder.acquire(incident_id)
        try:
            await self.recorder.record_event(loaded, event(kind, actor, **data), extra=extra)
        finally:
            self.recorder.release(loaded)

    async def sweep(self, min_age_s: float = SWEEP_MIN_AGE_S) -> int:
        """Index recordings whose call ended unseen (untouched for ``min_age_s``); returns how many. A file
        with no incident of its id is listed in ``orphans`` (and indexed once its incident exists).

        The first sweep after a start looks at every file; later ones only at files changed since the last
        sweep's horizon (less ``SWEEP_OVERLAP_S``; after the wall clock went back, every file again), the
        orphans and the files that could not be read: the index is asked about those
        ``LOOKUP_CHUNK`` at a time, never read whole (every file ever recorded: at 300,000 recordings that read
        held the store's thread, and so every incident write, 0.1-0.4 s every five minutes)."""
        horizon = time.time() - min_age_s
        if self._swept_to is not None and horizon < self._swept_to:
            log.warning("recordings: the clock went back since the last sweep; looking at every file again")
            self._swept_to = None
        since = self._swept_to - SWEEP_OVERLAP_S if self._swept_to is not None else None
        again = [*self.orphans, *self._reported]
        stems = await trio.to_thread.run_sync(finished_stems, self.dir, horizon, since, again, abandon_on_cancel=True)
        done, orphans = 0, []
        for name in (stem + EXT for stem in await self.index.unknown(stems)):
            if name in self._indexing:
                continue
            self._indexing.add(name)
            try:
                done += await self.index_file(name) is not None
            except NotFound:
                orphans.append(name)
            finally:
                self._indexing.discard(name)
        if orphans:
            log.warning("recordings: %d file(s) with no incident: %s", len(orphans), ", ".join(orphans[:5]))
        self.orphans = sorted(orphans)
        self._swept_to = horizon
        return done

    # --- retention --------------------------------------------------------------------------------

    async def purge_daily(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Purge (and check every kept file) a minute after start, then every 24 h of Trio's clock."""
        task_status.started()
        await trio.sleep(FIRST_PURGE_AFTER_S)
        while True:
            await self.purge()
            await trio.sleep(rx.DAY_S)

    async def purge(self, now: float | None = None) -> PurgeReport:
        """Remove expired recordings not on hold, check the rest, audit and report. Raises StoreError. The archive
        is read a page at a time (``RecordingIndex.live_page``) and checked at ``check_mb_s``: incident writes
        keep their pace while it runs."""
        began, now = trio.current_time(), time.time() if now is None else now
        held = await self.index.held()
        tally = _Tally()
        after: tuple[float, str] | None = None
        while page := await self.index.live_page(after):
            after = (page[-1].start_wall, page[-1].id)
            await self._purge_page(page, held, now, tally)
        report = PurgeReport(started_wall=now, elapsed_s=round(trio.current_time() - began, 3),
                             keep_days=self.cfg.keep_days, purged=sorted(tally.purged), checked=tally.checked,
                             kept_on_hold=tally.kept_on_hold, missing=sorted(tally.missing), altered=tally.altered)
        self.last_report, self.problems = report, problem_lines(report)
        detail = (f"kept {self.cfg.keep_days} days: purged {len(report.purged)}, kept on hold {report.kept_on_hold},"
                  f" checked {report.checked}, missing {len(report.missing)}, altered {len(report.altered)}")
        await trio.to_thread.run_sync(self.audit, "gateway", "system", "recordings_purged", "", detail)
        log.info("recordings purge: %s (%.1f s)", detail, report.elapsed_s)
        return report

    async def _purge_page(self, page: list[Recording], held: set[str], now: float, tally: _Tally) -> None:
        doomed = rx.expired(page, held, now, self.cfg.keep_days)
        gone = {r.id for r in doomed}
        limiter = trio.CapacityLimiter(PURGE_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            for rec in doomed:
                nursery.start_soon(self._purge_one, rec, now, limiter, tally.missing)
        kept = [r for r in page if r.id not in gone]
        # Only reads: a gateway stopping need not wait out the page (seconds, at check_mb_s).
        missing, altered = await trio.to_thread.run_sync(verify, self.dir, kept, self.cfg.check_mb_s * 1e6,
                                                         abandon_on_cancel=True)
        tally.purged += gone
        tally.checked += len(kept)
        tally.kept_on_hold += sum(1 for r in rx.expired(page, set(), now, self.cfg.keep_days) if r.incident_id in held)
        tally.missing += missing
        tally.altered += altered

    async def _purge_one(self, rec: Recording, now: float, limiter: trio.CapacityLimiter, missing: list[str]) -> None:
        async with limiter:
            try:
                await trio.to_thread.run_sync(os.unlink, self.dir / rec.file)
                there = True
            except FileNotFoundError:
                there = False
                missing.append(rec.id)
            await self._record(rec.incident_id, "recording_purged", [rx.mark_purged(rec.id, now)],
                               recording=rec.id, keep_days=self.cfg.keep_days, file_was_missing=not there)

    # --- holds and reading --------------------------------------------------------------------------

    async def hold(self, incident_id: str, actor: str, reason: str) -> Hold:
        """Put an incident's recordings on legal hold (kept past ``keep_days``). Raises NotFound."""
        item = Hold(incident_id=incident_id, wall=time.time(), actor=actor, reason=reason)
        await self._record(incident_id, "legal_hold_set", [rx.set_hold(item)], actor=actor, reason=reason)
        return item

    async def release(self, incident_id: str, actor: str) -> None:
        """Lift the legal hold. Raises NotFound (no such incident, or not on hold)."""
        if await self.index.hold(incident_id) is None:
            raise NotFound(f"incident {incident_id!r} is not on legal hold")
        await self._record(incident_id, "legal_hold_released", [rx.release_hold(incident_id)], actor=actor)

    async def of_incident(self, incident_id: str) -> IncidentRecordings:
        """The incident's recordings with each file's state now. Raises NotFound."""
        await self.recorder.store.get(incident_id)
        found = await self.index.of_incident(incident_id)
        views = [RecordingView(recording=r, state=_state(self.dir, r)) for r in found]
        return IncidentRecordings(incident_id=incident_id, hold=await self.index.hold(incident_id), recordings=views)

    async def file(self, recording_id: str) -> tuple[Recording, Path]:
        """A recording and its file, to be read. Raises NotFound (unknown, purged or missing)."""
        rec = await self.index.get(recording_id)
        if rec is None:
            raise NotFound(f"no recording {recording_id!r}")
        state = _state(self.dir, rec)
        if state == "purged":
            raise NotFound(f"recording {recording_id!r} was purged after {self.cfg.keep_days} days")
        if state == "missing":
            raise NotFound(f"recording {recording_id!r} is indexed but missing from disk (reported)")
        return rec, self.dir / rec.file


def _state(directory: Path, rec: Recording) -> str:
    if rec.purged_wall is not None:
        return "purged"
    try:
        size = (directory / rec.file).stat().st_size
    except OSError:
        return "missing"
    return "ok" if size == rec.size else "altered"
