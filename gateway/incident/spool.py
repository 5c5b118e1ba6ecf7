"""PostgreSQL with a local durable spool: calls keep being recorded while the database is unreachable.

``Spooled`` is the incident store a PostgreSQL node runs (``gateway.stores``). A write goes to PostgreSQL;
when PostgreSQL cannot be reached (``StoreUnavailable``: refused, timed out, connection lost) the write is
made durable in a SQLite file on this node instead (the embedded store serves: WAL, full fsync; each write
of a group commit a row of its own, so one refused later is the only one set aside) and the
caller goes on as if PostgreSQL had it: an incident is still committed before its call is answered, on this
node's disk. From then on every write joins the end of the spool, so each incident's changes keep their
order, and ``replay`` (every ``REPLAY_EVERY_S``, on the store's one thread, between writes) moves the spool
into PostgreSQL oldest first, one batch per transaction, deleting each only once PostgreSQL committed it.
Once the spool is empty, writes go to PostgreSQL again. A write that PostgreSQL refuses for what it says
(not for being away) is raised as before, never spooled.

Replay is idempotent: the shared statements are upserts, updates and deletes, except an incident's first
INSERT, which replays as ``ON CONFLICT (id) DO NOTHING`` (a create whose COMMIT was lost may be there
already; the events after it bring its head up to date). A batch PostgreSQL refuses on replay is kept in
``rejected`` with the reason and reported (``problems``), never dropped. Reads go to PostgreSQL only: while
it is away they fail (the console says so) and the calls still in memory are served from there.

Not replay-safe: a batch committed by PostgreSQL whose COMMIT reply was lost *and* which was then spooled
is applied twice; for the shared statements that changes nothing except a call-back's attempt count.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import msgspec
import trio

from gateway.errors import StoreError, StoreUnavailable
from gateway.incident import store
from gateway.incident.store import AsyncStore, Queries, Statement

log = logging.getLogger(__name__)
REPLAY_EVERY_S = 1.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    wall REAL NOT NULL,
    batch BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    wall REAL NOT NULL,
    batch BLOB NOT NULL,
    reason TEXT NOT NULL
);
"""
_FIRST_INSERT = "INSERT INTO incidents ("
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[tuple[str, list[object]]]).decode


def replayable(statements: list[Statement]) -> list[Statement]:
    """A spooled batch as it is replayed: an incident's first INSERT does nothing if it is there already."""
    return [(sql + " ON CONFLICT (id) DO NOTHING" if sql.startswith(_FIRST_INSERT) and "ON CONFLICT" not in sql
             else sql, args) for sql, args in statements]


