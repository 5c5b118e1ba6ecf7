"""Incident changes made by the other gateway nodes, onto this node's bus (issue 14, PostgreSQL only).

Two gateways share one PostgreSQL; a dispatcher's console on either shows every incident. Theory of
operation:

- The database tells. A trigger on ``incidents`` (``SCHEMA``, migration 2 in ``gateway.stores``) runs
  ``pg_notify('ecgw_incident', '<node>:<incident id>')`` for every row inserted or updated, ``<node>`` being
  the writing connection's ``ecgw.node`` setting (``store_pg.connect``; ``store_pg.NODE_ID`` per process).
  PostgreSQL delivers a notification only when its transaction commits (a rolled-back write tells nobody)
  and folds identical ones of one transaction into one. The Recorder is not involved: every writer of the
  table (a spool replayed, ``gateway db copy``) is heard.
- A node listens on a connection of its own, on a thread of its own (``conn.notifies`` with a short timeout,
  so it can stop), and ignores its own tag: its Recorder published those changes already.
- Foreign ids collect in a set; the Trio side, woken by the first, gathers for ``GATHER_S``, takes the whole
  set and reads each incident's head once (one query per 500 ids) through the store, then publishes the
  summaries on the ``Bus``. A burst of changes to one incident is a few reads, not one per change; the last
  read starts after the last commit, so the bus ends at the latest state.
- A broken connection is made again with backoff (``state`` says "reconnecting" meanwhile: ``/health``).
  Changes committed while nobody listened are found by their ``updated_wall`` (index from migration 2):
  after a reconnect every incident updated since the last moment the listener knew it was listening, less
  ``CATCH_UP_SLACK_S`` (the nodes' clocks differ, and ``updated_wall`` is stamped before its commit), is
  read and published. The bus drops a summary equal to the last it published, so overlap costs nothing.

psycopg's errors become StoreError here (``_listening``) and nowhere else in this module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec
import psycopg
import trio

from gateway.errors import GatewayError, StoreError
from gateway.incident.bus import Bus
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident, IncidentSummary
from gateway.incident.store import AsyncStore, summary
from gateway.incident.store_pg import NODE_ID, connect, where

log = logging.getLogger(__name__)
CHANNEL = "ecgw_incident"
POLL_S = 0.25  # how long the thread waits for a notification before looking at its stop flag
GATHER_S = 0.02  # after the first id of a burst, how long more ids are gathered before one read
BACKOFF_S = (0.1, 5.0)  # first and longest wait between connection attempts
CATCH_UP_SLACK_S = 10.0
CATCH_UP_LIMIT = 2000  # incidents read after a reconnect, newest first
READ_CHUNK = 500
SCHEMA = f"""
CREATE INDEX IF NOT EXISTS incidents_updated ON incidents(updated_wall);
CREATE OR REPLACE FUNCTION ecgw_incident_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', coalesce(current_setting('ecgw.node', true), '') || ':' || NEW.id);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER ecgw_incident_changed AFTER INSERT OR UPDATE ON incidents
    FOR EACH ROW EXECUTE FUNCTION ecgw_incident_changed();
