"""Callers cut off with a node that died (issue 14, several nodes): closed on the record, on the call-back list.

A call that was up on a node whose Asterisk died is gone with it: SIP cannot move a call off a dead box,
and the caller hears silence and hangs up. Its incident stays as that node last wrote it (new, queued,
ringing, answered: a caller waiting or talking) and nobody would ever close it: the supervisors' board
would count a caller waiting who is not, and nobody would call back a person cut off mid-emergency.

So a live node watches the others (``incident.nodes``). Once a node is lost (its row not renewed for
``lost_after``), every incident of a call its Asterisk had (the channel id starts with the node's
``systemname``, ``settings.cluster.system_name``) still in a live state, made before the node was last
heard of, is closed: a ``call_lost`` event (the node, when it was last heard of, whether a dispatcher had
answered) and, when call-backs are on and the number can be dialled, the call-back list — answered or not,
that person's call ended in the middle. Each close is one write guarded by a replay key of its own
(``node-lost:<incident>``, a plain INSERT): if two live nodes close the same call the second write fails
whole and is taken back, so the record says it once.

A node's gateway that died while its Asterisk lived is seen lost too: its callers still in a dispatcher's
Dial go on talking. Their incidents are closed all the same (a call-back to someone who was still talking
is the lesser harm than none to someone cut off) and the gateway, restarted, adopts the calls still up:
``was_cut`` tells it which, and it reopens them (``adopted`` with ``resumed``, the state the call is in
again) and takes them off the call-back list (``still_connected``): the record ends up saying what happened.
A node without a ``node_id`` (one node on SQLite) has no ``systemname`` and nothing here applies to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

from gateway.errors import GatewayError, StoreError
from gateway.incident.callback_list import diallable
from gateway.incident.callback_table import CallbackTable, abandoned
from gateway.incident.nodes import Nodes, NodeState
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident
from gateway.incident.store import AsyncStore, Statement, event
from gateway.settings.cluster import system_name

log = logging.getLogger(__name__)
LIVE = ("new", "queued", "ringing", "answered")  # "overflowed": handed to the dialplan, no longer ours to close
# Calls are looked for this far back (by the created_wall index: the incidents table holds months): no
# emergency call lasts a day.
LONGEST_CALL_S = 24 * 3600.0
_GUARD = "INSERT INTO seen (key, wall) VALUES (?,?)"  # no ON CONFLICT: a second close fails whole


def was_cut(incident: Incident) -> bool:
    """Closed as cut off (``call_lost``, its last word on the call) though its channel is still up: an incident
    to reopen when its call is adopted."""
    ends = [e.kind for e in incident.timeline if e.kind in ("call_lost", "hung_up")]
    return incident.state == "closed" and bool(ends) and ends[-1] == "call_lost"


def reopened(incident_id: str, wall: float) -> list[Statement]:
    """A reopened call off the call-back list (its caller never left: ``still_connected``), and its close guard
    given back, so that a second loss of its node closes it again."""
    return [("UPDATE callbacks SET outcome='still_connected', cleared_wall=? WHERE incident_id=?"
             " AND cleared_wall IS NULL", (wall, incident_id)),
            ("DELETE FROM seen WHERE key=?", (f"node-lost:{incident_id}",))]


class LostCalls:
    """Closes the calls of lost nodes; ``closed`` counts them (this node's work)."""

    def __init__(self, store: AsyncStore, recorder: Recorder, nodes: Nodes, *, callbacks: bool) -> None:
        self.store = store
        self.recorder = recorder
        self.nodes = nodes
        self.callbacks = callbacks
        self.closed = 0
        CallbackTable(store)  # its rows are written with the closes

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Look at the other nodes every beat until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(self.nodes.period_s)
            for node in self.nodes.known():
                if not node.alive and node.node != self.nodes.node_id:
                    try:
                        await self.close_calls_of(node)
                    except GatewayError as exc:
                        log.error("cluster: calls of lost node %s not closed yet: %s", node.node, exc)

    async def close_calls_of(self, node: NodeState) -> int:
        """Close the live call incidents of lost ``node``; how many this node closed. Raises StoreError."""
        name = system_name(node.node)
        if not name:
            return 0
        rows = await self.store.read(
            f"SELECT id FROM incidents WHERE created_wall>=? AND created_wall<=? AND channel_id LIKE ? AND state IN"
            f" ({','.join('?' * len(LIVE))}) ORDER BY created_wall",
            (node.seen_wall - LONGEST_CALL_S, node.seen_wall + self.nodes.period_s, f"{name}-%", *LIVE))
        closed = 0
        for (incident_id,) in rows:
            if await self._close(str(incident_id), node):
                closed += 1
                self.closed += 1
        if closed:
            log.warning("cluster: node %s lost; %d of its calls closed and listed for call-back", node.node, closed)
        return closed

    async def _close(self, incident_id: str, node: NodeState) -> bool:
        return await close_call(self.recorder, incident_id, "call_lost", f"node:{self.nodes.node_id}",
                                listed=lambda incident: self.callbacks, node=node.node,
                                last_heard_wall=node.seen_wall)


async def close_call(recorder: Recorder, incident_id: str, kind: str, actor: str, *,
                     listed: Callable[[Incident], bool], **data: str | int | float | bool | None) -> bool:
    """Close the call incident ``incident_id`` with event ``kind`` (``data``, and whether a dispatcher had
    answered) if it is still live, on the call-back list if ``listed`` says so and its number can be dialled.
    One write, guarded (``node-lost:<id>``): False if it is no longer live or another node closed it first.
    Raises StoreError."""
    held = await recorder.acquire(incident_id)
    try:
        incident = held.incident
        if incident.state not in LIVE:
            return False
        was, now = incident.state, time.time()
        callback = listed(incident) and diallable(incident.caller.number)
        item = event(kind, actor, **data, answered=incident.answer_s is not None, callback=callback)
        try:
            await recorder.record_event(held, item, state="closed", extra=[(_GUARD, (f"node-lost:{incident_id}", now))],
                                        with_event=[abandoned(incident, now)] if callback else ())
        except StoreError:
            recorder.withdraw(held, [item])
            incident.state = was
            held.riders = [r for r in held.riders if r[0] is not item]
            if (await recorder.store.get(incident_id)).state not in LIVE:
                return False  # its guard met another node's: that node closed it
            raise
        return True
    finally:
        recorder.release(held)


async def close_vanished(store: AsyncStore, recorder: Recorder, node_id: str, tracked: Callable[[], set[str]],
                         channels: Callable[[], Awaitable[set[str]]], asterisk_started_wall: float, *,
                         callbacks: bool) -> int:
    """After (re)connecting to its Asterisk: close this node's call incidents still live whose channel is gone
    (the call ended while the gateway was not listening: a restart, ARI away). If Asterisk itself started
    after the call came in, the call was cut by that restart: ``call_lost`` and the call-back list; otherwise
    it ended unseen: ``hung_up`` (``unseen``), listed for call-back when nobody had answered, like any
    abandoned call. The incidents are read before the channels, so a call arriving meanwhile is never taken
    for gone. How many were closed; raises StoreError and AriError (the next reconnect tries again)."""
    tag = system_name(node_id)
    marks = ",".join("?" * len(LIVE))
    rows = await store.read(f"SELECT id, channel_id, created_wall FROM incidents WHERE created_wall>=? AND state IN"
                            f" ({marks}) AND " + ("channel_id LIKE ?" if tag else "channel_id<>?"),
                            (time.time() - LONGEST_CALL_S, *LIVE, f"{tag}-%" if tag else ""))
    present = await channels() | tracked()
    closed = 0
    for incident_id, channel_id, created in rows:
        if channel_id in present:
            continue
        if float(created) < asterisk_started_wall:  # type: ignore[arg-type]
            done = await close_call(recorder, str(incident_id), "call_lost", "gateway", listed=lambda _: callbacks,
                                    reason="asterisk_restarted", asterisk_started_wall=asterisk_started_wall)
        else:
            done = await close_call(recorder, str(incident_id), "hung_up", "gateway", unseen=True,
                                    listed=lambda i: callbacks and i.answer_s is None)
        closed += done
    if closed:
        log.warning("intake: %d call(s) ended while the gateway was not listening: closed on the record", closed)
    return closed
