"""How long an incident write waits for PostgreSQL's synchronous standby (issue 14), and what then.

With ``synchronous_standby_names`` set, a COMMIT returns once the standby has the write too: "committed"
means on two machines. If the only standby dies, PostgreSQL makes every COMMIT wait for it, however long,
and ``statement_timeout`` does not end that wait (measured: still waiting after 55 s). A 112 incident is
committed before its call is answered, so a centre that lost its standby would stop answering; the local
spool does not help (PostgreSQL is reachable, it just does not reply).

So a write's COMMIT is given ``commit_wait_s``: when it is still waiting then, the gateway cancels the wait
(``conn.cancel_safe()`` from a timer thread). PostgreSQL then returns from the COMMIT with the warning
"canceling wait for synchronous replication": the transaction *is* committed on the primary, only not yet
confirmed by the standby. From then on, until the standby confirms again, each transaction says
``SET LOCAL synchronous_commit TO local`` (no wait at all) except one every ``PROBE_EVERY_S``, which waits
again (at most ``commit_wait_s``) to see whether the standby is back. Meanwhile ``/health`` is degraded
and says since when commits are on the primary only. The centre keeps answering calls and keeps a record on
one machine, which is what it would have with no standby at all, and is told.

Only the COMMIT is timed: the statements run first (pipelined, one round trip), then the COMMIT on its own,
so a slow statement is ``statement_timeout``'s and never cancelled here. Without synchronous replication
(``synchronous_standby_names`` empty, or the session's ``synchronous_commit`` below ``remote_write``) a
write stays one round trip, untimed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

log = logging.getLogger(__name__)
COMMIT_WAIT_S = 1.0
PROBE_EVERY_S = 5.0
CANCELLED = "canceling wait for synchronous replication"
WAITING = ("on", "remote_write", "remote_apply")  # synchronous_commit levels that wait for a standby


def waits_for_standby(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether a COMMIT on this connection waits for a synchronous standby."""
    row = conn.execute("SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit')"
                       ).fetchone()
    return bool(row and str(row[0]).strip() and str(row[1]) in WAITING)


class SyncWait:
    """One connection's COMMITs against the synchronous standby (see the module). Used under its lock."""

    def __init__(self, commit_wait_s: float = COMMIT_WAIT_S, probe_every_s: float = PROBE_EVERY_S) -> None:
        self.commit_wait_s = commit_wait_s
        self.probe_every_s = probe_every_s
        self.unconfirmed_since: float | None = None  # wall clock of the first commit the standby did not confirm
        self._probed = 0.0  # monotonic
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._syncs = False
        self._cancelled = False

    def problem(self) -> str:
        """The ``/health`` reason while commits are on the primary only ("" when none)."""
        if self.unconfirmed_since is None:
            return ""
        return (f"store: PostgreSQL's synchronous standby has not confirmed a commit since "
                f"{time.strftime('%H:%M:%S', time.localtime(self.unconfirmed_since))} (waited "
                f"{self.commit_wait_s:g} s): incidents are committed on the primary only")

    @contextmanager
    def transaction(self, conn: psycopg.Connection[tuple[object, ...]]) -> Iterator[bool]:
        """One write's transaction; yields whether its COMMIT must be timed (the caller then runs its
        statements and leaves the block, which commits). Raises psycopg's errors."""
        if conn is not self._conn:  # a new connection: is there a standby to wait for?
            self._conn, self._syncs = conn, waits_for_standby(conn)
            conn.add_notice_handler(self._notice)
        timed = self._syncs and (self.unconfirmed_since is None or self._probe_due())
        with conn.transaction():
            if self._syncs and not timed:
                conn.execute("SET LOCAL synchronous_commit TO local")
            yield timed
            if timed:
                self._cancelled = False
                timer = threading.Timer(self.commit_wait_s, conn.cancel_safe)
                timer.daemon = True
                timer.start()
        if timed:
            timer.cancel()
            self._after(timed_out=self._cancelled)

    def _probe_due(self) -> bool:
        return time.monotonic() - self._probed >= self.probe_every_s

    def _after(self, timed_out: bool) -> None:
        self._probed = time.monotonic()
        if timed_out and self.unconfirmed_since is None:
            self.unconfirmed_since = time.time()
            log.critical("PostgreSQL's synchronous standby did not confirm a commit within %g s: commits go on the"
                         " primary only until it confirms again", self.commit_wait_s)
        elif not timed_out and self.unconfirmed_since is not None:
            log.warning("PostgreSQL's synchronous standby confirms commits again (unconfirmed since %s)",
                        time.strftime("%H:%M:%S", time.localtime(self.unconfirmed_since)))
            self.unconfirmed_since = None

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        if CANCELLED in (diag.message_primary or ""):
            self._cancelled = True
