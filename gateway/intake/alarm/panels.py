"""School alarm buttons into incidents: Asterisk AlarmReceiver event files and the panel HTTP API.

Theory of operation: a school's panel dials the centre; Asterisk's AlarmReceiver() collects the
Contact ID messages and writes each one to a file in its event spool directory before it sends
the kiss-off (``logindividualevents = yes``), so a message the panel saw acknowledged is on disk.
``AlarmIntake.run`` polls that directory, hands each event to ``handle`` and then moves the file
to ``done/`` — or to ``bad/`` with a ``.why`` note when something in it could not be used (an
unknown account, a bad checksum, a file that is not an event file). A file leaves the spool only
after its events are durable in the store, so a gateway restart loses nothing; a crash between
the two reads the file again. Each alarm or restore is written with its replay key (account,
event, zone and the file's TIMESTAMP; ``protocols.replay.contact_id``), so an event read again,
or a panel's ``POST /alarms`` sent again with its ``time``, is ``replayed``: counted, logged once
and otherwise ignored. Without a time (a bare API report) every report is taken.

What an event becomes (``classify`` is the pure rule):

    unknown account              nothing; logged, counted, the file kept in bad/
    test report (60x, 61x)       nothing; the site's last test time (``site_health``)
    arm/disarm, trouble, bypass  nothing; the site's last event (no police for the janitor's key)
    restore (qualifier 3)        ``alarm_restored`` on the account's open incident
    alarm, none open             a new incident (``alarm_received``)
    alarm, one open and recent   ``alarm_repeated`` on it

An alarm is an event whose category is in ``incident_categories``, or any 1xx code (DC-05's alarm
group) that the code table does not know: a panel newer than the table must not lose a real alarm.
Any other unknown code is noted like trouble, logged with its digits, and its description names the
code (``Unknown event 4B2 (open/close or access)``), so nothing received is dropped unseen.

Panels with an IP communicator use ``POST /alarms`` (``web.webhooks``) instead, authorised by their own token.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import trio

from gateway.errors import NotFound, StoreError
from gateway.incident.desk import Desk, Value, no_caller
from gateway.incident.records import Incident, Location
from gateway.intake.alarm.receiver_file import EventFileError, ReceivedCall, read_event_file
from gateway.intake.alarm.sites import Site, Sites, load_sites
from gateway.protocols import replay
from gateway.protocols.contact_id import (
    ContactIdError,
    ContactIdEvent,
    Qualifier,
    encode,
    is_known,
    is_restore,
    is_test,
    is_unknown_alarm,
    parse,
)
from gateway.settings import AlarmConfig, project_path

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

Action = Literal["unknown", "test", "note", "restore", "alarm"]
Outcome = Literal["opened", "repeated", "restored", "restore_unmatched", "test", "noted", "unknown_account",
                  "replayed"]
ALARM_KINDS = ("alarm_received", "alarm_repeated")
QUALIFIER_DIGITS: dict[int, Qualifier] = {1: "new", 3: "restore", 6: "status"}


class Handled(msgspec.Struct, frozen=True, kw_only=True):
    """What one event did (also the panel API's reply)."""

    outcome: Outcome
    account: str
    code: str
    incident_id: str = ""


class SiteHealth(msgspec.Struct, kw_only=True):
    """When a site last proved its line works, and what it last reported."""

    last_test_wall: float | None = None
    last_event_wall: float | None = None
    last_event: str = ""  # "602 Periodic test report (new)"


class PanelAlarm(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /alarms`` body: the Contact ID fields, or ``raw`` (16 digits, hex notation unless ``alphabet``)."""

    account: str | None = None
    event_code: str | int | None = None
    qualifier: int = 1  # 1 new, 3 restore, 6 status
    partition: str | int = 0
    zone_or_user: str | int = 0
    raw: str | None = None
    alphabet: Literal["hex", "dtmf"] = "hex"
    time: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # the panel's clock: the same report again is
    # recognised by it (RFC 3339 with an offset)


class BadBody(Exception):
    """A panel API body that is not a Contact ID report (the text is the 400 reply)."""


# --- the pure part -------------------------------------------------------------------------------


def classify(event: ContactIdEvent, site: Site | None, incident_categories: Iterable[str]) -> Action:
    """What an event calls for, by the table in the module docstring."""
    if site is None:
        return "unknown"
    if is_test(event):
        return "test"
    if event.category not in incident_categories and not is_unknown_alarm(event):
        return "note"
    return "restore" if is_restore(event) else "alarm"


def site_location(site: Site) -> Location:
    """The school as a location candidate: its registered address and coordinates."""
    return Location(source="directory", shape="point", lat=site.lat, lon=site.lon, address=site.address,
                    method="alarm-site")


def event_data(event: ContactIdEvent, site: Site, *, via: str, calling_from: str = "", file: str = "") -> dict[
        str, Value]:
    """Timeline data of one panel event: the site, the panel's zone or user, the code and the raw digits."""
    return {
        "account": event.account,
        "site_kk": site.name_kk,
        "site_ru": site.name_ru,
        "address": site.address,
        "zone": site.zone,
        "event_code": event.code,
        "event_description": event.description,
        "event_category": event.category,
        "qualifier": event.qualifier,
        "partition": event.partition,
        "zone_or_user": event.zone_or_user,
        "contact_id": event.raw,
        "via": via,
        "calling_from": calling_from,
        "file": file,
    }


def panel_event(body: bytes) -> ContactIdEvent:
    """Decode a ``POST /alarms`` body: JSON ``PanelAlarm``, or the 16 digits bare or as a JSON string.
    Raises ``BadBody``."""
    return panel_report(body)[0]


def panel_report(body: bytes) -> tuple[ContactIdEvent, str]:
    """``panel_event``, with the panel's time of the event for its replay key ("" when it gave none)."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise BadBody("empty body: send JSON {account, event_code, qualifier, partition, zone_or_user} "
                      "or the 16-digit Contact ID message")
    if text.startswith('"'):  # the message as a JSON string
        try:
            return _parse_raw(msgspec.json.decode(text, type=str), "hex"), ""
        except msgspec.DecodeError as exc:
            raise BadBody(f"body is not a valid JSON string: {exc}") from exc
    if not text.startswith("{"):
        return _parse_raw(text, "hex"), ""
    try:
        report = msgspec.json.decode(text, type=PanelAlarm)
    except msgspec.ValidationError as exc:
        raise BadBody(f"invalid alarm report: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadBody(f"body is not valid JSON: {exc}") from exc
    return _report_event(report), replay.panel_time(report.time) if report.time else ""


def _report_event(report: PanelAlarm) -> ContactIdEvent:
    if report.raw is not None:
        return _parse_raw(report.raw, report.alphabet)
    if report.account is None or report.event_code is None:
        raise BadBody("give either raw (the 16-digit message) or at least account and event_code")
    qualifier = QUALIFIER_DIGITS.get(report.qualifier)
    if qualifier is None:
        raise BadBody(f"qualifier {report.qualifier} must be 1 (new), 3 (restore) or 6 (status)")
    try:
        message = encode(report.account, report.event_code, qualifier, report.partition, report.zone_or_user,
                         alphabet="hex")
    except ContactIdError as exc:
        raise BadBody(str(exc)) from exc
    return parse(message, alphabet="hex")


def _parse_raw(digits: str, alphabet: Literal["hex", "dtmf"]) -> ContactIdEvent:
    try:
        return parse("".join(digits.split()), alphabet=alphabet)
    except ContactIdError as exc:
        raise BadBody(str(exc)) from exc


def pending_files(spool: Path, settled_before: float) -> list[Path]:
    """AlarmReceiver's event files in ``spool`` last written before ``settled_before``, oldest first."""
    found = []
    with os.scandir(spool) as entries:
        for entry in entries:
            if entry.name.startswith("event-") and entry.is_file(follow_symlinks=False):
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if mtime <= settled_before:
                    found.append((mtime, Path(entry.path)))
    return [path for _, path in sorted(found)]


def prepare_spool(spool: Path) -> None:
    """Create the spool with done/ and bad/. Run as root, the spool takes its parent's owner: the
    parent is the Asterisk instance's spool and Asterisk (a user of its own) must write here."""
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "done").mkdir(exist_ok=True)
    (spool / "bad").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        parent = spool.parent.stat()
        os.chown(spool, parent.st_uid, parent.st_gid)


def file_away(path: Path, kind: Literal["done", "bad"], reason: str = "") -> Path:
    """Move a handled file into done/ or bad/ under a name that cannot collide (Asterisk reuses
    names once the spool no longer holds them); a bad file gets a ``.why`` note beside it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.parent / kind / f"{stamp}-{path.name}"
    target.parent.mkdir(exist_ok=True)
    if reason:
        target.with_name(target.name + ".why").write_text(reason + "\n", encoding="utf-8")
    os.replace(path, target)
    return target


# --- the driver ----------------------------------------------------------------------------------


class AlarmIntake:
    """Alarm panels into incidents. Owns nothing but its spool files; the desk owns the incidents.

    ``spool_dir`` is AlarmReceiver's ``eventspooldir`` as seen from the gateway's host (Asterisk
    may live in a chroot). Raises ``ConfigError`` if the site registry cannot be loaded.
    """

    def __init__(self, cfg: AlarmConfig, desk: Desk, spool_dir: Path, sites: Sites | None = None) -> None:
        self.cfg = cfg
        self.desk = desk
        self.spool_dir = Path(spool_dir)
        self.sites = sites if sites is not None else load_sites(project_path(cfg.sites_file))
        self.counts: dict[str, int] = {}
        self._open: dict[str, str] = {}  # account -> its newest alarm incident
        self._health: dict[str, SiteHealth] = {}
        self._lock = trio.Lock()  # one event at a time: the spool and the API must not both open one
        self._stuck: set[Path] = set()  # handled but could not be moved: never handled twice


    def site_health(self) -> dict[str, SiteHealth]:
        """Per registered account: last test report and last event (None until the site reports)."""
        return {account: self._health.get(account, SiteHealth()) for account in self.sites.by_account}

    def statistics(self) -> dict[str, int]:
        return dict(self.counts)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch the spool until cancelled; started once the spool exists and Asterisk may write to it."""
        if not self.cfg.enabled:
            task_status.started()
            return
        await trio.to_thread.run_sync(prepare_spool, self.spool_dir)
        log.info("alarm intake: %d sites, watching %s", len(self.sites), self.spool_dir)
        task_status.started()
        while True:
            await self.scan()
            await trio.sleep(self.cfg.poll_s)

    async def scan(self) -> int:
        """Handle every settled event file in the spool once; returns how many files left the spool."""
        cutoff = time.time() - self.cfg.settle_s
        paths = await trio.to_thread.run_sync(pending_files, self.spool_dir, cutoff)
        moved = 0
        for path in paths:
            if path not in self._stuck and await self._take_file(path):
                moved += 1
        return moved

    async def handle(self, event: ContactIdEvent, *, via: str, calling_from: str = "", file: str = "",
                     reported_at: str = "") -> Handled:
        """Apply one Contact ID event (see the module docstring) stamped ``reported_at`` by the receiver or
        the panel ("" if nobody did). Raises ``StoreError`` if it could not be stored."""
        site = self.sites.get(event.account)
        action = classify(event, site, self.cfg.incident_categories)
        self.count(action)
        if site is None:
            log.error("alarm from unknown account %s (%s, %s via %s%s): no incident", event.account, event.code,
                      event.description, via, f", line {calling_from}" if calling_from else "")
            return Handled(outcome="unknown_account", account=event.account, code=event.code)
        now = time.time()
        health = self._health.setdefault(site.account, SiteHealth())
        health.last_event_wall, health.last_event = now, f"{event.code} {event.description} ({event.qualifier})"
        data = event_data(event, site, via=via, calling_from=calling_from, file=file)
        actor = f"panel:{site.account}"
        if action == "test":
            health.last_test_wall = now
            log.info("alarm test report from %s (%s): %s", site.account, site.name_ru, event.description)
            return Handled(outcome="test", account=site.account, code=event.code)
        if action == "note":
            log.log(logging.INFO if is_known(event) else logging.WARNING, "alarm panel %s (%s): %s, %s (%s): "
                    "no incident", site.account, site.name_ru, event.description, event.qualifier, event.raw)
            return Handled(outcome="noted", account=site.account, code=event.code)
        key = replay.contact_id(event, reported_at)
        async with self._lock:
            if await self.desk.seen(key):
                self.count("replayed")
                log.info("alarm from %s (%s via %s) was already taken: %s", site.account, event.description, via, key)
                return Handled(outcome="replayed", account=site.account, code=event.code)
            if action == "restore":
                return await self._restore(site, event, data, actor, now, key)
            return await self._alarm(site, event, data, actor, calling_from, now, key)

    async def _alarm(self, site: Site, event: ContactIdEvent, data: dict[str, Value], actor: str,
                     calling_from: str, now: float, key: str) -> Handled:
        incident = await self._open_incident(site.account, now, repeat=True)
        if incident is not None:
            await self.desk.record_report(incident.id, "alarm_repeated", seen_key=key, actor=actor,
                                          **data)  # type: ignore[arg-type]
            log.warning("alarm repeated at %s (%s): %s on incident %s", site.account, site.name_ru,
                        event.description, incident.id)
            return Handled(outcome="repeated", account=site.account, code=event.code, incident_id=incident.id)
        incident = await self.desk.open(service=self.cfg.service, source="alarm", caller=no_caller(calling_from),
                                        kind="alarm_received", actor=actor, category=self.cfg.category,
                                        priority=self.cfg.priority, reporter=site.account,
                                        locations=[site_location(site)], seen_key=key,
                                        **data)  # type: ignore[arg-type]
        self._open[site.account] = incident.id
        log.warning("ALARM %s at %s (%s, %s): incident %s", event.description, site.account, site.name_ru,
                    site.address, incident.id)
        return Handled(outcome="opened", account=site.account, code=event.code, incident_id=incident.id)

    async def _restore(self, site: Site, event: ContactIdEvent, data: dict[str, Value], actor: str,
                       now: float, key: str) -> Handled:
        incident = await self._open_incident(site.account, now, repeat=False)
        if incident is None:
            log.info("alarm restore from %s (%s): %s, but no open incident for it", site.account, site.name_ru,
                     event.description)
            return Handled(outcome="restore_unmatched", account=site.account, code=event.code)
        await self.desk.record_report(incident.id, "alarm_restored", seen_key=key, actor=actor,
                                      **data)  # type: ignore[arg-type]
        log.info("alarm restored at %s (%s): %s on incident %s", site.account, site.name_ru, event.description,
                 incident.id)
        return Handled(outcome="restored", account=site.account, code=event.code, incident_id=incident.id)

    async def _open_incident(self, account: str, now: float, *, repeat: bool) -> Incident | None:
        """The account's newest incident that is not closed: for a repeat, with an alarm within the
        dedupe window; for a restore, created within the restore window. Memory first, then the
        store (after a restart the memory is empty)."""
        window = self.cfg.dedupe_window_s if repeat else self.cfg.restore_window_s
        candidates = [self._open[account]] if account in self._open else await self._stored(account, now - window)
        for incident_id in candidates:
            try:
                incident = await self.desk.get(incident_id)
            except NotFound:
                continue
            if incident.status == "closed" or incident.reporter != account:
                continue
            since = _last_alarm_wall(incident) if repeat else incident.created_wall
            if now - since <= window:
                return incident
            return None  # the newest one is too old; older ones are older still
        return None

    async def _stored(self, account: str, since_wall: float) -> list[str]:
        summaries = await self.desk.store.recent(limit=1000, since_wall=since_wall)
        ids = [s.id for s in summaries if s.source == "alarm"]
        found = []
        for incident_id in ids:  # newest first
            incident = await self.desk.get(incident_id)
            if incident.reporter == account:
                found.append(incident_id)
        return found[:1]

    async def _take_file(self, path: Path) -> bool:
        try:
            call = await trio.to_thread.run_sync(read_event_file, path)
        except FileNotFoundError:
            return False  # gone since the listing
        except EventFileError as exc:
            log.error("alarm event file %s refused: %s", path, exc)
            return await self._file_away(path, "bad", str(exc))
        except OSError as exc:
            log.error("alarm event file %s cannot be read (%s); left in the spool", path, exc)
            self._stuck.add(path)
            return False
        try:
            problems = await self._handle_call(call, path.name)
        except StoreError as exc:
            log.error("alarm event file %s: the store failed (%s); left in the spool to try again", path, exc)
            return False
        return await self._file_away(path, "bad" if problems else "done", "\n".join(problems))

    async def _handle_call(self, call: ReceivedCall, name: str) -> list[str]:
        problems = []
        for line in call.errors:
            log.error("alarm event file %s: refused %s", name, line)
            self.count("refused")
            problems.append(line)
        for event in call.events:
            handled = await self.handle(event, via="asterisk", calling_from=call.calling_from, file=name,
                                        reported_at=call.timestamp)
            if handled.outcome == "unknown_account":
                problems.append(f"{event.raw}: account {event.account} is not in the site registry")
        return problems

    async def _file_away(self, path: Path, kind: Literal["done", "bad"], reason: str) -> bool:
        try:
            await trio.to_thread.run_sync(file_away, path, kind, reason)
        except OSError as exc:
            log.error("alarm event file %s handled but cannot be moved to %s/ (%s); it will not be read again "
                      "by this process", path, kind, exc)
            self._stuck.add(path)
            return False
        if kind == "bad":
            self.count("bad_files")
        return True


    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def _last_alarm_wall(incident: Incident) -> float:
    walls = [e.wall for e in incident.timeline if e.kind in ALARM_KINDS]
    return max(walls, default=incident.created_wall)
