"""The warnings store: recipients, alerts with their audit trail, and the durable outbox of jobs.

A job is one message for one target on one channel: (alert, channel, target). ``target`` is a
recipient id (> 0), 0 for a channel-wide post (the public Telegram channel, the CAP feed), or
-(i + 1) for the i-th zone of the alert (sirens). Its idempotency key is derived from that
triple, so it is the same after any restart. A job moves queued → sending → sent/delivered or
failed (or moved, when its recipient failed over to another channel); "sending" is written
before a message leaves, so after a crash exactly the jobs whose outcome is unknown are known.

Kept in its own SQLite file, apart from the incident store: a million-row fan-out must never
make a 112 caller's incident write wait for the disk. Blocking; run it on one worker thread.

A late receipt may carry a replay key (a Twilio status callback's SID and status): the key goes in
``seen`` in the transaction that applies the receipt, so a callback sent again (or an old "sent"
after "delivered") changes nothing. Keys are kept as long as the incident store keeps its own.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import msgspec

from gateway.errors import Conflict, NotFound, StoreError
from gateway.incident.store import SEEN_RETENTION_S, connect
from gateway.warning.recipients import Recipient
from gateway.warning.records import (
    JOB_STATE_NAMES,
    TERMINAL,
    AlertRecord,
    AuditEvent,
    ChannelProgress,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS recipients (
    id INTEGER PRIMARY KEY,
    ref TEXT UNIQUE NOT NULL,
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    telegram TEXT NOT NULL,
    language TEXT NOT NULL,
    channels TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recipient_zones (
    recipient_id INTEGER NOT NULL,
    zone TEXT NOT NULL,
    PRIMARY KEY (recipient_id, zone)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recipient_zones_zone ON recipient_zones(zone);
CREATE TABLE IF NOT EXISTS alerts (
    no INTEGER PRIMARY KEY,
    id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    alert_no INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (alert_no, seq)
);
CREATE TABLE IF NOT EXISTS fanout (
    alert_no INTEGER PRIMARY KEY,
    cursor INTEGER NOT NULL,
    done INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    alert_no INTEGER NOT NULL,
    channel TEXT NOT NULL,
    target INTEGER NOT NULL,
    prio INTEGER NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    provider_id TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (alert_no, channel, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(channel, prio, due) WHERE state = 0;
CREATE INDEX IF NOT EXISTS jobs_sending ON jobs(channel) WHERE state = 1;
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_wall ON seen(wall);
"""

Job = tuple[int, str, int]  # (alert_no, channel, target)
RecipientRow = tuple[int, str, str, str, str, str]  # id, phone, email, telegram, language, channels
Route = Callable[[RecipientRow], str | None]
AUDIENCE_ADDRESS = {"sms": "phone", "email": "email", "telegram": "telegram", "voice": "phone"}  # kind -> column
_encode = msgspec.json.Encoder().encode
_decode_alert = msgspec.json.Decoder(AlertRecord).decode
_decode_audit = msgspec.json.Decoder(AuditEvent).decode
_decode_recipient = msgspec.json.Decoder(Recipient).decode


def idempotency_key(alert_id: str, channel: str, target: int) -> str:
    return f"{alert_id}/{channel}/{target}"


def parse_key(key: str) -> tuple[str, int] | None:
    """(alert id, target) of an idempotency key, or None if it is not one of ours."""
    parts = key.split("/")
    if len(parts) != 3:
        return None
    try:
        return parts[0], int(parts[2])
    except ValueError:
        return None


