"""The warnings store's shared SQL, part one: what a backend supplies, and the recipients and alerts.

Every statement here and in ``outbox.Queries`` runs on SQLite and on PostgreSQL alike (``?`` placeholders,
``INSERT ... ON CONFLICT``, ``RETURNING``). What must differ is a class attribute a backend overrides,
named where it is used: how a list of values is passed (``IN_LIST``/``_list``: SQLite's ``json_each`` of
a JSON array, PostgreSQL's ``= ANY`` of an array), how a field of a JSON ``doc`` is read (``_doc``), and
the row locks a shared database needs (``FOR_UPDATE``, ``SKIP_LOCKED``; nothing on SQLite, whose
``BEGIN IMMEDIATE`` already makes every write transaction the only one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from gateway.errors import Conflict, NotFound
from gateway.warning.recipients import Recipient
from gateway.warning.records import AlertRecord, AuditEvent

RecipientRow = tuple[int, str, str, str, str, str]  # id, phone, email, telegram, language, channels
AUDIENCE_ADDRESS = {"sms": "phone", "email": "email", "telegram": "telegram", "voice": "phone"}  # kind -> column
LOCAL = "local"  # the node id on a store one node uses
_encode = msgspec.json.Encoder().encode
_decode_alert = msgspec.json.Decoder(AlertRecord).decode
_decode_audit = msgspec.json.Decoder(AuditEvent).decode
_decode_recipient = msgspec.json.Decoder(Recipient).decode


class Rows(Protocol):
    """A statement's result, as both drivers' cursors give it."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """The connection a write transaction's function gets (``?`` placeholders on every backend)."""

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Rows: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Rows: ...


