"""A feature's own tables on either backend (issue 14): the accounts and audit, the units board.

A feature keeps one class of statements, portable SQL that SQLite and PostgreSQL both accept (``?``
placeholders, ``INSERT ... ON CONFLICT``, ``RETURNING``), and runs them through a ``Db``: ``rows`` for a
read, ``transaction`` for a write (a function running one statement and giving its rows, all of them in
one transaction, durable when the block ends). ``SqliteDb`` is one file of its own (WAL, full fsync, its
schema made on open); ``PgDb`` (``gateway.incident.store_pg``) is the shared database, where migrations
made the tables and several nodes write at once. What differs is translated there, not in the feature.

Errors: ``Conflict`` for a statement breaking a constraint, ``StoreError`` for anything else.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from gateway.errors import Conflict, StoreError
from gateway.incident.store import connect

Row = tuple[Any, ...]
Execute = Callable[[str, Sequence[object]], list[Row]]  # one statement in the open transaction -> its rows


class Db:
    """Blocking; safe to call from several threads (one statement or transaction at a time)."""

    shared = False  # True: other nodes write the same tables (cached state must be read again)

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Execute]:
        """One transaction: ``execute`` runs a statement in it; committed when the block ends, rolled back
        if it raises."""
        raise NotImplementedError

    def serialize(self, execute: Execute, key: int) -> None:
        """Make writers of ``key`` take turns until this transaction ends (so rows they number in a sequence
        commit in its order). SQLite's writers always take turns."""

    def close(self) -> None:
        raise NotImplementedError


class SqliteDb(Db):
    """One SQLite file of a feature, its ``schema`` made on open. Raises StoreError naming ``what``."""

    def __init__(self, path: str | Path, schema: str, what: str) -> None:
        self.path, self.what = Path(path), what
        self._db = connect(self.path, "FULL", schema, what)
        self._lock = threading.RLock()

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.what} {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Execute]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield lambda sql, args: self._db.execute(sql, args).fetchall()
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"{self.what}: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"{self.what} {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
