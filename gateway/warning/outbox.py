"""The warnings store: recipients, alerts with their audit trail, and the durable outbox of jobs.

A job is one message for one target on one channel: (alert, channel, target). ``target`` is a
recipient id (> 0), 0 for a channel-wide post (the public Telegram channel, the CAP feed), or
-(i + 1) for the i-th zone of the alert (sirens). Its idempotency key is derived from that
triple, so it is the same after any restart. A job moves queued → sending → sent/delivered or
failed (or moved, when its recipient failed over to another channel); "sending" is written
before a message leaves, so after a crash exactly the jobs whose outcome is unknown are known.

Two backends run the same statements (``Queries``; the fragments that differ are in ``outbox_sql``):
``Outbox``, its own SQLite file apart from the incident store (a million-row fan-out must never make a
112 caller's incident write wait for the disk), and ``outbox_pg.PgOutbox``, PostgreSQL shared by
several gateway nodes. Blocking; run either on one worker thread.

Several nodes (issue 14). A claim locks the jobs it takes (``FOR UPDATE SKIP LOCKED``: two nodes never
take the same job and never wait for each other) and writes the claiming node in ``owner``; a node's
outcomes, releases and requeues touch only jobs it owns, and on start it recovers only its own "sending"
jobs. Each node keeps a liveness lease in ``outbox_nodes`` (``heartbeat``, renewed by ``nodes.Liveness``);
``adopt`` makes a live node the owner of the "sending" jobs of nodes whose lease ended, to recover them
as its own. A fan-out chunk starts from the cursor stored in ``fanout``, locking that row: nodes
advancing the same fan-out take turns and none skips or repeats a chunk. On SQLite all of this is one
node's ("local"), with no locks to take.

A late receipt may carry a replay key (a Twilio status callback's SID and status): the key goes in
``seen`` in the transaction that applies the receipt, so a callback sent again (or an old "sent"
after "delivered") changes nothing. Keys are kept as long as the incident store keeps its own.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.errors import StoreError
from gateway.incident.store import SEEN_RETENTION_S, connect
from gateway.warning.outbox_sql import (
    AUDIENCE_ADDRESS,
    LOCAL,
    Db,
    RecipientRow,
    RecordQueries,
)
from gateway.warning.records import JOB_STATE_NAMES, TERMINAL, ChannelProgress

__all__ = ["AUDIENCE_ADDRESS", "SCHEMA", "Job", "Outbox", "Queries", "RecipientRow", "Route", "idempotency_key",
           "parse_key"]

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
    owner TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (alert_no, channel, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(channel, prio, due) WHERE state = 0;
CREATE INDEX IF NOT EXISTS jobs_sending ON jobs(channel) WHERE state = 1;
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_wall ON seen(wall);
CREATE TABLE IF NOT EXISTS outbox_nodes (
    node TEXT PRIMARY KEY,
    expires_wall REAL NOT NULL
);
"""

Job = tuple[int, str, int]  # (alert_no, channel, target)
FORGET_NODES_S = 24 * 3600.0
Route = Callable[[RecipientRow], str | None]
_QUEUE = ("INSERT INTO jobs(alert_no, channel, target, prio, state, due) VALUES (?, ?, ?, ?, 0, ?)"
          " ON CONFLICT DO NOTHING")


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


