"""``gateway db migrate|version``: the incident store's schema on PostgreSQL (``[store] backend``).

    gateway db migrate    # create or update the schema to this gateway's version (safe to run again)
    gateway db version    # the database's schema version and this gateway's

SQLite needs neither: the gateway makes its tables when it starts.
"""

from __future__ import annotations

import argparse

from gateway import check_config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("db", help="the PostgreSQL store's schema (gateway db migrate)")
    d.add_argument("action", choices=["migrate", "version"])
    d.set_defaults(fn=cmd_db)


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
