"""``gateway db migrate|version|copy``: the incident store's schema on PostgreSQL (``[store] backend``), and a
centre's history moved there from SQLite.

    gateway db migrate    # create or update the schema to this gateway's version (safe to run again)
    gateway db version    # the database's schema version and this gateway's
    gateway db copy --from sqlite:var/gateway.sqlite3 --to postgresql://ecgw:PW@db1/ecgw [--resume] [--check-only]
                    [--warnings-from sqlite:var/warnings.sqlite3]   # the warnings store too

SQLite needs neither migrate nor version: the gateway makes its tables when it starts. ``copy`` reads
neither the config nor ``[store]``: the two databases are named on the command line. It exits 2 when
what it was given cannot be used (naming what to fix) and 1 when the two sides differ at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from gateway import check_config
from gateway.errors import InputError

if TYPE_CHECKING:
    from gateway.store_copy import Tally

PROGRESS_EVERY_S = 2.0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("db", help="the PostgreSQL store's schema (gateway db migrate), a SQLite store copied there")
    dsub = d.add_subparsers(dest="action", required=True)
    dsub.add_parser("migrate", help="create or update the schema").set_defaults(fn=cmd_db)
    dsub.add_parser("version", help="the database's schema version").set_defaults(fn=cmd_db)
    c = dsub.add_parser("copy", help="copy a SQLite incident store into PostgreSQL, then compare every table")
    c.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH")
    c.add_argument("--to", dest="target", required=True, metavar="postgresql:DSN")
    c.add_argument("--warnings-from", dest="warnings", metavar="sqlite:PATH",
                   help="the warnings store too (the gateway's [warnings] store_path)")
    c.add_argument("--resume", action="store_true",
                   help="the target holds rows already (an interrupted copy): keep them, add the missing ones")
    c.add_argument("--check-only", action="store_true", help="copy nothing: only compare the two")
    c.add_argument("--batch-rows", type=int, default=5_000, help="rows per transaction (default 5000)")
    c.set_defaults(fn=cmd_db_copy)


def cmd_db(args: argparse.Namespace) -> int:
    from gateway.stores import VERSION, migrate_store, schema_version

    cfg = check_config.load(args.config)
    if cfg.store.backend != "postgresql":
        print(f"store backend is {cfg.store.backend!r}: its tables are made when the gateway starts; nothing to do")
        return 0
    if args.action == "migrate":
        before, after = migrate_store(cfg.store) or (0, 0)
        print(f"schema at version {after}" + (f" (was {before})" if before != after else " (already)"))
    else:
        found = schema_version(cfg.store)
        print(f"database schema version {found if found is not None else 'none (run gateway db migrate)'};"
              f" this gateway's {VERSION}")
    return 0


def source_path(value: str, option: str = "--from", what: str = "[store] path") -> str:
    """``sqlite:PATH`` -> PATH. Raises InputError."""
    if not value.startswith("sqlite:") or not value.removeprefix("sqlite:"):
        raise InputError(f"{option} {value!r}: expected sqlite:PATH (the gateway's {what})")
    return value.removeprefix("sqlite:")


def target_dsn(value: str) -> str:
    """``postgresql:DSN`` -> DSN; a ``postgresql://`` URI is taken as it is. Raises InputError."""
    if value.startswith(("postgresql://", "postgres://")):
        return value
    if not value.startswith("postgresql:") or not value.removeprefix("postgresql:"):
        raise InputError("--to: expected postgresql:DSN (a libpq URI postgresql://user:password@host:port/database"
                         " or postgresql:'host=... dbname=...')")
    return value.removeprefix("postgresql:")


def cmd_db_copy(args: argparse.Namespace) -> int:
    from gateway import store_copy

    try:
        if args.batch_rows < 1:
            raise InputError("--batch-rows: at least 1")
        sources = {"": store_copy.open_source(source_path(args.source))}
        if args.warnings:
            path = source_path(args.warnings, "--warnings-from", "[warnings] store_path")
            sources[store_copy.PG_SCHEMA] = store_copy.open_source(path, store_copy.PG_SCHEMA)
        target, found = store_copy.open_target(target_dsn(args.target), resume=args.resume or args.check_only,
                                               migrate_empty=not args.check_only)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if found is None:
            print(f"target had no schema: migrated to version {store_copy.VERSION}")
        if not args.check_only:
            started = time.monotonic()
            copied = [c for schema, source in sources.items() for c in store_copy.copy(
                source, target, batch_rows=args.batch_rows, progress=Progress(), schema=schema)]
            rows, took = sum(c.read for c in copied), time.monotonic() - started
            print(f"copied {rows} rows ({sum(c.added for c in copied)} added) in {took:.1f} s"
                  f" ({rows / max(took, 1e-9):,.0f} rows/s); comparing")
        tallies = [t for schema, source in sources.items()
                   for t in store_copy.compare(source, target, batch_rows=args.batch_rows, schema=schema)]
    finally:
        for source in sources.values():
            source.close()
        target.close()
    print(report(tallies))
    differ = [t.table for t in tallies if not t.equal]
    if differ:
        print(f"error: the target differs from the source in {', '.join(differ)}", file=sys.stderr)
        return 1
    print("every table equal: counts and checksums")
    return 0


class Progress:
    """Prints a table's progress at most every ``PROGRESS_EVERY_S`` seconds, and when it is done."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, table: str, read: int, total: int, added: int) -> None:
        now = time.monotonic()
        if read == 0:
            self.last = now  # a table begins
        if read == total or now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            print(f"{table}: {read} of {total} rows read, {added} added", flush=True)


def report(tallies: list[Tally]) -> str:
    """The comparison as a table: per table both counts, both checksums (first 16 hex digits), the verdict."""
    lines = [f"{'table':<16} {'source rows':>12} {'target rows':>12}  {'source sha256':<16}  {'target sha256':<16}"]
    for t in tallies:
        verdict = "equal" if t.equal else f"DIFFERS (first at {t.first_difference or 'the end'})"
        lines.append(f"{t.table:<16} {t.source_rows:>12} {t.target_rows:>12}  {t.source_sha256[:16]}"
                     f"  {t.target_sha256[:16]}  {verdict}")
    return "\n".join(lines)