class Queries(RecordQueries):
    """The warnings store's statements on any backend (``outbox_sql.Backend`` says what a backend supplies)."""

    # -- fan-out: turning the audience into jobs ------------------------------------------------

    def start_fanout(self, alert_no: int, first_jobs: Sequence[tuple[str, int, int]], now: float) -> None:
        """Record that an alert's fan-out began, with its first jobs (sirens, channel posts)."""

        def write(db: Db) -> None:
            db.execute("INSERT INTO fanout(alert_no, cursor, done) VALUES (?, 0, 0) ON CONFLICT DO NOTHING",
                       (alert_no,))
            db.executemany(_QUEUE, [(alert_no, c, t, p, now) for c, t, p in first_jobs])

        self._tx(write)

    def pending_fanouts(self) -> list[tuple[int, int]]:
        """(alert_no, cursor) of every fan-out not yet fully turned into jobs."""
        return [(int(a), int(c)) for a, c in self._read("SELECT alert_no, cursor FROM fanout WHERE done = 0")]

    def has_fanout(self, alert_no: int) -> bool:
        return bool(self._read("SELECT 1 FROM fanout WHERE alert_no = ?", (alert_no,)))

    def stop_chain(self, root: str, keep: str) -> tuple[list[int], int]:
        """Stop every message of the chain rooted at ``root`` except ``keep``: fan-outs end and
        queued jobs are withdrawn, in one transaction. Returns (alert numbers, jobs withdrawn)."""

        def write(db: Db) -> tuple[list[int], int]:
            nos = [int(r[0]) for r in db.execute(
                f"SELECT no FROM alerts WHERE (id = ? OR {self._doc('root')} = ?) AND id <> ? ORDER BY no",
                (root, root, keep)).fetchall()]
            withdrawn = 0
            for no in nos:
                db.execute("UPDATE fanout SET done = 1 WHERE alert_no = ?", (no,))
                withdrawn += db.execute("UPDATE jobs SET state = 6 WHERE alert_no = ? AND state = 0", (no,)).rowcount
            return nos, withdrawn

        return self._tx(write)  # type: ignore[no-any-return]

    def fanout_chunk(self, alert_no: int, zones: Sequence[str], root: str | None, cursor: int, limit: int,
                     route: Route, now: float) -> tuple[int, int, bool]:
        """Turn the next ``limit`` recipients after the stored cursor into queued jobs and advance the
        cursor in the same transaction, so a crash neither skips nor doubles anyone. ``cursor`` is where
        the caller thinks it is; another node may have moved it on (nodes take turns on the row).
        A Cancel (``root``) reaches the recipients its chain reached or was reaching when it
        was withdrawn (an all-clear to one extra person beats one missed).
        Returns (new cursor, jobs created, finished)."""

        def write(db: Db) -> tuple[int, int, bool]:
            stored = db.execute(f"SELECT cursor, done FROM fanout WHERE alert_no = ?{self.FOR_UPDATE}",
                                (alert_no,)).fetchone()
            if stored is not None and stored[1]:
                return int(stored[0]), 0, True
            at = int(stored[0]) if stored is not None else cursor
            rows = self._audience(db, zones, root, at, limit)
            jobs = []
            for row in rows:
                channel = route(row)
                if channel is not None:
                    jobs.append((alert_no, channel, row[0], 1, now))
            db.executemany(_QUEUE, jobs)
            new_cursor = int(rows[-1][0]) if rows else at
            done = len(rows) < limit
            db.execute("UPDATE fanout SET cursor = ?, done = ? WHERE alert_no = ?", (new_cursor, int(done), alert_no))
            return new_cursor, len(jobs), done

        return self._tx(write, churn=True)  # type: ignore[no-any-return]

    def _audience(self, db: Db, zones: Sequence[str], root: str | None, cursor: int,
                  limit: int) -> list[RecipientRow]:
        cols = "r.id, r.phone, r.email, r.telegram, r.language, r.channels"
        if root is not None:
            sql = (f"SELECT {cols} FROM recipients r WHERE r.id > ? AND r.id IN "
                   "(SELECT target FROM jobs WHERE target > 0 AND state IN (1, 2, 3) AND alert_no IN "
                   f"(SELECT no FROM alerts WHERE (id = ? OR {self._doc('root')} = ?) "
                   f"AND {self._doc('cap', 'msg_type')} <> 'Cancel')) ORDER BY r.id LIMIT ?")
            return db.execute(sql, (cursor, root, root, limit)).fetchall()
        sql = (f"SELECT {cols} FROM recipients r WHERE r.id > ? AND EXISTS (SELECT 1 FROM recipient_zones z "
               f"WHERE z.recipient_id = r.id AND z.zone {self.IN_LIST}) ORDER BY r.id LIMIT ?")
        return db.execute(sql, (cursor, self._list(zones), limit)).fetchall()

    # -- delivery -------------------------------------------------------------------------------

    def claim(self, channel: str, limit: int, now: float) -> list[tuple[int, int, int]]:
        """Mark up to ``limit`` due jobs of a channel as sending by this node and return (alert_no, target,
        attempts). Jobs another node is claiming at the same moment are skipped, not waited for."""
        pick = ("FROM jobs WHERE channel = ? AND state = 0 AND due <= ? ORDER BY prio, due LIMIT ?"
                f"{self.SKIP_LOCKED}")
        mark = "UPDATE jobs SET state = 1, attempts = attempts + 1, owner = ? WHERE "

        def write(db: Db) -> list[tuple[int, int, int]]:
            if self.CLAIM_IN_ONE:
                rows = db.execute(f"{mark}(alert_no, channel, target) IN (SELECT alert_no, channel, target {pick}) "
                                  "RETURNING prio, due, alert_no, target, attempts",
                                  (self.node_id, channel, now, limit)).fetchall()
                return [(int(a), int(t), int(n)) for _, _, a, t, n in sorted(rows)]
            found = db.execute(f"SELECT alert_no, target, attempts {pick}", (channel, now, limit)).fetchall()
            db.executemany(f"{mark}alert_no = ? AND channel = ? AND target = ?",
                           [(self.node_id, a, channel, t) for a, t, _ in found])
            return [(int(a), int(t), int(n) + 1) for a, t, n in found]

        return self._tx(write, churn=True)  # type: ignore[no-any-return]

    def finish(self, channel: str, results: Sequence[tuple[int, int, int, str, str, float]],
               moves: Sequence[tuple[int, str, int]] = (), now: float = 0.0) -> None:
        """Record outcomes: (alert_no, target, state, provider_id, error, due) per job this node owns (one
        another node took over is its to settle), and queue fail-over jobs (alert_no, new channel, target)
        in the same transaction."""

        def write(db: Db) -> None:
            db.executemany("UPDATE jobs SET state = ?, provider_id = ?, error = ?, due = ? "
                           "WHERE alert_no = ? AND channel = ? AND target = ? AND owner = ?",
                           [(s, p, e, d, a, channel, t, self.node_id) for a, t, s, p, e, d in results])
            db.executemany("INSERT INTO jobs(alert_no, channel, target, prio, state, due) VALUES (?, ?, ?, 1, 0, ?) "
                           "ON CONFLICT DO NOTHING", [(a, c, t, now) for a, c, t in moves])

        self._tx(write, churn=True)

    def update_by_keys(self, channel: str, receipts: Sequence[tuple[str, int, int, str, str]]
                       ) -> tuple[int, list[str]]:
        """Late receipts (status callbacks, SMSC delivery receipts) as (alert id, target, state,
        error, replay key), in one transaction; only jobs already handed on change (by whichever node),
        and a receipt whose replay key ("" for none) was taken before changes nothing. Returns the jobs
        updated and the replay keys found taken."""

        def write(db: Db) -> tuple[int, list[str]]:
            now, fresh, replayed = time.time(), list[tuple[str, int, int, str, str]](), list[str]()
            for receipt in receipts:
                key = receipt[4]
                if key and not db.execute("INSERT INTO seen (key, wall) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                          (key, now)).rowcount:
                    replayed.append(key)
                else:
                    fresh.append(receipt)
            db.execute("DELETE FROM seen WHERE wall < ?", (now - SEEN_RETENTION_S,))
            ids = {alert_id for alert_id, _, _, _, _ in fresh}
            nos = dict(db.execute(f"SELECT id, no FROM alerts WHERE id {self.IN_LIST}",
                                  (self._list(sorted(ids)),)).fetchall())
            cur = db.executemany("UPDATE jobs SET state = ?, error = ? WHERE alert_no = ? AND channel = ? "
                                 "AND target = ? AND state IN (1, 2, 3)",
                                 [(state, error, nos[alert_id], channel, target)
                                  for alert_id, target, state, error, _ in fresh if alert_id in nos])
            return max(0, cur.rowcount), replayed

        return self._tx(write, churn=True)  # type: ignore[no-any-return]

    def sending(self, channel: str) -> list[tuple[int, int, int]]:
        """This node's jobs whose outcome is unknown (in flight when it stopped)."""
        return [(int(a), int(t), int(n)) for a, t, n in self._read(
            "SELECT alert_no, target, attempts FROM jobs WHERE channel = ? AND state = 1 AND owner = ?",
            (channel, self.node_id))]

    def release(self, channel: str, jobs: Sequence[tuple[int, int]], due: float) -> None:
        """Put claimed jobs back unsent, without counting the attempt (their channel is down)."""
        self._tx(lambda db: db.executemany(
            "UPDATE jobs SET state = 0, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, due = ? "
            "WHERE alert_no = ? AND channel = ? AND target = ? AND state = 1 AND owner = ?",
            [(due, a, channel, t, self.node_id) for a, t in jobs]), churn=True)

    def requeue(self, channel: str, jobs: Sequence[tuple[int, int]]) -> None:
        """Queue again jobs left "sending" (a crash's, a dead node's), keeping their ``due``: claims go by
        priority, then due, so they go out before the jobs queued after them (with ``due`` set to now, the
        recipients a dead node was warning waited behind the rest of its fan-out: 37-41 s in the drill)."""
        self._tx(lambda db: db.executemany(
            "UPDATE jobs SET state = 0 WHERE alert_no = ? AND channel = ? AND target = ? AND state = 1 AND owner = ?",
            [(a, channel, t, self.node_id) for a, t in jobs]))

    def withdraw(self, alert_no: int) -> int:
        """Withdraw every job of an alert not yet handed on (a Cancel overtook it)."""
        cur = self._tx(lambda db: db.execute("UPDATE jobs SET state = 6 WHERE alert_no = ? AND state = 0",
                                             (alert_no,)).rowcount)
        return int(cur)

    def progress(self, alert_no: int) -> dict[str, ChannelProgress]:
        rows = self._read("SELECT channel, state, COUNT(*), SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END) FROM jobs "
                          "WHERE alert_no = ? GROUP BY channel, state", (alert_no,))
        out: dict[str, ChannelProgress] = {}
        for channel, state, count, retried in rows:
            p = out.setdefault(str(channel), ChannelProgress())
            setattr(p, JOB_STATE_NAMES[int(state)], int(count))
            p.retried += int(retried or 0)
        return out

    def unfinished(self, alert_no: int) -> int:
        terminal = ",".join(str(s) for s in TERMINAL)
        return int(self._read(f"SELECT COUNT(*) FROM jobs WHERE alert_no = ? AND state NOT IN ({terminal})",
                              (alert_no,))[0][0])

    def fanout_done(self, alert_no: int) -> bool:
        rows = self._read("SELECT done FROM fanout WHERE alert_no = ?", (alert_no,))
        return bool(rows and rows[0][0])

    # -- nodes sharing the store ----------------------------------------------------------------

    def heartbeat(self, now: float, lease_s: float) -> None:
        """Renew this node's liveness lease until ``now + lease_s`` (its claims are its own till then), and
        forget nodes silent for a day (a node id is drawn per process: every restart leaves one behind)."""

        def write(db: Db) -> None:
            db.execute("INSERT INTO outbox_nodes (node, expires_wall) VALUES (?, ?) ON CONFLICT (node) DO UPDATE "
                       "SET expires_wall = excluded.expires_wall", (self.node_id, now + lease_s))
            db.execute("DELETE FROM outbox_nodes WHERE expires_wall < ?", (now - FORGET_NODES_S,))

        self._lease_tx(write)

    def _lease_tx(self, fn: Callable[[Db], None]) -> None:
        """The lease's transaction: on a store of its own connection (``outbox_pg``) never behind other work."""
        self._tx(fn, churn=True)

    def adopt(self, channel: str, now: float) -> list[tuple[int, int, int]]:
        """Make this node the owner of the "sending" jobs of ``channel`` whose owner's lease has ended (a
        dead node's unknown outcomes); they are then this node's to recover. Returns them as ``sending``."""

        def write(db: Db) -> list[tuple[int, int, int]]:
            rows = db.execute("SELECT alert_no, target, attempts FROM jobs WHERE channel = ? AND state = 1 "
                              "AND owner <> ? AND owner NOT IN (SELECT node FROM outbox_nodes WHERE expires_wall >= ?)"
                              f"{self.SKIP_LOCKED}", (channel, self.node_id, now)).fetchall()
            db.executemany("UPDATE jobs SET owner = ? WHERE alert_no = ? AND channel = ? AND target = ? AND state = 1",
                           [(self.node_id, a, channel, t) for a, t, _ in rows])
            return [(int(a), int(t), int(n)) for a, t, n in rows]

        return self._tx(write, churn=True)  # type: ignore[no-any-return]


class Outbox(Queries):
    """The warnings store in a SQLite file, for one node ("local"); one connection guarded by a lock."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._db = connect(self.path, synchronous, SCHEMA, "warnings store")
        self._lock = threading.Lock()
        self._synchronous = synchronous
        self._churn = False
        self._counting: sqlite3.Connection | None = None  # audience counts: their own reader (WAL)
        self._counting_lock = threading.Lock()
        self._add_owner()

    def _add_owner(self) -> None:
        """A file from before ``jobs.owner``: add it; its jobs left "sending" are this node's."""
        try:
            if not any(col[1] == "owner" for col in self._db.execute("PRAGMA table_info(jobs)").fetchall()):
                self._tx(lambda db: (db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''"),
                                     db.execute("UPDATE jobs SET owner = ? WHERE state = 1", (LOCAL,))))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open warnings store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._counting_lock:
            if self._counting is not None:
                self._counting.close()

    def _tx(self, fn: Callable[[Db], Any], *, churn: bool = False) -> Any:
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

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"warnings store read failed: {exc}") from exc

    def _count_read(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        with self._counting_lock:  # its own connection: a count neither waits for nor holds up a fan-out
            if self._counting is None:
                self._counting = connect(self.path, self._synchronous, SCHEMA, "warnings store")
            try:
                return self._counting.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"warnings store read failed: {exc}") from exc
