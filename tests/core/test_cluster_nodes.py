"""Which nodes are up and what each holds (``gateway.incident.nodes``), on both store backends: every node's
row is read by every node, a node that stops writing is shown lost, a late beat never makes a live node look
older, and with the database away this node still shows itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from gateway.errors import StoreError
from gateway.incident.nodes import Nodes, NodeState, lost_after
from gateway.incident.store import AsyncStore
from tests.store_backends import Backend

PERIOD_S = 0.05


def state(node: str, calls: int = 0, seen: float | None = None) -> NodeState:
    return NodeState(node=node, started_wall=1.0, seen_wall=time.time() if seen is None else seen, status="ok",
                     active_calls=calls, queue_length=0, scenario_runs=0)


@asynccontextmanager
async def store_of(backend: Backend) -> AsyncIterator[AsyncStore]:
    store = AsyncStore(backend.open())
    try:
        yield store
    finally:
        store.sync.close()


async def test_each_node_reads_every_node_and_one_that_stops_writing_is_shown_lost(backend: Backend) -> None:
    with trio.fail_after(20):
        async with store_of(backend) as one, store_of(backend) as other:
            a, b = Nodes(one, "a", PERIOD_S), Nodes(other, "b", PERIOD_S)
            async with trio.open_nursery() as nursery:
                await nursery.start(a.run, lambda: state("a", calls=3))
                stop_b = trio.CancelScope()

                async def run_b() -> None:
                    with stop_b:
                        await b.run(lambda: state("b", calls=1))

                nursery.start_soon(run_b)
                await trio.sleep(PERIOD_S * 4)
                seen = {s.node: s for s in a.known()}
                assert (seen["a"].active_calls, seen["b"].active_calls) == (3, 1)
                assert seen["a"].alive and seen["b"].alive
                stop_b.cancel()  # b dies: its row stays, and ages
                await trio.sleep(lost_after(PERIOD_S) + PERIOD_S * 3)
                seen = {s.node: s for s in a.known()}
                assert seen["a"].alive and not seen["b"].alive and seen["b"].seen_s_ago >= lost_after(PERIOD_S) - 0.1
                nursery.cancel_scope.cancel()
            await a.forget("b")
            assert [s.node for s in await a.read()] == ["a"]


async def test_a_late_beat_never_makes_a_node_look_older(backend: Backend) -> None:
    with trio.fail_after(20):
        async with store_of(backend) as store:
            nodes = Nodes(store, "a", PERIOD_S)
            now = time.time()
            await store.write([nodes.beat_statement(state("a", calls=2, seen=now))])
            await store.write([nodes.beat_statement(state("a", calls=9, seen=now - 30))])  # replayed from a spool
            [row] = await nodes.read(now)
            assert (row.active_calls, row.seen_s_ago, row.alive) == (2, 0.0, True)


async def test_with_the_store_away_this_node_still_shows_itself_and_the_others_age(backend: Backend) -> None:
    with trio.fail_after(20):
        async with store_of(backend) as store:
            a = Nodes(store, "a", PERIOD_S)
            await store.write([a.beat_statement(state("b", seen=time.time()))])
            async with trio.open_nursery() as nursery:
                await nursery.start(a.run, lambda: state("a"))
                await trio.sleep(PERIOD_S * 3)
                assert [s.node for s in a.known()] == ["a", "b"]

                async def refused(*_: object) -> None:
                    raise StoreError("store away (test)")

                store.write = refused  # type: ignore[method-assign]
                await trio.sleep(lost_after(PERIOD_S) + PERIOD_S * 3)
                seen = {s.node: s for s in a.known()}
                assert seen["a"].alive and not seen["b"].alive
                nursery.cancel_scope.cancel()
