"""Calls the fallback dialplan served while the gateway could not, registered as incidents from Asterisk's CEL log.

While the gateway's Stasis app is not registered (the gateway down or restarting, ARI away) the dialplan
rings the dispatchers itself and marks the call in Asterisk's CEL log (``dialplans/extensions.conf``,
``cel.conf``, ``cel_custom.conf``). ``FallbackCalls`` reads that log on start and every ``EVERY_S`` of
Trio's clock from where it stopped, groups the rows into calls (``protocols.cel_calls``) and writes an
incident for every marked call that has none, through the recorder: ``source = "fallback"``, the
number, arrival, answer and end, and the position that answered. A call still going on is registered at
once (a dispatcher on it sees its card); its answer and end are added when the log tells them. The
incident takes the id the dialplan
named the call by (the one the dispatcher's phone got in ``X-ECGW-Incident``, and the recording's file
name), so a call the gateway saw is never registered again (its incident has that id), nor one
registered already, however often the log is read; ``intake.recordings`` indexes the call's recording
on the incident's ``hung_up`` event.

Where to read from after a restart is kept in the incident store (``cel_cursor``, written after the
incidents it covers; keyed by ``[cluster] node_id`` and the log's path, since nodes sharing a store each
read their own Asterisk's log): the first row of any call still open, so a call is never cut in two. The log stays
open between runs: Asterisk opens it by name for every row, so after a rotation the old file is read to
its end before the new one.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import BinaryIO

import msgspec
import trio

from gateway.errors import NotFound, StoreError
from gateway.incident.callback_list import diallable
from gateway.incident.callback_table import CallbackTable, abandoned
from gateway.incident.recorder import Held, Recorder
from gateway.incident.recording_index import INCIDENT_ID
from gateway.incident.records import Incident, TimelineEvent, new_incident_id
from gateway.incident.store import AsyncStore, Statement
from gateway.metrics import Metrics
from gateway.protocols import ani
from gateway.protocols.cel import Malformed, Reader
from gateway.protocols.cel_calls import Calls, FallbackCall
from gateway.settings import GatewayConfig

log = logging.getLogger(__name__)
EVERY_S = 10.0
READ_CHUNK = 32 * 1024  # parsed on the event loop between reads: ~190 rows, ~2 ms at a time
LOGGED_MALFORMED = 10  # per run; the rest are counted
CURSOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS cel_cursor (
    log TEXT PRIMARY KEY,
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    wall REAL NOT NULL
);
"""
POSITION = re.compile(r"^PJSIP/ecgw-pos-(?P<name>.+)-[0-9a-f]{8}$")  # dialplan.position_sections' endpoints
BACKUP = re.compile(r"^PJSIP/ecgw-backup-[0-9a-f]{8}$")
SERVICE = re.compile(r"^[0-9A-Za-z_-]{1,16}$")
Identity = tuple[int, int]  # (device, inode) of the log file


class RunReport(msgspec.Struct, kw_only=True):
    """One read of the CEL log: rows read and skipped, calls ended, incidents registered (of them, for calls
    still going on), completed (their call ended since), already known, failed."""

    rows: int = 0
    malformed: int = 0
    ended: int = 0
    registered: int = 0
    ongoing: int = 0
    completed: int = 0
    known: int = 0
    failed: int = 0
    elapsed_s: float = 0.0


def answered_by(channel: str) -> tuple[str, str]:
    """(position, who) of the leg that answered: a position's name and "dispatcher", "" and "backup"
    for the backup centre, ("", "") for no answer or a channel the dialplan does not ring."""
    found = POSITION.match(channel)
    if found:
        return found.group("name"), "dispatcher"
    return ("", "backup") if BACKUP.match(channel) else ("", "")


def dialplan_id(unique_id: str, arrived_wall: float) -> str:
    """The incident id the dialplan gives a call (``extensions.conf``: its uniqueid's UTC time, then the
    node's systemname and a dot if the uniqueid has one ("nodea-1764800000.12"), then "<epoch>.<n>")."""
    node, _, own = unique_id.rpartition("-")
    seconds = own.split(".", 1)[0]
    if seconds.isdigit() and len(seconds) <= 10:
        found = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(int(seconds)))}-{node + '.' if node else ''}{own}"
        if INCIDENT_ID.match(found):
            return found
    return new_incident_id(arrived_wall)


