"""Two nodes writing one incident at once on PostgreSQL (a call's events on one, a dispatcher's on the other),
each from its own copy in memory: every event of both is kept, none overwritten, each once even when a write
is replayed (a spool), in the order the writes committed."""

from __future__ import annotations

from pathlib import Path

from gateway.incident.store import event
from tests.core.test_store import incident
from tests.store_backends import Backend, PgCluster


def test_two_nodes_placing_events_at_one_place_keep_both_each_once(pg_cluster: PgCluster, tmp_path: Path) -> None:
    backend = Backend("postgresql", tmp_path, pg_cluster)
    a, b = backend.open(), backend.open()
    try:
        on_a = incident("i")  # a call on node A: call_arrived
        a.create(on_a)
        on_b = b.get("i")  # node B's console loads it
        mine, theirs = event("category_changed", "dispatcher:marat"), event("answered")
        on_b.timeline.append(mine)
        b.update(on_b, [mine])  # place 1
        on_a.timeline.append(theirs)
        a.update(on_a, [theirs])  # place 1 too, from A's copy: goes after B's
        later = event("hung_up")
        on_a.timeline.append(later)
        a.update(on_a, [later])  # place 2 in A's copy, taken by A's own displaced event: after it
        statements = a.update_statements(on_a, [later])
        a.write(statements)  # replayed (a spool): written already, nothing added
        kinds = [e.kind for e in a.get("i").timeline]
        assert kinds == ["call_arrived", "category_changed", "answered", "hung_up"]
    finally:
        a.close()
        b.close()


def test_one_node_alone_places_events_where_its_copy_has_them(pg_cluster: PgCluster, tmp_path: Path) -> None:
    store = Backend("postgresql", tmp_path, pg_cluster).open()
    try:
        inc = incident("j")
        store.create(inc)
        items = [event(k) for k in ("queued", "ringing", "answered")]
        first = items[0]
        inc.timeline += items
        store.update(inc, items[1:])  # the first's write failed earlier: its place stays free ...
        store.update(inc, [first])  # ... and it goes there later
        assert [e.kind for e in store.get("j").timeline] == ["call_arrived", "queued", "ringing", "answered"]
    finally:
        store.close()
