"""Which node executes which scenario run: a lease per run in the database (issue 14, two active nodes).

Theory of operation. ``scenario_leases`` holds one row per run being executed: its key, the owning node's
id and ``expires_wall``. A node's engine executes a run's steps only while it holds that run's lease:

- **claim** is one statement, the same on SQLite and PostgreSQL: ``INSERT ... ON CONFLICT (key) DO UPDATE
  SET owner = me ... WHERE expires_wall < now OR owner = me``. A new run's row is inserted; an expired one
  (its owner dead) is taken; a live one of another node is left alone. On PostgreSQL two nodes claiming the
  same expired lease meet on the row lock ``ON CONFLICT DO UPDATE`` takes: the second re-checks the WHERE
  against the first's committed row and takes nothing. ``SELECT ... FOR UPDATE SKIP LOCKED`` fits a queue
  where workers pick any of many rows; here every key is claimed by name, a claim must also create the row
  of a brand-new run, and SQLite has no ``FOR UPDATE``: the upsert does all three in one statement. Which
  keys a node got is read back, so nothing depends on row counts or ``RETURNING``.
- **renewal**: every ``lease_s / 3`` an ``UPDATE ... WHERE owner = me AND key IN (...)`` extends the leases
  of the runs the node executes (one it holds but no longer runs expires, and is taken over); the keys
  read back tell it which it lost (taken after it failed to renew in time): their runs are dropped.
- **fence**: a lease that expired may be taken while its old owner is paused (GC, SIGSTOP, a stalled disk),
  and that owner must then not commit a step. Every write of a run's progress carries, in its own
  transaction and ahead of the run's row, an ``UPDATE`` of the run's lease row ``WHERE owner = me`` (on
  PostgreSQL it locks the row: a claim waits for our commit and then sees the lease renewed; or we wait for
  the claim's and update nothing) and an ``INSERT`` into ``scenario_lease_fence`` of the run's key when the
  lease is not ours: the table's CHECK refuses any row, so the whole transaction (event and run row) fails.
  The engine then reads the lease (``owner``) and drops the run if another node holds it.
- **time**: ``expires_wall`` is the claiming node's wall clock, so nodes keep NTP time; a skew only moves
  when a takeover happens, never lets two nodes commit a step (the owner column and the fence decide). A
  node starts a step only while ``fresh``: its last renewal (timed on its own clock from before it was
  sent) is younger than ``lease_s``, so a node cut off from the database stops sending before its lease
  can be taken. A notification sent by a node whose progress write is then refused is sent again by the
  run's new owner (the outside world sees it twice; the timeline records it once).
- **SQLite** serves one node: the same statements run there and every lease is the node's own
  (``node_id`` "local" unless configured), so a restarted gateway takes its runs back at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import trio

from gateway.errors import GatewayError
from gateway.incident.store import AsyncStore, Statement
from gateway.incident.store_pg import NODE_ID

SCHEMA = """
CREATE TABLE IF NOT EXISTS scenario_leases (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS scenario_leases_owner ON scenario_leases(owner);
CREATE TABLE IF NOT EXISTS scenario_lease_fence (
    refused_run TEXT PRIMARY KEY CHECK (refused_run = '')
);
"""
LOCAL = "local"
LEASE_S = 5.0
CHUNK = 500  # keys per IN (...)
SLACK_S = 0.01  # a lease is taken once its end has passed on the taker's clock
_CLAIM = ("INSERT INTO scenario_leases (key, owner, expires_wall) VALUES (?,?,?) ON CONFLICT (key) DO UPDATE"
          " SET owner=excluded.owner, expires_wall=excluded.expires_wall"
          " WHERE scenario_leases.expires_wall<? OR scenario_leases.owner=excluded.owner")
_RENEW_ONE = "UPDATE scenario_leases SET expires_wall=? WHERE key=? AND owner=?"
_FENCE = ("INSERT INTO scenario_lease_fence (refused_run) SELECT ? WHERE NOT EXISTS"
          " (SELECT 1 FROM scenario_leases WHERE key=? AND owner=?)")


class LeaseLost(GatewayError):
    """Another node holds the lease of a run this node was executing (or was about to start)."""


def node_name(configured: str, shared: bool) -> str:
    """This node's id: ``[cluster] node_id`` if set; else "local" on a store one node uses (SQLite), or
    on a shared one the tag its PostgreSQL connections carry, drawn per process (``store_pg.NODE_ID``: a
    restarted node then waits out its old leases)."""
    if configured:
        return configured
    return NODE_ID if shared else LOCAL


class Leases:
    """This node's leases on scenario runs, in the incident store's database (see the module docstring)."""

    def __init__(self, store: AsyncStore, node_id: str = LOCAL, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.node_id = node_id
        self.lease_s = lease_s
        self._fresh_until = -math.inf  # on Trio's clock
        store.sync.apply_schema(SCHEMA)

    def fresh(self) -> bool:
        """Whether the last renewal is recent enough to start a step (non-blocking)."""
        return trio.current_time() < self._fresh_until

    def claim_statement(self, key: str) -> Statement:
        """Take ``key``'s lease if it is free, expired or ours (write it with the run's first event)."""
        now = time.time()
        return _CLAIM, (key, self.node_id, now + self.lease_s, now)

    def fence(self, key: str) -> list[Statement]:
        """Statements that renew ``key``'s lease and fail their transaction unless it is still ours: put
        them ahead of every write of the run's progress."""
        return [(_RENEW_ONE, (time.time() + self.lease_s, key, self.node_id)),
                (_FENCE, (key, key, self.node_id))]

    def end_statement(self, key: str) -> Statement:
        """Give up ``key``'s lease (with the write that finishes its run)."""
        return "DELETE FROM scenario_leases WHERE key=? AND owner=?", (key, self.node_id)

    async def claim(self, keys: Iterable[str]) -> set[str]:
        """Take the leases of ``keys`` that are free, expired or already ours; the keys now held."""
        wanted = set(keys)
        if not wanted:
            return set()
        await self.store.write([self.claim_statement(k) for k in sorted(wanted)])
        return wanted & await self._held()

    async def renew(self, keys: Iterable[str]) -> set[str]:
        """Extend the leases of ``keys`` (the runs this node executes); those of them it still holds. Also
        with no keys it reads the table: a success makes the node ``fresh``. Raises StoreError."""
        sent, wanted = trio.current_time(), sorted(set(keys))
        if wanted:
            await self.store.write(self._renewals(wanted, time.time() + self.lease_s))
        held = await self._held()
        self._fresh_until = sent + self.lease_s
        return held.intersection(wanted)

    def _renewals(self, keys: Sequence[str], until: float) -> list[Statement]:
        chunks = [keys[i:i + CHUNK] for i in range(0, len(keys), CHUNK)]
        return [(f"UPDATE scenario_leases SET expires_wall=? WHERE owner=? AND key IN ({','.join('?' * len(c))})",
                 (until, self.node_id, *c)) for c in chunks]

    async def next_look_s(self, most: float) -> float:
        """How long to wait before looking for expired leases again: ``most``, or less when another node's
        lease ends sooner (a dead node's runs are taken over as its lease ends, not up to ``most`` later)."""
        now = time.time()
        rows = await self.store.read("SELECT min(expires_wall) FROM scenario_leases WHERE owner<>? AND expires_wall>=?",
                                     (self.node_id, now))
        soonest = rows[0][0] if rows else None
        return most if soonest is None else max(0.0, min(most, float(soonest) - now + SLACK_S))  # type: ignore[arg-type]

    async def owner(self, key: str) -> str | None:
        """The node holding ``key``'s lease (None: nobody)."""
        rows = await self.store.read("SELECT owner FROM scenario_leases WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    async def _held(self) -> set[str]:
        rows = await self.store.read("SELECT key FROM scenario_leases WHERE owner=?", (self.node_id,))
        return {str(r[0]) for r in rows}