def incident_for(call: FallbackCall, cfg: GatewayConfig, now: float) -> Incident:
    """The incident of a call the fallback dialplan served, its timeline at the times the log gives."""
    caller = ani.normalise(call.number, call.name, call.presentation, cfg.ani)
    position, who = answered_by(call.answered_by)
    incident_id = call.incident_id if INCIDENT_ID.match(call.incident_id) else dialplan_id(call.unique_id,
                                                                                           call.arrived_wall)
    service = call.service if SERVICE.match(call.service) else cfg.services[0].name
    answer_s = round(call.answered_wall - call.arrived_wall, 3) if call.answered_wall is not None else None

    def at(wall: float, kind: str, actor: str, **data: str | int | float | bool | None) -> TimelineEvent:
        return TimelineEvent(kind=kind, wall=wall, mono=0.0, actor=actor, data=data)  # mono: not known afterwards

    timeline = [at(call.arrived_wall, "call_arrived", "caller", service=service, channel=call.caller_channel,
                   number=caller.number, raw_number=caller.raw_number, flags=",".join(caller.flags)),
                at(call.fallback_wall, "fallback_ringing", "asterisk", legs=call.legs,
                   reason="the gateway's app was not registered: the dialplan rang the dispatchers")]
    if call.answered_wall is not None:
        timeline.append(at(call.answered_wall, "answered", position or who or "dispatcher", position=position,
                           answered_by=who, channel=call.answered_by, answer_s=answer_s))
    if call.ended_wall is not None:
        timeline.append(at(call.ended_wall, "hung_up", "caller" if call.hung_up_by == call.caller_channel
                           else "dispatcher" if call.hung_up_by else "asterisk", cause=call.hangup_cause,
                           answered=call.answered_wall is not None))
    timeline.append(at(now, "fallback_registered", "gateway", source="cel", end_known=call.ended_wall is not None,
                       linked_id=call.linked_id))
    return Incident(id=incident_id, service=service, created_wall=call.arrived_wall, caller=caller,
                    call_id=call.call_id, channel_id=call.unique_id, state="fallback", source="fallback",
                    priority=cfg.ivr.default_priority, position=position, answer_s=answer_s, timeline=timeline)


def open_log(path: Path, known: Identity | None, offset: int) -> tuple[BinaryIO, Identity, int]:
    """The log opened at ``offset``, or at its start when it is another file than ``known`` or shorter than
    ``offset`` (rotated or truncated while the gateway was down): (file, identity, offset). Blocking;
    raises OSError."""
    f = open(path, "rb")  # kept open across runs: a rotated log is read to its end
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        identity = (st.st_dev, st.st_ino)
        if known is not None and (identity != known or st.st_size < offset):
            offset = 0
        f.seek(offset)
    except BaseException:
        f.close()
        raise
    return f, identity, offset


