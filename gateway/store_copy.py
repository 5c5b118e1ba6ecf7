"""``gateway db copy``: a centre's incident database moved from SQLite to PostgreSQL without loss (issue 14),
and its warnings store with it (``schema="warnings"``: the recipients, alerts and outbox of another SQLite file,
into the tables of migration 7 in the schema ``warnings``; the nodes' liveness rows are not copied).

Every table of the incident database (those ``gateway.stores.MIGRATIONS`` creates, in their order, so an
incident is there before its timeline; ``schema_version`` is the target's own) is read from the SQLite file,
opened read-only (a gateway may still be writing it: WAL), in one read transaction (every table as of the
same moment), in primary-key order, and written in batches of ``BATCH_ROWS``: each batch one transaction,
``COPY``-ed into a temporary table and moved with ``INSERT ... ON CONFLICT DO NOTHING``. Memory holds one
batch, whatever the size of the history.

The accounts and audit trail are tables of the same file; the unit board's (``units``, ``unit_log``,
``unit_notes``) are in ``units.db`` beside it, attached read-only when it is there (inside the same read
transaction). A numbering column (the audit's ``seq``: an identity on PostgreSQL) is copied as it is and
its sequence moved past the highest copied, so the target numbers on from there.

The target is migrated first if it has no schema; one at another version than this gateway's is refused, and
so is one that already holds rows, unless ``resume``: then a row whose primary key is already there is kept
as it is and only the missing ones are added, so a copy interrupted at any point is finished by running it
again, without duplicates. The copy never changes a row the target has (after a cut-over the target's rows
are the newer ones); the comparison names any that differs. A column PostgreSQL numbers itself (a warnings
recipient's id, an alert's number) has its sequence moved past the highest number copied.

``compare`` reads both sides again in primary-key order (text keys in byte order on both: SQLite's BINARY
collation, PostgreSQL's ``COLLATE "C"``) and gives, per table, the row counts and a SHA-256 over every row's
canonical bytes (each value typed and length-prefixed, a ``double precision`` read as a float on both sides),
computed here in Python the same way for both, and the key of the first row that differs. A row changed in
the target after the copy, one missing or one too many shows there.

Errors: ``InputError`` for what the command line can fix (no file or not SQLite, not an incident store, a
DSN leading nowhere, a target schema of another version, a target not empty); ``StoreError`` when reading
or writing fails midway. The caller owns and closes both connections.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import psycopg
from psycopg import sql

from gateway.errors import InputError, StoreError
from gateway.incident.store_pg import check_version, connect, current_version, migrate, where
from gateway.stores import MIGRATIONS, VERSION
from gateway.warning.outbox import SCHEMA as WARNINGS_SCHEMA
from gateway.warning.outbox_pg import PG_SCHEMA

BATCH_ROWS = 5_000
STATEMENT_TIMEOUT_S = 600.0  # a key-ordered read of millions of rows may sort them first
# The target's own (written by its migrations) and the running nodes' (each writes its row: not history).
OWN_TABLES = ("schema_version", "outbox_nodes", "cluster_nodes")
UNITS_FILE = "units.db"  # the unit board's SQLite file, beside the store (gateway.stores.open_units_db)
_TABLES = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \(")  # not schema-qualified: the incident database's
SCHEMAS = {"": "incidents", PG_SCHEMA: "jobs"}  # a table each kind of source has
PgConn = psycopg.Connection[tuple[object, ...]]
Progress = Callable[[str, int, int, int], None]  # table, rows read, rows in the source, rows added


@dataclass(frozen=True)
class Table:
    """One table as the target has it (its columns, their PostgreSQL types, the primary key)."""

    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]
    schema: str = ""

    @property
    def label(self) -> str:
        """The table's qualified name ("warnings.jobs"; "incidents" in the default schema)."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name) if self.schema else sql.Identifier(self.name)


@dataclass(frozen=True)
class Copied:
    table: str
    read: int
    added: int


