"""Which gateway nodes are up and what each holds now (issue 14): one row per node in the shared store.

Every gateway writes its own row of ``cluster_nodes`` every ``period_s``: when it started, when it wrote
last, and what it holds — calls up on its Asterisk, callers waiting in its queue, scenario runs it executes
(their leases), its own health. ``/health`` and the supervisors' board show every row, so a supervisor sees
which node takes which calls and runs, and which node stopped writing: a row older than ``lost_after_s`` is
shown ``alive = false`` (the node or its link to the database is gone; its scenario runs go to another node
when their leases end, ``gateway.scenario.leases``). On SQLite the table has this node's row only.

A write keeps the newest row (``seen_wall`` only moves forward), so a beat replayed late from a node's spool
(``incident.spool``, PostgreSQL away) never makes a live node look older. Rows stay: a node that is gone
stays listed as lost until ``gateway`` is told otherwise (``forget``), which is what a supervisor needs to
see after a failover.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec
import trio

from gateway.errors import GatewayError
from gateway.incident.store import AsyncStore, Statement

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node TEXT PRIMARY KEY,
    seen_wall REAL NOT NULL,
    doc BLOB NOT NULL
);
"""
PERIOD_S = 2.0
_UPSERT = ("INSERT INTO cluster_nodes (node, seen_wall, doc) VALUES (?,?,?) ON CONFLICT (node) DO UPDATE"
           " SET seen_wall=excluded.seen_wall, doc=excluded.doc WHERE cluster_nodes.seen_wall<excluded.seen_wall")


class NodeState(msgspec.Struct, kw_only=True):
    """One node as it last reported itself; ``alive`` and ``seen_s_ago`` are worked out by the reader."""

    node: str
    started_wall: float
    seen_wall: float
    status: str  # its own /health status then: "ok" or "degraded"
    active_calls: int
    queue_length: int
    scenario_runs: int
    alive: bool = True
    seen_s_ago: float = 0.0


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(NodeState).decode


def lost_after(period_s: float) -> float:
    """How old a row may be before its node counts as lost: three beats missed."""
    return 3 * period_s + 1.0


class Nodes:
    """This node's row (written by ``run``) and everyone's (``known``, refreshed with each beat)."""

    def __init__(self, store: AsyncStore, node_id: str, period_s: float = PERIOD_S) -> None:
        self.store = store
        self.node_id = node_id
        self.period_s = period_s
        self.started_wall = time.time()
        self._rows_read: list[NodeState] = []
        self._mine: NodeState | None = None
        store.sync.apply_schema(SCHEMA)

    def beat_statement(self, state: NodeState) -> Statement:
        return _UPSERT, (state.node, state.seen_wall, _encode(state))

    async def read(self, now: float | None = None) -> list[NodeState]:
        """Every node's last row, by name, with ``alive`` and ``seen_s_ago`` as of ``now``. Raises StoreError."""
        return self._aged(await self._rows(), time.time() if now is None else now)

    def known(self) -> list[NodeState]:
        """Every node as last read, aged to now, this node as it is now (non-blocking, for ``/health``:
        with the database away the others grow old and are shown lost, this one is not)."""
        rows = [s for s in self._rows_read if s.node != self.node_id] + ([self._mine] if self._mine else [])
        return self._aged(sorted(rows, key=lambda s: s.node), time.time())

    def _aged(self, rows: list[NodeState], now: float) -> list[NodeState]:
        aged = []
        for row in rows:
            seen_s_ago = round(max(0.0, now - row.seen_wall), 1)
            aged.append(msgspec.structs.replace(row, seen_s_ago=seen_s_ago,
                                                alive=seen_s_ago <= lost_after(self.period_s)))
        return aged

    async def _rows(self) -> list[NodeState]:
        found = []
        for node, doc in await self.store.read("SELECT node, doc FROM cluster_nodes ORDER BY node"):
            try:
                found.append(_decode(doc))  # type: ignore[arg-type]
            except msgspec.ValidationError as exc:
                log.error("cluster: node %s's row unreadable, skipped: %s", node, exc)
        return found

    async def forget(self, node: str) -> None:
        """Drop a lost node's row (it was taken out of the cluster on purpose)."""
        await self.store.write([("DELETE FROM cluster_nodes WHERE node=?", (node,))])

    async def run(self, report: Callable[[], NodeState], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write this node's row and read everyone's every ``period_s`` until cancelled; a store error is
        logged and the next beat tries again."""
        task_status.started()
        while True:
            self._mine = report()
            try:
                await self.store.write([self.beat_statement(self._mine)])
                self._rows_read = await self._rows()
            except GatewayError as exc:
                log.error("cluster: node %s's state not written: %s", self.node_id, exc)
            await trio.sleep(self.period_s)