class Backend:
    """What a backend supplies: ``_tx`` (a function run in one write transaction), ``_read``, ``close``,
    and the few fragments of SQL that differ (see the module). ``node_id``: the node whose claims this is;
    ``shared``: other nodes use the same database (their claims, fan-outs and liveness matter)."""

    IN_LIST = "IN (SELECT value FROM json_each(?))"
    FOR_UPDATE = ""
    SKIP_LOCKED = ""
    CLAIM_IN_ONE = False  # claim with one UPDATE ... RETURNING (SQLite plans its row-value IN slowly: two)
    node_id = LOCAL
    shared = False

    def _tx(self, fn: Callable[[Db], Any], *, churn: bool = False) -> Any:
        raise NotImplementedError

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _count_read(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        """A read that should neither wait for nor hold up a fan-out (its own connection where it can)."""
        return self._read(sql, args)

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _list(values: Iterable[object]) -> object:
        """The parameter ``IN_LIST`` takes."""
        return _encode(list(values))

    @staticmethod
    def _doc(*path: str) -> str:
        """A text field of the JSON ``doc`` column."""
        return f"json_extract(doc, '$.{'.'.join(path)}')"


class RecordQueries(Backend):
    """Recipients, alerts and the alerts' audit trail."""

    def put_recipients(self, recipients: Iterable[Recipient]) -> int:
        """Insert or replace recipients by ``ref``, in one transaction. Returns how many."""
        rows = list(recipients)

        def write(db: Db) -> int:
            db.executemany(
                "INSERT INTO recipients(ref, phone, email, telegram, language, channels, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ref) DO UPDATE SET phone=excluded.phone, "
                "email=excluded.email, telegram=excluded.telegram, language=excluded.language, "
                "channels=excluded.channels, doc=excluded.doc",
                [(r.ref, r.phone, r.email, r.telegram, r.language, ";".join(r.channels), _encode(r)) for r in rows])
            ids = dict(db.execute(f"SELECT ref, id FROM recipients WHERE ref {self.IN_LIST}",
                                  (self._list(r.ref for r in rows),)).fetchall())
            db.executemany("DELETE FROM recipient_zones WHERE recipient_id = ?", [(ids[r.ref],) for r in rows])
            db.executemany("INSERT INTO recipient_zones(recipient_id, zone) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           [(ids[r.ref], z) for r in rows for z in dict.fromkeys(r.zones)])
            return len(rows)

        return int(self._tx(write))

    def delete_recipient(self, ref: str) -> None:
        def write(db: Db) -> None:
            row = db.execute("SELECT id FROM recipients WHERE ref = ?", (ref,)).fetchone()
            if row is None:
                raise NotFound(f"no recipient {ref!r}")
            db.execute("DELETE FROM recipient_zones WHERE recipient_id = ?", (row[0],))
            db.execute("DELETE FROM recipients WHERE id = ?", (row[0],))

        self._tx(write)

    def get_recipient(self, ref: str) -> Recipient:
        rows = self._read("SELECT doc FROM recipients WHERE ref = ?", (ref,))
        if not rows:
            raise NotFound(f"no recipient {ref!r}")
        return _decode_recipient(rows[0][0])

    def recipients(self, after_ref: str = "", limit: int = 100) -> list[Recipient]:
        rows = self._read("SELECT doc FROM recipients WHERE ref > ? ORDER BY ref LIMIT ?", (after_ref, limit))
        return [_decode_recipient(r[0]) for r in rows]

    def count_recipients(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM recipients")[0][0])

    def count_audience(self, zones: Sequence[str], kinds: Sequence[str]) -> tuple[dict[str, int], int]:
        """Recipients of ``zones`` reachable on each of ``kinds`` (preferred, and its address given), and how
        many distinct ones at least one of them reaches. One query: the zone index gives the ids (a
        recipient of several of the zones counts once), grouped by what decides reach (a few dozen groups).
        Safe to call from any thread, beside the writer."""
        sql = ("SELECT channels, phone <> '', email <> '', telegram <> '', COUNT(*) FROM recipients WHERE id IN "
               f"(SELECT recipient_id FROM recipient_zones WHERE zone {self.IN_LIST}) GROUP BY 1, 2, 3, 4")
        rows = self._count_read(sql, (self._list(zones),))
        counts, total = {k: 0 for k in kinds if k in AUDIENCE_ADDRESS}, 0
        for channels, phone, email, telegram, count in rows:
            has = {"phone": phone, "email": email, "telegram": telegram}
            reached = [k for k in str(channels).split(";") if k in counts and has[AUDIENCE_ADDRESS[k]]]
            for kind in reached:
                counts[kind] += int(count)
            total += int(count) if reached else 0
        return counts, total

    def recipient_rows(self, ids: Sequence[int]) -> dict[int, RecipientRow]:
        rows = self._read("SELECT id, phone, email, telegram, language, channels FROM recipients "
                          f"WHERE id {self.IN_LIST}", (self._list(ids),))
        return {int(r[0]): (int(r[0]), *r[1:]) for r in rows}  # type: ignore[misc]

    # -- alerts -----------------------------------------------------------------------------

    def insert_alert(self, record: AlertRecord, event: AuditEvent) -> None:
        def write(db: Db) -> None:
            row = db.execute("INSERT INTO alerts(id, state, created, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) "
                             "DO NOTHING RETURNING no", (record.id, record.state, record.created_at,
                                                         _encode(record))).fetchone()
            if row is None:
                raise Conflict(f"alert {record.id} already exists")
            db.execute("INSERT INTO audit(alert_no, seq, doc) VALUES (?, 0, ?)", (row[0], _encode(event)))

        self._tx(write)

    def update_alert(self, record: AlertRecord, event: AuditEvent, *, expect_state: str | None = None) -> None:
        """Replace an alert's record and append to its audit trail. With ``expect_state``, the
        write happens only if the stored state is still that one (two officers racing, on any node)."""

        def write(db: Db) -> None:
            row = db.execute(f"SELECT no, state FROM alerts WHERE id = ?{self.FOR_UPDATE}", (record.id,)).fetchone()
            if row is None:
                raise NotFound(f"no alert {record.id!r}")
            if expect_state is not None and row[1] != expect_state:
                raise Conflict(f"alert {record.id} is {row[1]}, not {expect_state}")
            db.execute("UPDATE alerts SET state = ?, doc = ? WHERE no = ?", (record.state, _encode(record), row[0]))
            self._append_audit(db, row[0], event)

        self._tx(write)

    def audit(self, alert_id: str, event: AuditEvent) -> None:
        self._tx(lambda db: self._append_audit(db, self._no(db, alert_id), event))

    def get_alert(self, alert_id: str) -> tuple[int, AlertRecord]:
        rows = self._read("SELECT no, doc FROM alerts WHERE id = ?", (alert_id,))
        if not rows:
            raise NotFound(f"no alert {alert_id!r}")
        return int(rows[0][0]), _decode_alert(rows[0][1])

    def alert_by_no(self, alert_no: int) -> AlertRecord:
        rows = self._read("SELECT doc FROM alerts WHERE no = ?", (alert_no,))
        if not rows:
            raise NotFound(f"no alert #{alert_no}")
        return _decode_alert(rows[0][0])

    def alerts(self, limit: int = 100, states: Sequence[str] = ()) -> list[AlertRecord]:
        sql = "SELECT doc FROM alerts"
        args: list[object] = []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args.extend(states)
        rows = self._read(sql + " ORDER BY no DESC LIMIT ?", [*args, limit])
        return [_decode_alert(r[0]) for r in rows]

    def audit_trail(self, alert_id: str) -> list[AuditEvent]:
        rows = self._read("SELECT doc FROM audit WHERE alert_no = (SELECT no FROM alerts WHERE id = ?) ORDER BY seq",
                          (alert_id,))
        return [_decode_audit(r[0]) for r in rows]

    @staticmethod
    def _no(db: Db, alert_id: str) -> int:
        row = db.execute("SELECT no FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        return int(row[0])

    def _append_audit(self, db: Db, alert_no: int, event: AuditEvent) -> None:
        db.execute(f"SELECT no FROM alerts WHERE no = ?{self.FOR_UPDATE}", (alert_no,))  # nodes append in turn
        seq = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM audit WHERE alert_no = ?", (alert_no,)).fetchone()[0]
        db.execute("INSERT INTO audit(alert_no, seq, doc) VALUES (?, ?, ?)", (alert_no, seq, _encode(event)))