@dataclass(frozen=True)
class Tally:
    """One table compared: counts and SHA-256 on each side; ``first_difference`` names the key of the first
    row (in key order) that differs, "" when none."""

    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str
    first_difference: str

    @property
    def equal(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256


def open_source(path: str | Path, schema: str = "") -> sqlite3.Connection:
    """The SQLite store at ``path``, read-only: the incident store, or the warnings store (``schema`` "warnings").
    Raises InputError: no file, not SQLite, not that store."""
    path, holds = Path(path), SCHEMAS[schema]
    if not path.is_file():
        raise InputError(f"no SQLite file at {path}: check --from sqlite:PATH (the gateway's [store] path)")
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None,
                             check_same_thread=False)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open {path} read-only ({exc}): check --from sqlite:PATH") from exc
    try:
        names = {str(n) for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        db.close()
        raise InputError(f"{path} is not a readable SQLite database ({exc}): check --from sqlite:PATH") from exc
    if holds not in names:
        db.close()
        what, option = ("incident", "--from") if not schema else ("warnings", "--warnings-from")
        raise InputError(f"{path} holds no {what} store (no {holds} table): check {option} sqlite:PATH")
    units = path.with_name(UNITS_FILE)
    if not schema and units.is_file():
        try:  # its tables are then found by their names (SQLite looks in attached files after the main one)
            db.execute("ATTACH DATABASE ? AS units_file", (units.resolve().as_uri() + "?mode=ro",))
        except sqlite3.Error as exc:
            db.close()
            raise InputError(f"cannot open {units} read-only ({exc}): the unit board's file beside the store") \
                from exc
    return db


def open_target(dsn: str, *, resume: bool, migrate_empty: bool = True) -> tuple[PgConn, int | None]:
    """A connection to the target, its schema migrated if it had none and ``migrate_empty``; (connection,
    version found). Raises InputError: the DSN leads nowhere, no schema (and not ``migrate_empty``) or one
    of another version, the target holds rows and not ``resume``."""
    try:
        conn = connect(dsn, statement_timeout_s=STATEMENT_TIMEOUT_S)
    except StoreError as exc:
        raise InputError(_named(exc)) from exc
    try:
        found = current_version(conn)
        if found is None and migrate_empty:
            migrate(dsn, MIGRATIONS)
        else:
            check_version(dsn, found, VERSION)
        held = {t.label: n for t in [*tables(conn), *tables(conn, PG_SCHEMA)] if (n := _pg_count(conn, t))}
    except StoreError as exc:
        conn.close()
        raise InputError(_named(exc)) from exc
    except psycopg.Error as exc:
        conn.close()
        raise InputError(f"cannot read the target at {where(dsn)}: {exc}") from exc
    if held and not resume:
        conn.close()
        rows = ", ".join(f"{name} {n}" for name, n in held.items())
        raise InputError(f"PostgreSQL at {where(dsn)} already holds rows ({rows}): copy into an empty database,"
                         " or pass --resume to finish an interrupted copy (rows already there are kept)")
    return conn, found


def _named(exc: StoreError) -> str:
    """The store's message with the DSN named as the command line gives it."""
    return str(exc).replace("[store] dsn", "the --to DSN")


def tables(conn: PgConn, schema: str = "") -> list[Table]:
    """The incident database's tables in migration order, or the warnings store's (``schema``), as the
    (migrated) target has them."""
    names = [n for m in MIGRATIONS for n in _TABLES.findall(m.ddl)] if not schema else _TABLES.findall(WARNINGS_SCHEMA)
    found = []
    for name in (n for n in names if n not in OWN_TABLES):
        regclass = f"{schema}.{name}" if schema else name
        cols = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
                            " %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (regclass,)).fetchall()
        key = conn.execute("SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n),"
                           " pg_attribute a WHERE i.indrelid = %s::regclass AND i.indisprimary AND a.attrelid ="
                           " i.indrelid AND a.attnum = k.attnum ORDER BY k.n", (regclass,)).fetchall()
        found.append(Table(name, tuple(str(c) for c, _ in cols), tuple(str(t) for _, t in cols),
                           tuple(str(k) for (k,) in key), schema))
    return found


def check_source(source: sqlite3.Connection, wanted: list[Table]) -> list[Table]:
    """The tables the source has (a feature never started made none); raises InputError if one has other
    columns than the target's."""
    present = []
    for table in wanted:
        cols = {str(row[1]) for row in source.execute(f'PRAGMA table_info("{table.name}")')}
        if not cols:
            continue
        if cols != set(table.columns):
            raise InputError(f"the source's {table.name} has columns {sorted(cols)}, this gateway's"
                             f" {sorted(table.columns)}: copy with the gateway version that wrote the source")
        present.append(table)
    return present


def copy(source: sqlite3.Connection, target: PgConn, *, batch_rows: int = BATCH_ROWS,
         progress: Progress | None = None, schema: str = "") -> list[Copied]:
    """Copy every table the source has into the target (the warnings store's with ``schema``), a transaction
    per batch; rows whose key the target has already are kept as they are. Raises InputError (see
    ``check_source``), StoreError."""
    done = []
    with _snapshot(source):
        for table in check_source(source, tables(target, schema)):
            try:
                done.append(_copy_table(source, target, table, batch_rows, progress))
            except sqlite3.Error as exc:
                raise StoreError(f"reading {table.label} from the SQLite source failed: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"writing {table.label} into PostgreSQL failed: {exc}") from exc
    return done


@contextmanager
def _snapshot(source: sqlite3.Connection) -> Iterator[None]:
    """One read transaction over every table: a gateway still writing the source cannot give a timeline
    row whose incident was not there when the incidents were read."""
    source.execute("BEGIN")
    try:
        yield
    finally:
        source.execute("COMMIT")


def _copy_table(source: sqlite3.Connection, target: PgConn, table: Table, batch_rows: int,
                progress: Progress | None) -> Copied:
    total = int(source.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0])
    stage, name = sql.Identifier(f"copy_{table.label.replace('.', '_')}"), table.ident
    cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    target.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
                   .format(stage, name))
    into = sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)
    move = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(name, cols, cols, stage)
    read = added = 0
    if progress:
        progress(table.label, 0, total, 0)
    for rows in _sqlite_batches(source, table, batch_rows):
        with target.transaction(), target.cursor() as cur:
            with cur.copy(into) as stream:
                for row in rows:
                    stream.write_row(row)
            cur.execute(move)
            added += max(cur.rowcount, 0)
        read += len(rows)
        if progress:
            progress(table.label, read, total, added)
    _renumber(target, table)
    return Copied(table.label, read, added)