def changed(path: Path, identity: Identity, position: int) -> str:
    """"rotated" when ``path`` is now another file (Asterisk opens the log by name for every row, so after
    a rotation its rows go to a new file), "truncated" when it is shorter than what was read, else "".
    Blocking."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ""  # moved away, no new one yet: the open one is still the log
    if (st.st_dev, st.st_ino) != identity:
        return "rotated"
    return "truncated" if st.st_size < position else ""


class FallbackCalls:
    """Registers the calls the fallback dialplan served; ``run`` is owned by the app's nursery.

    ``problems`` says why the log cannot be read or calls were not registered (``/health``)."""

    def __init__(self, cfg: GatewayConfig, path: Path, store: AsyncStore, recorder: Recorder,
                 metrics: Metrics, instance_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.path = path
        # Each node reads its own Asterisk's log, often at the same path as the other node's: on a shared store
        # the cursor is the node's, or one node would resume from where the other's file stopped.
        self.cursor_key = f"{cfg.cluster.node_id}:{path}" if cfg.cluster.node_id else str(path)
        self.instance_dir = instance_dir  # provisioned (has etc/): a missing log directory is a problem
        self.store = store
        self.recorder = recorder
        self.metrics = metrics
        self.problems: list[str] = []
        self.last: RunReport | None = None
        self.runs = 0
        store.sync.apply_schema(CURSOR_SCHEMA)
        CallbackTable(store)  # its rows are written with the incidents of unanswered calls
        self._reader: Reader | None = None  # None: resume from the stored cursor
        self._calls = Calls()
        self._identity: Identity | None = None
        self._file: BinaryIO | None = None
        self._rotated = False
        self._read_to = 0
        self._saved: tuple[Identity, int] | None = None
        self._retry: list[FallbackCall] = []
        self._ongoing: set[str] = set()  # calls still going on whose incident exists (by the caller's channel)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile now, then every ``EVERY_S``. A failed run is logged and counted; the next one retries."""
        task_status.started()
        try:
            while True:
                try:
                    await self.reconcile()
                except StoreError as exc:
                    self.metrics.fallback_runs.labels("store_failed").inc()
                    self.problems = [f"fallback calls: the store failed ({exc}); calls served by the fallback "
                                     "dialplan are not registered yet"]
                    log.error("fallback calls: %s", exc)
                await trio.sleep(EVERY_S)
        finally:
            self.close()

    async def reconcile(self) -> RunReport:
        """One run: read what Asterisk logged since the last; register the marked calls, those going on too,
        and complete the ones registered while they went on."""
        began, report = trio.current_time(), RunReport()
        if self._reader is None:
            await self._resume()
        try:
            await self._read(report)
        except OSError as exc:
            return self._unreadable(exc, report, began)
        ended = [*self._retry, *self._calls.take_ended(time.time())]
        self._retry, report.ended = [], len(ended)
        for call in ended:
            await self._register(call, report)
            self._ongoing.discard(call.unique_id)
        for call in self._calls.in_progress():  # a dispatcher on a fallback call sees its incident now
            if call.unique_id not in self._ongoing:
                await self._register(call, report)
        assert self._reader is not None and self._identity is not None
        resume = min([self._calls.resume_offset(self._reader.consumed), *(c.first_offset for c in self._retry)])
        await self._save(self._identity, resume)
        self.problems = [f"fallback calls: {report.failed} not registered (the store failed); retrying"] \
            if report.failed else []
        self.metrics.fallback_runs.labels("store_failed" if report.failed else "ok").inc()
        return self._done(report, began)

    async def _read(self, report: RunReport) -> None:
        """Read the log to its end; a log rotated meanwhile is read to its end, then the new one from its start."""
        while True:
            if self._file is None:
                opened, identity, start = await trio.to_thread.run_sync(open_log, self.path, self._identity,
                                                                        self._read_to)
                self._opened(opened, identity, start)
            file = self._file
            assert file is not None
            data = await trio.to_thread.run_sync(file.read, READ_CHUNK)
            self._read_to += len(data)
            assert self._reader is not None
            self._reader.receive_data(data)
            self._drain(report)
            if len(data) == READ_CHUNK:
                continue
            assert self._identity is not None
            change = await trio.to_thread.run_sync(changed, self.path, self._identity, self._read_to)
            if not change:
                return
            if change == "rotated":
                log.info("fallback calls: Asterisk's CEL log %s was rotated; the old one read to its end", self.path)
            else:
                log.warning("fallback calls: Asterisk's CEL log %s was truncated (rows written since the last "
                            "read are lost; rotate it by renaming); reading it from its start", self.path)
            self.close()
            self._rotated = True

    def _opened(self, file: BinaryIO, identity: Identity, start: int) -> None:
        if self._identity is not None and (identity != self._identity or start != self._read_to):
            if not self._rotated:
                log.warning("fallback calls: Asterisk's CEL log %s was replaced or truncated while the gateway "
                            "was away; reading it from its start", self.path)
            self._reader = Reader(start)
            self._calls.rebase()
        self._file, self._identity, self._read_to, self._rotated = file, identity, start, False

    def close(self) -> None:
        """Close the log (``run`` does, when it ends)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _drain(self, report: RunReport) -> None:
        assert self._reader is not None
        while (row := self._reader.next_row()) is not None:
            if isinstance(row, Malformed):
                report.malformed += 1
                if report.malformed <= LOGGED_MALFORMED:
                    log.warning("fallback calls: CEL row at offset %d skipped: %s: %r", row.offset, row.reason,
                                row.excerpt)
                continue
            report.rows += 1
            self._calls.add(row)

    async def _register(self, call: FallbackCall, report: RunReport) -> None:
        """Write the call's incident unless the gateway has it (then complete one registered while the call
        went on); a store failure keeps an ended call for the next run."""
        incident, ongoing = incident_for(call, self.cfg, time.time()), call.ended_wall is None
        try:
            stored = await self._stored(incident)
            if stored is not None and not ongoing and await self._complete(stored.id, incident):
                report.completed += 1
            elif stored is not None or not await self._create(incident):
                report.known += 1
            else:
                report.registered += 1
                report.ongoing += ongoing
                self.metrics.fallback_registered.inc()
                log.info("fallback calls: registered %s: %s call from %s on %s, answered by %s%s", incident.id,
                         incident.service, incident.caller.number or "(no number)", call.caller_channel,
                         incident.position or answered_by(call.answered_by)[1] or "nobody (yet)",
                         ", still going on" if ongoing else "")
        except StoreError as exc:
            log.error("fallback calls: incident %s (%s) not registered: %s", incident.id, incident.caller.number,
                      exc)
            report.failed += 1
            if not ongoing:
                self._retry.append(call)
            return
        if ongoing:
            self._ongoing.add(call.unique_id)

    async def _complete(self, incident_id: str, ended: Incident) -> bool:
        """Add the answer and the end to a fallback incident registered while its call went on; False if
        it is not one (a call the gateway saw) or has them already."""
        held = await self.recorder.acquire(incident_id)
        try:
            have = {e.kind for e in held.incident.timeline}
            if held.incident.source != "fallback" or "hung_up" in have:
                return False
            missing = [e for e in ended.timeline if e.kind in ("answered", "hung_up") and e.kind not in have]
            for item in missing:
                await self.recorder.record_event(held, item, changes={"position": ended.position,
                                                                      "answer_s": ended.answer_s},
                                                 extra=self._listed(ended) if item.kind == "hung_up" else ())
            return bool(missing)
        finally:
            self.recorder.release(held)

    async def _create(self, incident: Incident) -> bool:
        """Write the new incident; False if the gateway has it already (live, or written meanwhile)."""
        if incident.id in self.recorder.live:
            return False
        held = self.recorder.track(Held(incident))
        try:
            await self.recorder.create(held, self._listed(incident))
        except StoreError as exc:
            error = exc
        else:
            return True
        finally:
            self.recorder.release(held)
        if await self._stored(incident) is not None:
            return False
        raise error

    def _listed(self, incident: Incident) -> list[Statement]:
        """A fallback call that ended with nobody answering goes onto the call-back list, in the same write,
        as a call the gateway saw does: the caller hung up waiting and must be called back."""
        ended = next((e.wall for e in incident.timeline if e.kind == "hung_up"), None)
        if ended is None or incident.answer_s is not None or not self.cfg.callback.enabled \
                or not diallable(incident.caller.number):
            return []
        return [abandoned(incident, ended)]

    async def _stored(self, incident: Incident) -> Incident | None:
        """This call's incident in the store: by its id, or by the caller's channel (adopted under another)."""
        try:
            return await self.store.get(incident.id)
        except NotFound:
            return await self.store.by_channel(incident.channel_id)

    async def _resume(self) -> None:
        rows = await self.store.read("SELECT device, inode, \"offset\" FROM cel_cursor WHERE log=?", (self.cursor_key,))
        if rows:
            device, inode, offset = (int(v) for v in rows[0])  # type: ignore[call-overload]
            self._identity, self._read_to = (device, inode), offset
            self._saved = ((device, inode), offset)
        self._reader = Reader(self._read_to)
        self._calls = Calls()

    async def _save(self, identity: Identity, offset: int) -> None:
        if self._saved == (identity, offset):
            return
        await self.store.write([("INSERT INTO cel_cursor (log, device, inode, \"offset\", wall) VALUES (?,?,?,?,?)"
                                 " ON CONFLICT (log) DO UPDATE SET device=excluded.device, inode=excluded.inode,"
                                 " \"offset\"=excluded.\"offset\", wall=excluded.wall",
                                 (self.cursor_key, *identity, offset, time.time()))])
        self._saved = (identity, offset)

    def _unreadable(self, exc: OSError, report: RunReport, began: float) -> RunReport:
        self.close()  # opened again by the next run
        if isinstance(exc, FileNotFoundError):
            cel_dir = self.path.parent
            provisioned = self.instance_dir is not None and (self.instance_dir / "etc").is_dir()
            self.problems = [f"fallback calls: no CEL directory {cel_dir} (run `gateway asterisk up`): calls the "
                             "fallback dialplan serves would not be registered"] \
                if provisioned and not cel_dir.is_dir() else []
        else:
            self.problems = [f"fallback calls: cannot read Asterisk's CEL log {self.path}: {exc}"]
        if self.problems:
            self.metrics.fallback_runs.labels("unreadable").inc()
            log.error("%s", self.problems[0])
        return self._done(report, began)

    def _done(self, report: RunReport, began: float) -> RunReport:
        report.elapsed_s = round(trio.current_time() - began, 4)
        self.metrics.cel_rows.labels("event").inc(report.rows)
        self.metrics.cel_rows.labels("malformed").inc(report.malformed)
        self.last = report
        self.runs += 1
        busy = report.rows or report.malformed or report.ended or report.registered or self.runs == 1
        level = logging.INFO if busy else logging.DEBUG  # the first run, and every run that read anything
        log.log(level, "fallback calls: %d CEL rows read, %d malformed skipped; %d calls ended, %d registered "
                "(%d still going on), %d completed, %d already known, %d failed (%.3f s)", report.rows,
                report.malformed, report.ended, report.registered, report.ongoing, report.completed, report.known,
                report.failed, report.elapsed_s)
        return report
