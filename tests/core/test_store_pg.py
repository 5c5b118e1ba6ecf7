"""The incident store on a real PostgreSQL (``sim.pg``): versioned migrations, refusing a schema this gateway
does not know, a wrong DSN named for what to fix, a broken connection, ``gateway db migrate``, and the
``[store]`` settings. (The store's behaviour on both backends is ``test_store.py``.)"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.errors import StoreError
from gateway.incident.store_pg import PgStore, migrate, pg_ddl, pg_sql
from gateway.scenario import runs
from gateway.settings.config import StoreConfig, store_problems
from gateway.stores import MIGRATIONS, VERSION, open_incident_store, schema_version
from sim import pg
from sim.lab import shipped_config
from tests.core.test_store import incident
from tests.store_backends import TEMPLATE, PgCluster

# The DDL of every applied migration, as shipped. A feature's schema changed under an applied migration
# would leave every migrated database without it: add a migration to gateway.stores instead.
APPLIED = {1: "d855b164fbbfb8583a495a568abb28eb74ed894e121bd47f5f70a42b50e87dd4",
           2: "5e7064156b3147f5cd64548bc44b112527e8b7e92123f1c8713314d777dc3d06",
           3: "7de1f627aad29db581123d1d07a0e8d546581bdc427cba5053ed7b7d9f383155",
           4: "0eb565674b516a976f6fbf5f5b77101e0753fb3ae1a1c877c3cb14bdbe35aa43"}


def test_statements_and_schemas_translate_only_at_the_edge() -> None:
    assert pg_sql("SELECT x FROM t WHERE a=? AND b LIKE 'a%'") == "SELECT x FROM t WHERE a=%s AND b LIKE 'a%%'"
    assert pg_ddl("n INTEGER NOT NULL, w REAL, doc BLOB, INTEGERS TEXT") == \
        "n bigint NOT NULL, w double precision, doc bytea, INTEGERS TEXT"


def test_applied_migrations_are_never_edited() -> None:
    shipped = {m.version: hashlib.sha256(m.ddl.encode()).hexdigest() for m in MIGRATIONS}
    assert {v: shipped[v] for v in APPLIED} == APPLIED
    assert [m.version for m in MIGRATIONS] == list(range(1, VERSION + 1))


def test_migrate_makes_the_schema_once_and_only_then_does_a_store_open(pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.dsn(pg_cluster.database())
    with pytest.raises(StoreError, match=r"has no gateway schema: run `gateway db migrate`"):
        PgStore(dsn, schema_version=VERSION)
    assert migrate(dsn, MIGRATIONS) == (0, VERSION)
    assert migrate(dsn, MIGRATIONS) == (VERSION, VERSION)  # again: nothing to do
    store = PgStore(dsn, schema_version=VERSION)
    store.apply_schema(runs.SCHEMA)  # a feature's tables are there
    with pytest.raises(StoreError, match=r"lacks table\(s\) nope: run `gateway db migrate`"):
        store.apply_schema("CREATE TABLE IF NOT EXISTS nope (id TEXT PRIMARY KEY);")
    assert store.count() == 0
    store.close()


def test_two_nodes_migrating_at_once_take_turns(pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.dsn(pg_cluster.database())
    with ThreadPoolExecutor(2) as pool:
        done = sorted(pool.map(lambda _: migrate(dsn, MIGRATIONS), range(2)))
    assert done == [(0, VERSION), (VERSION, VERSION)]
    assert PgStore(dsn, schema_version=VERSION)._read("SELECT count(*) FROM schema_version") == [(len(MIGRATIONS),)]


def test_a_schema_version_this_gateway_does_not_know_is_refused(pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.dsn(pg_cluster.database(TEMPLATE))
    with pytest.raises(StoreError, match=rf"has schema version {VERSION}, this gateway needs {VERSION + 1}: run"
                                         r" `gateway db migrate`"):
        PgStore(dsn, schema_version=VERSION + 1)  # an older schema than the gateway's
    cfg = StoreConfig(backend="postgresql", dsn=dsn)
    PgStore(dsn, schema_version=VERSION).write([("INSERT INTO schema_version (version, applied_wall, what)"
                                                 " VALUES (?, 0, 'from a newer gateway')", (VERSION + 1,))])
    assert schema_version(cfg) == VERSION + 1
    for refused in (lambda: open_incident_store(cfg), lambda: migrate(dsn, MIGRATIONS)):
        with pytest.raises(StoreError, match=rf"schema version {VERSION + 1}, unknown to this gateway"):
            refused()


def test_a_wrong_dsn_says_what_to_fix_and_never_shows_the_password(pg_cluster: PgCluster) -> None:
    s = pg_cluster.server
    good = f"postgresql://{s.user}:{s.password}@127.0.0.1:{s.port}/{TEMPLATE}"
    wrong = {
        f"postgresql://{s.user}:not-the-password@127.0.0.1:{s.port}/{TEMPLATE}": "the credentials",
        f"postgresql://nobody:{s.password}@127.0.0.1:{s.port}/{TEMPLATE}": "the credentials",
        f"postgresql://{s.user}:{s.password}@127.0.0.1:{s.port}/no_such_db": "the database name",
        f"postgresql://{s.user}:{s.password}@127.0.0.1:1/{TEMPLATE}": "the host and port",
        f"postgresql://{s.user}:{s.password}@no-such-host.invalid:{s.port}/{TEMPLATE}": "the host and port",
        f"postgresql://{s.user}:{s.password}@[::1:{s.port}/{TEMPLATE}": "the syntax of [store] dsn",
    }
    for dsn, fix in wrong.items():
        with pytest.raises(StoreError) as caught:
            PgStore(dsn, schema_version=VERSION, connect_timeout_s=2)
        message = str(caught.value)
        assert f"check {fix}" in message and s.password not in message, message
    assert "127.0.0.1 port 1 database" in str(pytest.raises(StoreError, PgStore, good.replace(f":{s.port}/", ":1/"),
                                                            schema_version=VERSION).value)
    PgStore(good, schema_version=VERSION).close()


def test_a_broken_connection_fails_a_write_and_the_next_call_connects_again(pg_cluster: PgCluster) -> None:
    name = pg_cluster.database(TEMPLATE)
    store = PgStore(pg_cluster.dsn(name), schema_version=VERSION)

    def server_drops_us() -> None:
        pg_cluster.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                                 (name,))

    server_drops_us()
    with pytest.raises(StoreError, match="store write failed"):  # never retried: its commit may have happened
        store.create(incident("dropped"))
    store.create(incident("next"))  # a new connection
    server_drops_us()
    assert store.count() == 1  # a read is asked again on a new connection at once
    with pytest.raises(StoreError, match="store read failed"):  # a failing query is not
        store._read("SELECT nope FROM incidents")
    store.close()


def test_after_a_failover_the_multi_host_dsn_finds_the_promoted_standby(pg_cluster: PgCluster) -> None:
    with pg.pg_pair() as (primary, standby):  # a synchronous standby: every commit is on both
        dsn = pg.multi_host_dsn([primary, standby])
        migrate(dsn, MIGRATIONS)
        store = PgStore(dsn, schema_version=VERSION, connect_timeout_s=2)
        store.create(incident("before"))
        primary.kill()
        with pytest.raises(StoreError, match="store write failed"):  # the connection broke under it
            store.create(incident("during"))
        with pytest.raises(StoreError, match="check the hosts in \\[store\\] dsn: none is a writable primary"):
            store.create(incident("during"))  # the standby is still read-only
        standby.promote()
        store.create(incident("after"))
        assert sorted(s.id for s in store.recent()) == ["after", "before"]
        store.close()


def test_gateway_db_migrate_and_version(pg_cluster: PgCluster, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    dsn = pg_cluster.dsn(pg_cluster.database())
    path = shipped_config(tmp_path)
    path.write_text(re.sub(r'(?m)^backend = "sqlite".*$', f'backend = "postgresql"\ndsn = "{dsn}"', path.read_text()))
    assert main(["--config", str(path), "db", "version"]) == 0
    assert "database schema version none (run gateway db migrate)" in capsys.readouterr().out
    assert main(["--config", str(path), "db", "migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"schema at version {VERSION} (was 0)"
    assert main(["--config", str(path), "db", "migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"schema at version {VERSION} (already)"
    assert main(["--config", str(path), "incidents", "list"]) == 0  # the CLI reads the configured backend


def test_store_settings_need_a_dsn_for_postgresql_and_only_there() -> None:
    assert store_problems(StoreConfig(), "f") == []
    assert store_problems(StoreConfig(backend="postgresql", dsn="postgresql://u:p@db/ecgw"), "f") == []
    assert store_problems(StoreConfig(backend="postgresql", dsn="host=db dbname=ecgw"), "f") == []
    assert [p.split(": ")[1] for p in store_problems(StoreConfig(backend="postgresql"), "f")] == ["store.dsn"]
    assert "expected a libpq URI" in store_problems(StoreConfig(backend="postgresql", dsn="db:5432"), "f")[0]
    assert "only used with backend" in store_problems(StoreConfig(dsn="postgresql://u@db/x"), "f")[0]
    assert "store.path" in store_problems(StoreConfig(path=" "), "f")[0]
