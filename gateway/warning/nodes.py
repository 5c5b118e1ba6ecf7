"""The warnings store from Trio code (``AsyncOutbox``), and this node's liveness when nodes share it (issue 14).

Theory of operation. Each node sharing the store (PostgreSQL) holds a lease in ``outbox_nodes``: its row's
``expires_wall``, renewed every ``lease_s / 3`` by ``Liveness.run`` (``Queries.heartbeat``, on a connection
and thread of its own: never behind a fan-out chunk). The jobs a node claims are written with its id; while
its lease runs no other node touches them. Every renewal, a node also adopts (``Queries.adopt``) the "sending"
jobs of nodes whose lease ended, and recovers them as its own after a crash (the engine asks the provider
where it can tell, else sends again), so a dead node's unknown outcomes are settled about ``lease_s`` after
its last renewal.

A node starts a claim only while ``fresh``: its last renewal, timed on its own clock from before it was
sent, is younger than ``lease_s``. A node cut off from the database thus stops claiming before its lease
can end; a batch it already claimed and is still handing on when another node adopts it may go out
twice (the adopter asks the provider first where it can). ``expires_wall`` is the renewing node's wall
clock: nodes keep NTP time (a skew moves when a takeover happens, as for ``scenario.leases``).

On SQLite (one node) there is no lease: ``fresh`` is always true and ``run`` returns at once.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from gateway.errors import StoreError
from gateway.warning.outbox import Queries

log = logging.getLogger(__name__)
LEASE_S = 5.0


class AsyncOutbox:
    """The outbox for Trio code: every call on one worker thread, in order."""

    def __init__(self, outbox: Queries) -> None:
        self.sync = outbox
        self._limiter = trio.CapacityLimiter(1)
        self._beside = trio.CapacityLimiter(1)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    async def beside(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a thread of its own, not behind ``call``'s work: for what uses a connection of its
        own (the lease's renewal, ``Queries.heartbeat``)."""
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._beside)


class Liveness:
    """This node's lease in a shared warnings store (see the module docstring)."""

    def __init__(self, db: AsyncOutbox, lease_s: float = LEASE_S) -> None:
        self.db = db
        self.lease_s = lease_s
        self._fresh_until = -math.inf  # on Trio's clock

    def fresh(self) -> bool:
        """Whether this node may claim jobs now (non-blocking)."""
        return not self.db.sync.shared or trio.current_time() < self._fresh_until

    async def renew(self) -> None:
        """Extend this node's lease by ``lease_s``. Raises StoreError."""
        sent = trio.current_time()
        await self.db.beside(self.db.sync.heartbeat, time.time(), self.lease_s)
        self._fresh_until = sent + self.lease_s

    async def run(self, adopt: Callable[[], Awaitable[None]], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew the lease (started once the first renewal is in) and call ``adopt`` every ``lease_s / 3``,
        until cancelled. The two go on side by side: an adoption waits for the store's worker (behind a fan-out
        chunk, seconds), a renewal must not wait for it. A failed renewal or adoption is tried again at the next
        turn: meanwhile the lease runs out and this node stops claiming (``fresh``). Raises StoreError if the
        first renewal fails."""
        if not self.db.sync.shared:
            task_status.started()
            return
        await self.renew()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._every_turn, self.renew, "renew its lease")
            await self._every_turn(adopt, "adopt a silent node's jobs")

    async def _every_turn(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            await trio.sleep(self.lease_s / 3)
            try:
                await work()
            except StoreError as exc:  # the store is away: freshness runs out, which is the reaction
                log.warning("warnings store: node %s cannot %s (%s)", self.db.sync.node_id, what, exc)