"""
_decode_incident = msgspec.json.Decoder(Incident).decode


@dataclass(frozen=True)
class RemoteStatistics:
    state: str  # "connecting", "listening", "reconnecting"
    notifications: int  # every one heard, this node's own included
    own: int  # this node's own, ignored
    reads: int  # queries for the heads of notified incidents (a burst is coalesced into few)
    published: int  # summaries handed to the bus (it drops those equal to the last it sent)
    reconnects: int


class RemoteChanges:
    """Listens for the other nodes' incident changes and publishes them on ``bus`` (see the module).

    ``run`` owns the listening thread and its connection (to ``dsn``); ``node_id`` is this node's tag (the one
    its store's connection sets). Connection failures are retried forever, never raised.
    """

    def __init__(self, dsn: str, store: AsyncStore, bus: Bus, *, node_id: str = NODE_ID,
                 connect_timeout_s: int = 2, catch_up_slack_s: float = CATCH_UP_SLACK_S,
                 recorder: Recorder | None = None) -> None:
        self.dsn, self.store, self.bus, self.node_id = dsn, store, bus, node_id
        self.recorder = recorder  # the incidents it holds take the other nodes' changes (``incident.merge``)
        self.connect_timeout_s = connect_timeout_s
        self.catch_up_slack_s = catch_up_slack_s
        self.state = "connecting"
        self.last_error = ""
        self.backend_pid: int | None = None  # the listening connection's server process (for pg_stat_activity)
        self._lock = threading.Lock()  # guards what the thread hands over: _pending, _catch_up, _signalled
        self._pending: dict[str, None] = {}  # foreign ids heard and not yet read, in order
        self._catch_up: float | None = None  # after a reconnect: read everything updated since then
        self._signalled = False
        self._wake = trio.Event()
        self._first_attempt = trio.Event()
        self._counts = {"notifications": 0, "own": 0, "reads": 0, "published": 0, "reconnects": 0}

    def statistics(self) -> RemoteStatistics:
        return RemoteStatistics(state=self.state, **self._counts)

    def health(self) -> str:
        """For ``/health``: "listening", or what keeps it from listening."""
        if self.state == "reconnecting":
            return f"reconnecting ({self.last_error[:200]})"
        return self.state

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and publish until cancelled. Started once the first connection attempt is over, listening
        or not (the gateway starts while PostgreSQL is away; ``state`` says which)."""
        token, stop = trio.lowlevel.current_trio_token(), threading.Event()

        async def stop_when_cancelled() -> None:
            try:
                await trio.sleep_forever()
            finally:
                stop.set()  # the thread sees it within POLL_S (or a connect timeout) and returns

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_when_cancelled)
            nursery.start_soon(trio.to_thread.run_sync, self._listen, stop, token)
            await self._first_attempt.wait()
            task_status.started()
            await self._deliver_forever()

    # --- Trio's side ------------------------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(GATHER_S)
            self._wake = trio.Event()
            with self._lock:
                ids, self._pending, self._signalled = list(self._pending), {}, False
                since, self._catch_up = self._catch_up, None
            try:
                changed = await self._read(ids, since)
            except StoreError as exc:  # PostgreSQL away: asked again once it answers
                log.warning("cannot read %d incident(s) another node changed: %s", len(ids), exc)
                self._hand_over(ids, since)
                await trio.sleep(BACKOFF_S[1] / 5)
                continue
            for change in changed:
                self.bus.publish(change)
            self._counts["published"] += len(changed)
            await self._merge([c.id for c in changed])

    async def _merge(self, ids: list[str]) -> None:
        """The incidents this node holds in memory take the other node's changes (``incident.merge``)."""
        if self.recorder is None:
            return
        for incident_id in ids:
            try:
                await self.recorder.merge_remote(incident_id)
            except GatewayError as exc:  # the next change tells again; this node's next write may undo theirs
                log.warning("incident %s: another node's change not merged here: %s", incident_id, exc)

    async def _read(self, ids: list[str], since: float | None) -> list[IncidentSummary]:
        """The summaries of ``ids`` (and, after a reconnect, of every incident updated since ``since``)."""
        rows: list[tuple[object, ...]] = []
        if since is not None:
            rows += await self.store.read("SELECT doc FROM incidents WHERE updated_wall>=? ORDER BY updated_wall"
                                          " DESC LIMIT ?", (since, CATCH_UP_LIMIT))
            self._counts["reads"] += 1
        for at in range(0, len(ids), READ_CHUNK):
            chunk = ids[at:at + READ_CHUNK]
            rows += await self.store.read(f"SELECT doc FROM incidents WHERE id IN ({','.join('?' * len(chunk))})",
                                          tuple(chunk))
            self._counts["reads"] += 1
        return [summary(_decode_incident(doc)) for (doc,) in rows]  # type: ignore[arg-type]

    def _signal(self) -> None:
        self._wake.set()

    def _attempted(self) -> None:
        self._first_attempt.set()

    # --- the listening thread ---------------------------------------------------------------------------

    def _hand_over(self, ids: list[str], since: float | None, token: trio.lowlevel.TrioToken | None = None) -> None:
        """Queue ids (and a catch-up) for Trio's side; from the thread (with ``token``) or from Trio."""
        with self._lock:
            self._pending.update(dict.fromkeys(ids))
            if since is not None:
                self._catch_up = since if self._catch_up is None else min(since, self._catch_up)
            if self._signalled:
                return
            self._signalled = True
        if token is None:
            self._wake.set()
            return
        try:
            token.run_sync_soon(self._signal)
        except trio.RunFinishedError:
            pass  # nobody is left to tell

    def _listen(self, stop: threading.Event, token: trio.lowlevel.TrioToken) -> None:
        """The thread: LISTEN, hand foreign ids over, reconnect with backoff, until ``stop``."""
        backoff, heard = BACKOFF_S[0], None  # heard: when it last knew it was listening (wall clock)
        while not stop.is_set():
            try:
                with self._listening() as conn:
                    self.state, backoff = "listening", BACKOFF_S[0]
                    token.run_sync_soon(self._attempted)
                    if heard is not None:  # a reconnect: what was committed meanwhile is found by its time
                        log.warning("listening for other nodes' incident changes again")
                        self._hand_over([], heard - self.catch_up_slack_s, token)
                    while not stop.is_set():
                        for note in conn.notifies(timeout=POLL_S):  # each one as it comes
                            self._heard(note.payload, token)
                        heard = time.time()
            except StoreError as exc:
                self.state, self.last_error = "reconnecting", str(exc)
                self._counts["reconnects"] += 1
                heard = heard if heard is not None else time.time()
                log.warning("not listening for other nodes' incident changes: %s; again in %.1f s", exc, backoff)
                token.run_sync_soon(self._attempted)
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])

    def _heard(self, payload: str, token: trio.lowlevel.TrioToken) -> None:
        node, _, incident_id = payload.partition(":")
        self._counts["notifications"] += 1
        if node == self.node_id:
            self._counts["own"] += 1
        else:
            self._hand_over([incident_id], None, token)

    @contextmanager
    def _listening(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A connection listening on ``CHANNEL``; psycopg's errors as StoreError. Closed on leaving."""
        conn = connect(self.dsn, connect_timeout_s=self.connect_timeout_s)  # its errors are StoreError already
        try:
            conn.execute(f"LISTEN {CHANNEL}")
            self.backend_pid = conn.info.backend_pid
            yield conn
        except psycopg.Error as exc:
            said = str(exc).strip().splitlines() or [type(exc).__name__]
            raise StoreError(f"listening at {where(self.dsn)} failed: {said[0]}") from exc
        finally:
            conn.close()