class Spooled(Queries):
    """``primary`` (a PostgreSQL store) with the spool in the SQLite file at ``path``. Blocking; driven by
    ``AsyncStore`` from its one thread (``replay`` too)."""

    def __init__(self, primary: Queries, path: str | Path) -> None:
        self.primary = primary
        self.seen_retention_s = primary.seen_retention_s
        self.shared = primary.shared  # its statements are PostgreSQL's
        self.path = Path(path)
        self._db = store.connect(self.path, "FULL", SCHEMA, "spool")
        self._lock = threading.Lock()
        self.away_since: float | None = None  # wall clock of the first write PostgreSQL could not take
        self.last_error = ""
        self.spooled = self._count("spool")
        self.rejected = self._count("rejected")

    # --- the connection: writes spool when PostgreSQL is away, the rest is PostgreSQL's -------------------

    def write(self, statements: list[Statement]) -> None:
        self.write_many([statements])

    def write_many(self, writes: list[list[Statement]]) -> None:
        """A group commit to PostgreSQL, or each write of it into the spool on its own (so that one PostgreSQL
        refuses on replay is the only one set aside)."""
        if not self.spooled:
            try:
                self.primary.write_many(writes)
                return
            except StoreUnavailable as exc:
                self._away(exc)
        self._spool(*writes)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return self.primary._read(sql, args)

    def apply_schema(self, schema: str) -> None:
        self.primary.apply_schema(schema)

    def close(self) -> None:
        self.primary.close()
        with self._lock:
            self._db.close()

    def create_again(self, incident_id: str, channel_id: str, fresh: list[Statement], whole: list[Statement]) -> None:
        if self.spooled:  # PostgreSQL is away: the spool replays ``fresh`` idempotently
            self._spool(fresh)
            return
        try:
            self.primary.create_again(incident_id, channel_id, fresh, whole)
        except StoreUnavailable as exc:
            self._away(exc)
            self._spool(fresh)

    # --- the spool ----------------------------------------------------------------------------------------

    def replay(self, limit: int = 500) -> int:
        """Move up to ``limit`` spooled batches into PostgreSQL, oldest first; how many went. Stops at the
        first one PostgreSQL cannot take for being away (it stays first); one it refuses is set aside."""
        moved = 0
        for seq, batch in self._oldest(limit):
            try:
                self.primary.write(replayable(_decode(batch)))  # type: ignore[arg-type]
            except StoreUnavailable as exc:
                self.last_error = str(exc)
                break
            except StoreError as exc:
                log.critical("spooled write %d refused by PostgreSQL, set aside (not lost): %s", seq, exc)
                self._set_aside(seq, batch, str(exc))
                continue
            self._forget(seq)
            moved += 1
        if moved and not self.spooled:
            log.warning("PostgreSQL is back: %d spooled write(s) replayed since %s", moved, _when(self.away_since))
            self.away_since = None
        return moved

    def problems(self) -> list[str]:
        """The ``/health`` reasons: PostgreSQL away with writes waiting here, and writes it refused."""
        found = list(getattr(self.primary, "problems", list)())  # the database's own (an unconfirming standby)
        if self.spooled:
            found.append(f"store: PostgreSQL unreachable since {_when(self.away_since)} ({self.last_error[:200]});"
                         f" {self.spooled} write(s) kept in the local spool {self.path}, replayed when it is back")
        if self.rejected:
            found.append(f"store: {self.rejected} spooled write(s) refused by PostgreSQL, kept in {self.path}"
                         " (table rejected)")
        return found

    def _away(self, exc: StoreError) -> None:
        if self.away_since is None:
            self.away_since = time.time()
            log.critical("PostgreSQL unreachable (%s): writes go to the local spool %s", exc, self.path)
        self.last_error = str(exc)

    def _spool(self, *writes: list[Statement]) -> None:
        """Keep ``writes`` (a row each) in one durable transaction."""
        now = time.time()
        rows = [(now, _encode([(sql, list(args)) for sql, args in statements])) for statements in writes]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO spool (wall, batch) VALUES (?,?)", rows)
                self._db.execute("COMMIT")
            except Exception as exc:  # sqlite3.Error, OSError: nowhere left to keep it
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"PostgreSQL unreachable and the local spool {self.path} failed: {exc}") from exc
        self.spooled += len(rows)

    def _oldest(self, limit: int) -> list[tuple[int, bytes]]:
        with self._lock:
            return self._db.execute("SELECT seq, batch FROM spool ORDER BY seq LIMIT ?", (limit,)).fetchall()

    def _forget(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE seq=?", (seq,))
        self.spooled -= 1

    def _set_aside(self, seq: int, batch: bytes, reason: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO rejected (seq, wall, batch, reason) VALUES (?,?,?,?)",
                             (seq, time.time(), batch, reason[:1000]))
            self._db.execute("DELETE FROM spool WHERE seq=?", (seq,))
            self._db.execute("COMMIT")
        self.spooled -= 1
        self.rejected += 1

    def _count(self, table: str) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 (ours)


async def replay_forever(async_store: AsyncStore, spooled: Spooled, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Every ``REPLAY_EVERY_S``, move what the spool holds into PostgreSQL (on the store's thread, between
    its writes). Owned by the composition root's nursery."""
    task_status.started()
    while True:
        if spooled.spooled:
            await async_store.call(spooled.replay)
        await trio.sleep(REPLAY_EVERY_S)


def _when(wall: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall)) if wall else "(this start)"