class Outbox:
    """Blocking SQLite implementation; one connection guarded by a lock."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._db = connect(self.path, synchronous, SCHEMA, "warnings store")
        self._lock = threading.Lock()
        self._synchronous = synchronous
        self._churn = False
        self._counting: sqlite3.Connection | None = None  # audience counts: their own reader (WAL)
        self._counting_lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._counting_lock:
            if self._counting is not None:
                self._counting.close()

    def _tx(self, fn: Callable[[sqlite3.Connection], object], *, churn: bool = False) -> object:
        """Run ``fn`` in one write transaction. ``churn`` transactions (claims, outcomes, fan-out
        chunks) are committed without waiting for the disk: WAL keeps them across a crash of the
        gateway, and losing the last of them to a power cut only makes a job go out again."""
        with self._lock:
            if churn != self._churn:
                self._db.execute(f"PRAGMA synchronous={'NORMAL' if churn else self._synchronous}")
                self._churn = churn
            try:
                self._db.execute("BEGIN IMMEDIATE")
                result = fn(self._db)
                self._db.execute("COMMIT")
                return result
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"warnings store write failed: {exc}") from exc
                raise

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"warnings store read failed: {exc}") from exc

    # -- recipients -------------------------------------------------------------------------

    def put_recipients(self, recipients: Iterable[Recipient]) -> int:
        """Insert or replace recipients by ``ref``, in one transaction. Returns how many."""
        rows = list(recipients)

        def write(db: sqlite3.Connection) -> int:
            db.executemany(
                "INSERT INTO recipients(ref, phone, email, telegram, language, channels, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ref) DO UPDATE SET phone=excluded.phone, "
                "email=excluded.email, telegram=excluded.telegram, language=excluded.language, "
                "channels=excluded.channels, doc=excluded.doc",
                [(r.ref, r.phone, r.email, r.telegram, r.language, ";".join(r.channels), _encode(r)) for r in rows])
            ids = dict(db.execute("SELECT ref, id FROM recipients WHERE ref IN (SELECT value FROM json_each(?))",
                                  (_encode([r.ref for r in rows]),)).fetchall())
            db.executemany("DELETE FROM recipient_zones WHERE recipient_id = ?", [(ids[r.ref],) for r in rows])
            db.executemany("INSERT OR IGNORE INTO recipient_zones(recipient_id, zone) VALUES (?, ?)",
                           [(ids[r.ref], z) for r in rows for z in r.zones])
            return len(rows)

        return int(self._tx(write))  # type: ignore[call-overload]

    def delete_recipient(self, ref: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT id FROM recipients WHERE ref = ?", (ref,)).fetchone()
            if row is None:
                raise NotFound(f"no recipient {ref!r}")
            db.execute("DELETE FROM recipient_zones WHERE recipient_id = ?", row)
            db.execute("DELETE FROM recipients WHERE id = ?", row)

        self._tx(write)

    def get_recipient(self, ref: str) -> Recipient:
        rows = self._read("SELECT doc FROM recipients WHERE ref = ?", (ref,))
        if not rows:
            raise NotFound(f"no recipient {ref!r}")
        return _decode_recipient(rows[0][0])  # type: ignore[arg-type]

    def recipients(self, after_ref: str = "", limit: int = 100) -> list[Recipient]:
        rows = self._read("SELECT doc FROM recipients WHERE ref > ? ORDER BY ref LIMIT ?", (after_ref, limit))
        return [_decode_recipient(r[0]) for r in rows]  # type: ignore[arg-type]

    def count_recipients(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM recipients")[0][0])  # type: ignore[call-overload]

    def count_audience(self, zones: Sequence[str], kinds: Sequence[str]) -> tuple[dict[str, int], int]:
        """Recipients of ``zones`` reachable on each of ``kinds`` (preferred, and its address given), and how
        many distinct ones at least one of them reaches. One query: the zone index gives the ids (a
        recipient of several of the zones counts once), grouped by what decides reach (a few dozen groups).
        Safe to call from any thread, beside the writer."""
        sql = ("SELECT channels, phone <> '', email <> '', telegram <> '', COUNT(*) FROM recipients WHERE id IN "
               "(SELECT recipient_id FROM recipient_zones WHERE zone IN (SELECT value FROM json_each(?))) "
               "GROUP BY 1, 2, 3, 4")
        with self._counting_lock:  # its own connection: a count neither waits for nor holds up a fan-out
            if self._counting is None:
                self._counting = connect(self.path, self._synchronous, SCHEMA, "warnings store")
            try:
                rows = self._counting.execute(sql, (_encode(list(zones)),)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"warnings store read failed: {exc}") from exc
        counts, total = {k: 0 for k in kinds if k in AUDIENCE_ADDRESS}, 0
        for channels, phone, email, telegram, count in rows:
            has = {"phone": phone, "email": email, "telegram": telegram}
            reached = [k for k in str(channels).split(";") if k in counts and has[AUDIENCE_ADDRESS[k]]]
            for kind in reached:
                counts[kind] += int(count)  # type: ignore[call-overload]
            total += int(count) if reached else 0  # type: ignore[call-overload]
        return counts, total

    def recipient_rows(self, ids: Sequence[int]) -> dict[int, RecipientRow]:
        rows = self._read("SELECT id, phone, email, telegram, language, channels FROM recipients "
                          "WHERE id IN (SELECT value FROM json_each(?))", (_encode(list(ids)),))
        return {int(r[0]): r for r in rows}  # type: ignore[misc, call-overload]

    # -- alerts -----------------------------------------------------------------------------

    def insert_alert(self, record: AlertRecord, event: AuditEvent) -> None:
        def write(db: sqlite3.Connection) -> None:
            try:
                cur = db.execute("INSERT INTO alerts(id, state, created, doc) VALUES (?, ?, ?, ?)",
                                 (record.id, record.state, record.created_at, _encode(record)))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"alert {record.id} already exists") from exc
            db.execute("INSERT INTO audit(alert_no, seq, doc) VALUES (?, 0, ?)", (cur.lastrowid, _encode(event)))

        self._tx(write)

    def update_alert(self, record: AlertRecord, event: AuditEvent, *, expect_state: str | None = None) -> None:
        """Replace an alert's record and append to its audit trail. With ``expect_state``, the
        write happens only if the stored state is still that one (two officers racing)."""

        def write(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT no, state FROM alerts WHERE id = ?", (record.id,)).fetchone()
            if row is None:
                raise NotFound(f"no alert {record.id!r}")
            if expect_state is not None and row[1] != expect_state:
                raise Conflict(f"alert {record.id} is {row[1]}, not {expect_state}")
            db.execute("UPDATE alerts SET state = ?, doc = ? WHERE no = ?", (record.state, _encode(record), row[0]))
            _append_audit(db, row[0], event)

        self._tx(write)

    def audit(self, alert_id: str, event: AuditEvent) -> None:
        self._tx(lambda db: _append_audit(db, self._no(db, alert_id), event))

    def get_alert(self, alert_id: str) -> tuple[int, AlertRecord]:
        rows = self._read("SELECT no, doc FROM alerts WHERE id = ?", (alert_id,))
        if not rows:
            raise NotFound(f"no alert {alert_id!r}")
        return int(rows[0][0]), _decode_alert(rows[0][1])  # type: ignore[call-overload, arg-type]

    def alert_by_no(self, alert_no: int) -> AlertRecord:
        rows = self._read("SELECT doc FROM alerts WHERE no = ?", (alert_no,))
        if not rows:
            raise NotFound(f"no alert #{alert_no}")
        return _decode_alert(rows[0][0])  # type: ignore[arg-type]

    def alerts(self, limit: int = 100, states: Sequence[str] = ()) -> list[AlertRecord]:
        sql = "SELECT doc FROM alerts"
        args: list[object] = []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args.extend(states)
        rows = self._read(sql + " ORDER BY no DESC LIMIT ?", [*args, limit])
        return [_decode_alert(r[0]) for r in rows]  # type: ignore[arg-type]

    def audit_trail(self, alert_id: str) -> list[AuditEvent]:
        rows = self._read("SELECT doc FROM audit WHERE alert_no = (SELECT no FROM alerts WHERE id = ?) ORDER BY seq",
                          (alert_id,))
        return [_decode_audit(r[0]) for r in rows]  # type: ignore[arg-type]

    @staticmethod
    def _no(db: sqlite3.Connection, alert_id: str) -> int:
        row = db.execute("SELECT no FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        return int(row[0])

    # -- fan-out: turning the audience into jobs ------------------------------------------------

    def start_fanout(self, alert_no: int, first_jobs: Sequence[tuple[str, int, int]], now: float) -> None:
        """Record that an alert's fan-out began, with its first jobs (sirens, channel posts)."""

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR IGNORE INTO fanout(alert_no, cursor, done) VALUES (?, 0, 0)", (alert_no,))
            db.executemany("INSERT OR IGNORE INTO jobs(alert_no, channel, target, prio, state, due) "
                           "VALUES (?, ?, ?, ?, 0, ?)", [(alert_no, c, t, p, now) for c, t, p in first_jobs])

        self._tx(write)

    def pending_fanouts(self) -> list[tuple[int, int]]:
        """(alert_no, cursor) of every fan-out not yet fully turned into jobs."""
        return [(int(a), int(c)) for a, c in self._read("SELECT alert_no, cursor FROM fanout WHERE done = 0")]  # type: ignore[call-overload]

    def has_fanout(self, alert_no: int) -> bool:
        return bool(self._read("SELECT 1 FROM fanout WHERE alert_no = ?", (alert_no,)))

    def stop_chain(self, root: str, keep: str) -> tuple[list[int], int]:
        """Stop every message of the chain rooted at ``root`` except ``keep``: fan-outs end and
        queued jobs are withdrawn, in one transaction. Returns (alert numbers, jobs withdrawn)."""

        def write(db: sqlite3.Connection) -> tuple[list[int], int]:
            nos = [int(r[0]) for r in db.execute(
                "SELECT no FROM alerts WHERE (id = ? OR json_extract(doc, '$.root') = ?) AND id <> ?",
                (root, root, keep))]
            withdrawn = 0
            for no in nos:
                db.execute("UPDATE fanout SET done = 1 WHERE alert_no = ?", (no,))
                withdrawn += db.execute("UPDATE jobs SET state = 6 WHERE alert_no = ? AND state = 0", (no,)).rowcount
            return nos, withdrawn

        return self._tx(write)  # type: ignore[return-value]

    def fanout_chunk(self, alert_no: int, zones: Sequence[str], root: str | None, cursor: int, limit: int,
                     route: Route, now: float) -> tuple[int, int, bool]:
        """Turn the next ``limit`` recipients after ``cursor`` into queued jobs and advance the
        cursor in the same transaction, so a crash neither skips nor doubles anyone.
        A Cancel (``root``) reaches the recipients its chain reached or was reaching when it
        was withdrawn (an all-clear to one extra person beats one missed).
        Returns (new cursor, jobs created, finished)."""

        def write(db: sqlite3.Connection) -> tuple[int, int, bool]:
            rows = self._audience(db, zones, root, cursor, limit)
            jobs = []
            for row in rows:
                channel = route(row)
                if channel is not None:
                    jobs.append((alert_no, channel, row[0], 1, now))
            db.executemany("INSERT OR IGNORE INTO jobs(alert_no, channel, target, prio, state, due) "
                           "VALUES (?, ?, ?, ?, 0, ?)", jobs)
            new_cursor = int(rows[-1][0]) if rows else cursor
            done = len(rows) < limit
            db.execute("UPDATE fanout SET cursor = ?, done = ? WHERE alert_no = ?", (new_cursor, int(done), alert_no))
            return new_cursor, len(jobs), done

        return self._tx(write, churn=True)  # type: ignore[return-value]

    @staticmethod
    def _audience(db: sqlite3.Connection, zones: Sequence[str], root: str | None, cursor: int,
                  limit: int) -> list[RecipientRow]:
        cols = "r.id, r.phone, r.email, r.telegram, r.language, r.channels"
        if root is not None:
            sql = (f"SELECT {cols} FROM recipients r WHERE r.id > ? AND r.id IN "
                   "(SELECT target FROM jobs WHERE target > 0 AND state IN (1, 2, 3) AND alert_no IN "
                   "(SELECT no FROM alerts WHERE (id = ? OR json_extract(doc, '$.root') = ?) "
                   "AND json_extract(doc, '$.cap.msg_type') <> 'Cancel')) ORDER BY r.id LIMIT ?")
            return db.execute(sql, (cursor, root, root, limit)).fetchall()
        sql = (f"SELECT {cols} FROM recipients r WHERE r.id > ? AND EXISTS (SELECT 1 FROM recipient_zones z "
               "WHERE z.recipient_id = r.id AND z.zone IN (SELECT value FROM json_each(?))) ORDER BY r.id LIMIT ?")
        return db.execute(sql, (cursor, _encode(list(zones)), limit)).fetchall()

    # -- delivery -------------------------------------------------------------------------------

    def claim(self, channel: str, limit: int, now: float) -> list[tuple[int, int, int]]:
        """Mark up to ``limit`` due jobs of a channel as sending and return (alert_no, target, attempts)."""

        def write(db: sqlite3.Connection) -> list[tuple[int, int, int]]:
            rows = db.execute("SELECT alert_no, target, attempts FROM jobs WHERE channel = ? AND state = 0 "
                              "AND due <= ? ORDER BY prio, due LIMIT ?", (channel, now, limit)).fetchall()
            db.executemany("UPDATE jobs SET state = 1, attempts = attempts + 1 WHERE alert_no = ? AND channel = ? "
                           "AND target = ?", [(a, channel, t) for a, t, _ in rows])
            return [(a, t, n + 1) for a, t, n in rows]

        return self._tx(write, churn=True)  # type: ignore[return-value]

    def finish(self, channel: str, results: Sequence[tuple[int, int, int, str, str, float]],
               moves: Sequence[tuple[int, str, int]] = (), now: float = 0.0) -> None:
        """Record outcomes: (alert_no, target, state, provider_id, error, due) per job, and
        queue fail-over jobs (alert_no, new channel, target) in the same transaction."""

        def write(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE jobs SET state = ?, provider_id = ?, error = ?, due = ? "
                           "WHERE alert_no = ? AND channel = ? AND target = ?",
                           [(s, p, e, d, a, channel, t) for a, t, s, p, e, d in results])
            db.executemany("INSERT OR IGNORE INTO jobs(alert_no, channel, target, prio, state, due) "
                           "VALUES (?, ?, ?, 1, 0, ?)", [(a, c, t, now) for a, c, t in moves])

        self._tx(write, churn=True)

    def update_by_keys(self, channel: str, receipts: Sequence[tuple[str, int, int, str, str]]
                       ) -> tuple[int, list[str]]:
        """Late receipts (status callbacks, SMSC delivery receipts) as (alert id, target, state,
        error, replay key), in one transaction; only jobs already handed on change, and a receipt
        whose replay key ("" for none) was taken before changes nothing. Returns the jobs updated
        and the replay keys found taken."""

        def write(db: sqlite3.Connection) -> tuple[int, list[str]]:
            now, fresh, replayed = time.time(), list[tuple[str, int, int, str, str]](), list[str]()
            for receipt in receipts:
                key = receipt[4]
                if key and not db.execute("INSERT OR IGNORE INTO seen (key, wall) VALUES (?, ?)", (key, now)).rowcount:
                    replayed.append(key)
                else:
                    fresh.append(receipt)
            db.execute("DELETE FROM seen WHERE wall < ?", (now - SEEN_RETENTION_S,))
            ids = {alert_id for alert_id, _, _, _, _ in fresh}
            nos = dict(db.execute("SELECT id, no FROM alerts WHERE id IN (SELECT value FROM json_each(?))",
                                  (_encode(sorted(ids)),)).fetchall())
            cur = db.executemany("UPDATE jobs SET state = ?, error = ? WHERE alert_no = ? AND channel = ? "
                                 "AND target = ? AND state IN (1, 2, 3)",
                                 [(state, error, nos[alert_id], channel, target)
                                  for alert_id, target, state, error, _ in fresh if alert_id in nos])
            return cur.rowcount, replayed

        return self._tx(write, churn=True)  # type: ignore[return-value]

    def sending(self, channel: str) -> list[tuple[int, int, int]]:
        """Jobs whose outcome is unknown (in flight when the gateway stopped)."""
        return [tuple(r) for r in self._read(  # type: ignore[misc]
            "SELECT alert_no, target, attempts FROM jobs WHERE channel = ? AND state = 1", (channel,))]

    def release(self, channel: str, jobs: Sequence[tuple[int, int]], due: float) -> None:
        """Put claimed jobs back unsent, without counting the attempt (their channel is down)."""
        self._tx(lambda db: db.executemany(
            "UPDATE jobs SET state = 0, attempts = MAX(0, attempts - 1), due = ? WHERE alert_no = ? AND channel = ? "
            "AND target = ? AND state = 1", [(due, a, channel, t) for a, t in jobs]), churn=True)

    def requeue(self, channel: str, jobs: Sequence[tuple[int, int]], now: float) -> None:
        self._tx(lambda db: db.executemany(
            "UPDATE jobs SET state = 0, due = ? WHERE alert_no = ? AND channel = ? AND target = ? AND state = 1",
            [(now, a, channel, t) for a, t in jobs]))

    def withdraw(self, alert_no: int) -> int:
        """Withdraw every job of an alert not yet handed on (a Cancel overtook it)."""
        cur = self._tx(lambda db: db.execute("UPDATE jobs SET state = 6 WHERE alert_no = ? AND state = 0",
                                             (alert_no,)).rowcount)
        return int(cur)  # type: ignore[call-overload]

    def progress(self, alert_no: int) -> dict[str, ChannelProgress]:
        rows = self._read("SELECT channel, state, COUNT(*), SUM(attempts > 1) FROM jobs WHERE alert_no = ? "
                          "GROUP BY channel, state", (alert_no,))
        out: dict[str, ChannelProgress] = {}
        for channel, state, count, retried in rows:
            p = out.setdefault(str(channel), ChannelProgress())
            setattr(p, JOB_STATE_NAMES[int(state)], int(count))  # type: ignore[call-overload]
            p.retried += int(retried or 0)  # type: ignore[call-overload]
        return out

    def unfinished(self, alert_no: int) -> int:
        terminal = ",".join(str(s) for s in TERMINAL)
        return int(self._read(f"SELECT COUNT(*) FROM jobs WHERE alert_no = ? AND state NOT IN ({terminal})",
                              (alert_no,))[0][0])  # type: ignore[call-overload]

    def fanout_done(self, alert_no: int) -> bool:
        rows = self._read("SELECT done FROM fanout WHERE alert_no = ?", (alert_no,))
        return bool(rows and rows[0][0])


def _append_audit(db: sqlite3.Connection, alert_no: int, event: AuditEvent) -> None:
    seq = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM audit WHERE alert_no = ?", (alert_no,)).fetchone()[0]
    db.execute("INSERT INTO audit(alert_no, seq, doc) VALUES (?, ?, ?)", (alert_no, seq, _encode(event)))