def _renumber(target: PgConn, table: Table) -> None:
    """Move the sequence of a column PostgreSQL numbers itself past the highest number now in it (a copied
    row keeps its number; the next one PostgreSQL draws must not be one of those)."""
    for column in table.columns:
        row = target.execute("SELECT pg_get_serial_sequence(%s, %s)", (table.label, column)).fetchone()
        if row and row[0]:
            target.execute(sql.SQL("SELECT setval(%s, max({})) FROM {}").format(sql.Identifier(column), table.ident),
                           (row[0],))


def _sqlite_batches(source: sqlite3.Connection, table: Table, batch_rows: int) -> Iterator[list[tuple[object, ...]]]:
    cols = ", ".join(f'"{c}"' for c in table.columns)
    key = ", ".join(f'"{c}"' for c in table.key)
    cur = source.execute(f'SELECT {cols} FROM "{table.name}" ORDER BY {key}')
    while rows := cur.fetchmany(batch_rows):
        yield rows


def _pg_rows(target: PgConn, table: Table, batch_rows: int) -> Iterator[tuple[object, ...]]:
    """The table's rows in key order, text keys in byte order (as SQLite's BINARY), through a server-side
    cursor ``batch_rows`` at a time."""
    order = sql.SQL(", ").join(
        sql.SQL('{} COLLATE "C"').format(sql.Identifier(c)) if table.types[table.columns.index(c)] == "text"
        else sql.Identifier(c) for c in table.key)
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(map(sql.Identifier, table.columns)), table.ident, order)
    with target.transaction(), target.cursor(name=f"check_{table.label.replace('.', '_')}") as cur:
        cur.itersize = batch_rows
        cur.execute(query)
        yield from cur


def _pg_count(target: PgConn, table: Table) -> int:
    row = target.execute(sql.SQL("SELECT count(*) FROM {}").format(table.ident)).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def canonical(row: tuple[object, ...], types: tuple[str, ...]) -> bytes:
    """A row's bytes for the checksum: each value as a type tag, its length and its bytes; a number in a
    ``double precision`` column as a float (SQLite may hand back 5 for 5.0), floats exactly (``float.hex``)."""
    out = bytearray()
    for value, pg_type in zip(row, types, strict=True):
        if value is None:
            tag, data = b"N", b""
        elif isinstance(value, bytes | bytearray | memoryview):
            tag, data = b"B", bytes(value)
        elif isinstance(value, str):
            tag, data = b"S", value.encode("utf-8", "surrogatepass")
        elif isinstance(value, float) or (pg_type == "double precision" and isinstance(value, int)):
            tag, data = b"F", float(value).hex().encode()  # type: ignore[arg-type]
        else:
            tag, data = b"I", str(value).encode()
        out += tag + struct.pack(">I", len(data)) + data
    return bytes(out)


def compare(source: sqlite3.Connection, target: PgConn, *, batch_rows: int = BATCH_ROWS,
            schema: str = "") -> list[Tally]:
    """Every table's counts and checksums on both sides (see the module; the warnings store's with ``schema``).
    Raises InputError, StoreError."""
    wanted = tables(target, schema)
    present = {t.name for t in check_source(source, wanted)}
    try:
        with _snapshot(source):
            return [_compare_table(source, target, t, t.name in present, batch_rows) for t in wanted]
    except sqlite3.Error as exc:
        raise StoreError(f"reading the SQLite source failed: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"reading PostgreSQL failed: {exc}") from exc


def _compare_table(source: sqlite3.Connection, target: PgConn, table: Table, in_source: bool,
                   batch_rows: int) -> Tally:
    mine = (row for rows in _sqlite_batches(source, table, batch_rows) for row in rows) if in_source else iter(())
    hashes, counts, first = [hashlib.sha256(), hashlib.sha256()], [0, 0], ""
    for pair in zip_longest(mine, _pg_rows(target, table, batch_rows)):
        encoded = [canonical(row, table.types) if row is not None else None for row in pair]
        for side, data in enumerate(encoded):
            if data is not None:
                hashes[side].update(data)
                counts[side] += 1
        if not first and encoded[0] != encoded[1]:
            row = pair[0] if pair[0] is not None else pair[1]
            first = ", ".join(f"{c}={row[table.columns.index(c)]!r}" for c in table.key)  # type: ignore[index]
    return Tally(table.label, counts[0], counts[1], hashes[0].hexdigest(), hashes[1].hexdigest(), first)
