"""The delivery engine: turns sending alerts into messages on every open channel, exactly as far
as the outbox says, at the providers' pace.

Theory of operation. ``start`` records the fan-out (siren and channel-post jobs first, with a higher priority) and
a fan-out task turns the audience into queued jobs in chunks, each chunk committed with its cursor. Each channel
has workers that take tokens from the channel's bucket, claim that many due jobs (marking them "sending" durably),
render and deliver them as one batch, and record the receipts: sent/delivered, retry later (back-off with jitter,
or the provider's retry-after), or fail over to the recipient's next channel. A channel whose batches keep failing
opens its breaker: its jobs fail over at once instead of waiting, and the officer sees "down" (each channel's
bucket, breaker and health probe live in its ``Slot``, in ``slots.py``). On start, jobs left "sending" by a crash
are reconciled with the provider where it can tell (``lookup``), else sent again: a warning delivered twice is
better than one never delivered; so are a dead node's, adopted by a live one when its lease ends (``nodes``:
several nodes on one outbox).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from channels.base import Channel, Language, Message, Receipt, failed
from gateway.errors import GatewayError
from gateway.warning.nodes import LEASE_S, AsyncOutbox, Liveness
from gateway.warning.outbox import RecipientRow, idempotency_key, parse_key
from gateway.warning.policy import DRILL_PREFIX, KIND_OF_DRIVER, Router, backoff_s
from gateway.warning.recipients import KINDS
from gateway.warning.records import (
    DELIVERED,
    FAILED,
    MOVED,
    QUEUED,
    SENT,
    WITHDRAWN,
    AlertRecord,
    AuditEvent,
    ChannelProgress,
)
from gateway.warning.render import Renderer
from gateway.warning.slots import Slot

log = logging.getLogger(__name__)
FANOUT_CHUNK = 20_000
FIRST_CHUNK = 500
# Jobs claimed but not yet answered are resent after a crash: keep that window small.
CLAIM_MAX = 100
MAX_ATTEMPTS = 6
IDLE_POLL_S = 0.25
Progress = Callable[[str, str, dict[str, ChannelProgress]], None]


@dataclass
class Tracker:
    """In-memory progress of one sending alert (rebuilt from the outbox after a restart)."""

    record: AlertRecord
    created: int = 0
    finished: int = 0
    fanout_done: bool = False
    last_at: float | None = None  # wall time of the latest outcome
    channels: dict[str, ChannelProgress] = field(default_factory=dict)


class Engine:
    """Owns one worker group per channel and one fan-out task per sending alert."""

    def __init__(self, db: AsyncOutbox, channels: dict[str, Channel], renderer: Renderer, *,
                 sms_routes: Sequence[tuple[str, str]] = (("+", "smpp"),), public_channel: str = "",
                 drill_public_channel: str = "", waiting: Sequence[str] = (),
                 on_progress: Progress | None = None, on_state: Callable[[AlertRecord], None] | None = None,
                 lease_s: float = LEASE_S) -> None:
        """``lease_s``: how long a node sharing the outbox may go unheard before its jobs are adopted."""
        self.db = db
        self.liveness = Liveness(db, lease_s)
        self.renderer = renderer
        self.slots = {key: Slot.for_channel(key, ch) for key, ch in channels.items()}
        # Channels that did not open yet are known (routing waits for them) but not usable.
        self.usable = {key: True for key in self.slots} | {key: False for key in waiting}
        self.router = Router(sms_routes, self.usable, KINDS)
        self.public_channels = {"": public_channel, DRILL_PREFIX: drill_public_channel}
        self.stopped: set[int] = set()  # alerts a Cancel or an Update overtook
        self._fanout_scopes: dict[int, trio.CancelScope] = {}
        self.on_progress = on_progress or (lambda *_: None)
        self.on_state = on_state or (lambda _: None)
        self.tracking: dict[int, Tracker] = {}
        self._nursery: trio.Nursery | None = None
        self._updates_send, self._updates = trio.open_memory_channel[tuple[str, Receipt]](10_000)

    # -- lifetime ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, then deliver until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.liveness.run, self._adopt)
            for record in await self.db.call(self.db.sync.alerts, 1000, ["sending"]):
                await self._track(record)
            for slot in self.slots.values():
                await self._recover(slot)
            for slot in self.slots.values():
                for _ in range(slot.workers):
                    nursery.start_soon(self._worker, slot)
            nursery.start_soon(self._apply_updates)
            nursery.start_soon(self._monitor)
            for slot in self.slots.values():
                nursery.start_soon(slot.probe, self.usable)
            for alert_no, cursor in await self.db.call(self.db.sync.pending_fanouts):
                await self._resume(alert_no, cursor)
            for alert_no, tracker in list(self.tracking.items()):
                if not await self.db.call(self.db.sync.has_fanout, alert_no):  # crashed right after "sending"
                    await self.start(tracker.record)
            task_status.started()

    async def add_channel(self, key: str, channel: Channel) -> None:
        """A channel that opened after the engine started (its provider was down at start)."""
        assert self._nursery is not None, "add_channel needs a running engine"
        slot = self.slots[key] = Slot.for_channel(key, channel)
        await self._recover(slot)
        self.usable[key] = True
        for _ in range(slot.workers):
            self._nursery.start_soon(self._worker, slot)
        self._nursery.start_soon(slot.probe, self.usable)

    def receipt_callback(self, slot_key: str) -> Callable[[Receipt], None]:
        """The ``on_update`` a driver gets: late receipts (callbacks, SMSC receipts) queue here."""

        def push(receipt: Receipt) -> None:
            try:
                self._updates_send.send_nowait((slot_key, receipt))
            except trio.WouldBlock:  # a burst beyond 10k pending receipts: the job stays "sent"
                pass

        return push

    async def start(self, record: AlertRecord) -> None:
        """Begin delivering a record that the workflow has just moved to "sending"."""
        alert_no, _ = await self.db.call(self.db.sync.get_alert, record.id)
        first = self._first_jobs(record)
        await self.db.call(self.db.sync.start_fanout, alert_no, first, time.time())
        await self._track(record)  # counts the first jobs from the outbox
        self._wake_all()
        await self._resume(alert_no, 0)

    async def stop_alert(self, record: AlertRecord) -> int:
        """A Cancel or an Update of ``record``'s chain is about to go out: every earlier message of
        the chain stops fanning out and withdraws what has not left yet. Returns jobs withdrawn."""
        root = record.root or record.id
        nos, withdrawn = await self.db.call(self.db.sync.stop_chain, root, record.id)
        for no in nos:
            self.stopped.add(no)
            scope = self._fanout_scopes.pop(no, None)
            if scope is not None:
                scope.cancel()
            tracker = self.tracking.get(no)
            if tracker:
                tracker.fanout_done = True
        return int(withdrawn)

    # -- fan-out ----------------------------------------------------------------------------

    def _first_jobs(self, record: AlertRecord) -> list[tuple[str, int, int]]:
        prefix = DRILL_PREFIX if record.exercise else ""
        jobs: list[tuple[str, int, int]] = []
        if prefix + "siren" in self.usable and "siren" in record.channels:
            jobs.extend((prefix + "siren", -(i + 1), 0) for i in range(len(record.zones)))
        if prefix + "telegram" in self.usable and "telegram" in record.channels and self.public_channels[prefix]:
            jobs.append((prefix + "telegram", 0, 0))
        return jobs

    async def _resume(self, alert_no: int, cursor: int) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._fanout, alert_no, cursor)

    async def _fanout(self, alert_no: int, cursor: int) -> None:
        with trio.CancelScope() as scope:
            self._fanout_scopes[alert_no] = scope
            await self._fan_out(alert_no, cursor)
        self._fanout_scopes.pop(alert_no, None)

    async def _fan_out(self, alert_no: int, cursor: int) -> None:
        record = await self.db.call(self.db.sync.alert_by_no, alert_no)
        root = None  # a Cancel tells those the chain reached; an Update reaches the zones' audience again
        if record.cap.msg_type == "Cancel" and record.root:
            root = record.root
        tracker = await self._track(record)
        kinds = [k for k in record.channels if k in KINDS]

        def route(row: RecipientRow) -> str | None:
            return self.router.channel(row, exercise=record.exercise) if _wants(row, kinds) else None

        done, chunk = False, FIRST_CHUNK  # small first: the first message must leave within 200 ms
        while not done:
            cursor, created, done = await self.db.call(
                self.db.sync.fanout_chunk, alert_no, record.zones, root, cursor, chunk, route, time.time())
            tracker.created += created
            chunk = min(FANOUT_CHUNK, chunk * 4)
            self._wake_all()
            await trio.sleep(0.01)  # let the woken workers' claims reach the outbox before the next chunk
        tracker.fanout_done = True
        if alert_no in self.tracking:
            self.tracking[alert_no].fanout_done = True

    async def _track(self, record: AlertRecord) -> Tracker:
        alert_no, record = await self.db.call(self.db.sync.get_alert, record.id)
        if alert_no not in self.tracking:
            progress = await self.db.call(self.db.sync.progress, alert_no)
            tracker = Tracker(record, channels=progress)
            if record.state in ("cancelled", "superseded"):
                self.stopped.add(alert_no)
            for p in progress.values():
                tracker.created += p.queued + p.sending + p.sent + p.delivered + p.failed + p.moved + p.withdrawn
                tracker.finished += p.sent + p.delivered + p.failed + p.moved + p.withdrawn
            tracker.fanout_done = bool(await self.db.call(self.db.sync.fanout_done, alert_no))
            # Another task may have tracked it while we awaited: the first one stays.
            return self.tracking.setdefault(alert_no, tracker)
        return self.tracking[alert_no]

    # -- delivery ---------------------------------------------------------------------------

    def _wake_all(self) -> None:
        for slot in self.slots.values():
            slot.wake.set()

    async def _worker(self, slot: Slot) -> None:
        while True:
            if not self.liveness.fresh():  # cut off from the other nodes: our claims may be adopted soon
                await slot.idle(IDLE_POLL_S)
                continue
            granted = await slot.take(CLAIM_MAX)
            jobs = await self.db.call(self.db.sync.claim, slot.key, granted, time.time())
            if not jobs:
                slot.refund(granted)
                await slot.idle(IDLE_POLL_S)
                continue
            await self._deliver(slot, jobs)

    async def _deliver(self, slot: Slot, jobs: list[tuple[int, int, int]]) -> None:
        for alert_no in {a for a, _, _ in jobs} - self.tracking.keys():  # e.g. a Cancel's jobs after a restart
            await self._track(await self.db.call(self.db.sync.alert_by_no, alert_no))
        now = time.time()
        stale = [(a, t, WITHDRAWN, "", "overtaken by a later message of its chain", now)
                 for a, t, _ in jobs if a in self.stopped]
        jobs = [job for job in jobs if job[0] not in self.stopped]
        rows = await self._rows(jobs)
        messages, failures = self._messages(slot, jobs, rows)
        failures.extend(stale)
        if messages and slot.breaker.is_open(now):
            await self._divert(slot, messages, rows, now)
            messages = []
        receipts = await self._hand_on(slot, messages)
        results, moves = self._outcomes(slot, messages, receipts, rows, now)
        results.extend(failures)
        slot.note_breaker(receipts, now, self.usable)
        await self.db.call(self.db.sync.finish, slot.key, results, moves, now)
        self._count(slot, results, moves, receipts)

    async def _hand_on(self, slot: Slot, messages: list[tuple[tuple[int, int, int], Message]]) -> list[Receipt]:
        """The channel's receipts, matched by idempotency key. A driver that breaks its contract
        (raises, or answers for other messages) costs a retry of these jobs, never the service."""
        if not messages:
            return []
        batch = [m for _, m in messages]
        try:
            receipts = await slot.channel.deliver(batch)
            by_key = {r.idempotency_key: r for r in receipts}
            return [by_key.get(m.idempotency_key) or failed(m, f"{slot.key}: no receipt for this message",
                                                             retryable=True) for m in batch]
        except Exception as exc:  # noqa: BLE001 - isolating a channel's bug from 112 intake is the point
            log.exception("%s: deliver() raised; %d jobs will be retried", slot.key, len(batch))
            return [failed(m, f"{slot.key}: driver error: {exc!r}"[:300], retryable=True) for m in batch]

    async def _divert(self, slot: Slot, messages: list[tuple[tuple[int, int, int], Message]],
                      rows: dict[int, RecipientRow], now: float) -> None:
        """The channel is down: recipients with another channel move now; sirens and posts wait
        for the breaker to half-open, without spending an attempt."""
        moves, held = [], []
        for (alert_no, target, _), _ in messages:
            nxt = self._next_channel(slot, alert_no, target, rows)
            if nxt:
                moves.append((alert_no, nxt, target))
            else:
                held.append((alert_no, target))
        retry_at = (slot.breaker.opened_at or now) + slot.breaker.cooldown_s
        results = [(a, t, MOVED, "", f"{slot.key} is down: {slot.breaker.reason}"[:300], now) for a, _, t in moves]
        await self.db.call(self.db.sync.finish, slot.key, results, moves, now)
        await self.db.call(self.db.sync.release, slot.key, held, retry_at)
        self._count(slot, results, moves, [])

    async def _rows(self, jobs: list[tuple[int, int, int]]) -> dict[int, RecipientRow]:
        ids = [t for _, t, _ in jobs if t > 0]
        return await self.db.call(self.db.sync.recipient_rows, ids) if ids else {}

    def _messages(self, slot: Slot, jobs: list[tuple[int, int, int]], rows: dict[int, RecipientRow]
                  ) -> tuple[list[tuple[tuple[int, int, int], Message]], list[tuple[int, int, int, str, str, float]]]:
        out, failures = [], []
        for job in jobs:
            alert_no, target, _ = job
            tracker = self.tracking.get(alert_no)
            try:
                if tracker is None:
                    raise GatewayError(f"alert #{alert_no} is not being sent")
                out.append((job, self._message(slot, tracker.record, target, rows)))
            except GatewayError as exc:  # a recipient deleted mid-send, a template that broke
                failures.append((alert_no, target, FAILED, "", str(exc)[:300], 0.0))
        return out, failures

    def _message(self, slot: Slot, record: AlertRecord, target: int, rows: dict[int, RecipientRow]) -> Message:
        key = idempotency_key(record.id, slot.key, target)

        def make(address: str, language: Language, body: str, **extra: Any) -> Message:
            return Message(idempotency_key=key, alert_id=record.id, exercise=record.exercise, address=address,
                           language=language, body=body, **extra)

        if target < 0:
            r = self.renderer.rendered(record, record.cap.infos[0].language[:2])
            if record.cap.msg_type == "Cancel":  # the all-clear silences the zone whatever the template says
                options = {"pattern": "off"}
            else:
                options = {"pattern": r.siren_pattern, "duration_s": str(r.siren_duration_s)}
            return make(record.zones[-target - 1], r.language, r.voice, options=options)
        if target == 0:
            body = "\n\n".join(self.renderer.rendered(record, lang).telegram for lang in ("kk", "ru", "en"))
            prefix = DRILL_PREFIX if slot.key.startswith(DRILL_PREFIX) else ""
            return make(self.public_channels[prefix], "kk", body, options={"format": "html"})
        row = rows.get(target)
        if row is None:
            raise GatewayError(f"recipient #{target} no longer exists")
        r = self.renderer.rendered(record, row[4])
        kind = KIND_OF_DRIVER[slot.driver]
        if kind == "email":
            return make(row[2], r.language, r.text, subject=r.subject, html=r.html)
        if kind == "telegram":
            return make(row[3], r.language, r.telegram, options={"format": "html"})
        if kind == "voice":
            return make(row[1], r.language, r.voice)
        return make(row[1], r.language, r.sms)

    def _outcomes(self, slot: Slot, messages: list[tuple[tuple[int, int, int], Message]], receipts: list[Receipt],
                  rows: dict[int, RecipientRow], now: float
                  ) -> tuple[list[tuple[int, int, int, str, str, float]], list[tuple[int, str, int]]]:
        results: list[tuple[int, int, int, str, str, float]] = []
        moves: list[tuple[int, str, int]] = []
        for ((alert_no, target, attempts), _), r in zip(messages, receipts, strict=True):
            if r.state != "failed":
                results.append((alert_no, target, DELIVERED if r.state == "delivered" else SENT, r.provider_id, "",
                                now))
                continue
            if alert_no in self.stopped:  # overtaken while in flight: no retry, no fail-over
                results.append((alert_no, target, FAILED, "", r.error[:300], now))
                continue
            retry = r.retryable and attempts < MAX_ATTEMPTS
            # Fail over when retrying cannot help or the channel is down; sirens and posts have no
            # other channel, so they keep retrying while they may.
            nxt = self._next_channel(slot, alert_no, target, rows) \
                if not retry or slot.breaker.is_open(now) else None
            if nxt:
                results.append((alert_no, target, MOVED, "", r.error[:300], now))
                moves.append((alert_no, nxt, target))
            elif retry:
                delay = r.retry_after_s if r.retry_after_s is not None else backoff_s(attempts)
                results.append((alert_no, target, QUEUED, "", r.error[:300], now + delay))
                if r.retry_after_s:
                    slot.bucket.pause(r.retry_after_s, trio.current_time())
            else:
                results.append((alert_no, target, FAILED, "", r.error[:300], now))
        return results, moves

    def _next_channel(self, slot: Slot, alert_no: int, target: int, rows: dict[int, RecipientRow]) -> str | None:
        tracker = self.tracking.get(alert_no)
        row = rows.get(target)
        if tracker is None or row is None:
            return None
        kinds = [k for k in tracker.record.channels if k in KINDS]
        if not _wants(row, kinds):
            return None
        return self.router.channel(row, exercise=tracker.record.exercise, after=slot.key)

    def _count(self, slot: Slot, results: list[tuple[int, int, int, str, str, float]],
               moves: list[tuple[int, str, int]], receipts: list[Receipt]) -> None:
        wall = time.time()
        for alert_no, _, state, _, _, _ in results:
            tracker = self.tracking.get(alert_no)
            if tracker is None:
                continue
            p = tracker.channels.setdefault(slot.key, ChannelProgress())
            p.sending = max(0, p.sending - 1)
            if state == QUEUED:
                p.retried += 1
                continue
            tracker.finished += 1
            tracker.last_at = wall
            name = {SENT: "sent", DELIVERED: "delivered", FAILED: "failed", MOVED: "moved",
                    WITHDRAWN: "withdrawn"}[state]
            setattr(p, name, getattr(p, name) + 1)
            if state in (SENT, DELIVERED) and p.first_at is None:
                p.first_at = wall
            p.health = slot.breaker.state
        for alert_no, _, _ in moves:
            if alert_no in self.tracking:
                self.tracking[alert_no].created += 1

    async def _adopt(self) -> None:
        """Take over the "sending" jobs of nodes whose lease ended, and recover them; carry on every fan-out
        not running here (a dead node's; nodes sharing one take turns on its cursor: ``fanout_chunk``)."""
        for slot in list(self.slots.values()):
            if stuck := await self.db.call(self.db.sync.adopt, slot.key, time.time()):
                log.warning("%s: %d jobs of a node gone silent adopted", slot.key, len(stuck))
                await self._recover(slot, stuck)
        for alert_no, cursor in await self.db.call(self.db.sync.pending_fanouts):
            if alert_no not in self._fanout_scopes and alert_no not in self.stopped:
                await self._resume(alert_no, cursor)

    async def _recover(self, slot: Slot, stuck: list[tuple[int, int, int]] | None = None) -> None:
        """Jobs left "sending" by a crash (this node's, or ``stuck``): ask the provider if it can tell, else resend."""
        if stuck is None:
            stuck = await self.db.call(self.db.sync.sending, slot.key)
        if not stuck:
            return
        lookup = getattr(slot.channel, "lookup", None)
        again = [(a, t) for a, t, _ in stuck]
        if lookup is not None:
            try:
                again = await self._reconcile(slot, stuck, lookup)
            except GatewayError as exc:  # the provider cannot tell now: resending beats silence
                log.warning("%s: cannot reconcile %d jobs with the provider (%s); resending", slot.key, len(stuck), exc)
        await self.db.call(self.db.sync.requeue, slot.key, again)
        for alert_no in sorted({a for a, _, _ in stuck}):
            record = await self.db.call(self.db.sync.alert_by_no, alert_no)
            resent = sum(1 for a, _ in again if a == alert_no)
            confirmed = sum(1 for a, _, _ in stuck if a == alert_no) - resent
            # Audited so the officer (and the drill report) can see what may have gone out twice.
            await self.db.call(self.db.sync.audit, record.id, AuditEvent(
                at=time.time(), actor="gateway", kind="recovered",
                detail={"channel": slot.key, "outcome_unknown_resent": resent, "confirmed_by_provider": confirmed}))

    async def _reconcile(self, slot: Slot, stuck: list[tuple[int, int, int]], lookup: Any) -> list[tuple[int, int]]:
        rows = await self._rows(stuck)
        built, _ = self._messages(slot, stuck, rows)
        found = await lookup([m for _, m in built]) if built else []
        # Only what the provider accepted counts as sent; a failure it reports is retried as usual.
        known = [(job, r) for (job, _), r in zip(built, found, strict=True) if r is not None and r.state != "failed"]
        if known:
            await self.db.call(self.db.sync.finish, slot.key, [
                (a, t, DELIVERED if r.state == "delivered" else SENT, r.provider_id, "", time.time())
                for (a, t, _), r in known])
        done = {(a, t) for (a, t, _), _ in known}
        return [(a, t) for a, t, _ in stuck if (a, t) not in done]

    async def _apply_updates(self) -> None:
        """Late receipts, written in batches: an SMSC sends one per message."""
        states = {"delivered": DELIVERED, "failed": FAILED, "sent": SENT}
        async for first in self._updates:
            batch = [first]
            while len(batch) < 5000:
                try:
                    batch.append(self._updates.receive_nowait())
                except trio.WouldBlock:
                    break
            by_slot: dict[str, list[tuple[str, int, int, str, str]]] = {}
            for slot_key, r in batch:
                job = parse_key(r.idempotency_key)
                # A receipt the driver can no longer tie to a job (its map did not survive a
                # restart) only upgrades "sent" to "delivered": it is dropped, nothing is lost.
                if job is not None and r.state in states:
                    by_slot.setdefault(slot_key, []).append((job[0], job[1], states[r.state], r.error[:300],
                                                             r.replay_key))
            for slot_key, receipts in by_slot.items():
                _, replayed = await self.db.call(self.db.sync.update_by_keys, slot_key, receipts)
                for key in replayed:  # the provider sent a report again: it was applied the first time
                    log.info("%s: %s was already taken; nothing changed", slot_key, key)

    async def _monitor(self) -> None:
        """Once a second: report progress, finish alerts whose every job is done, probe health."""
        tick = 0
        while True:
            await trio.sleep(1.0)
            tick += 1
            for alert_no, tracker in list(self.tracking.items()):
                self.on_progress(tracker.record.id, tracker.record.state, tracker.channels)
                if not tracker.fanout_done and self.db.sync.shared:  # another node's fan-out: over by now?
                    tracker.fanout_done = bool(await self.db.call(self.db.sync.fanout_done, alert_no))
                if tracker.fanout_done and (tracker.finished >= tracker.created or tick % 10 == 0  # the outbox:
                                            or self.db.sync.shared):  # every 10 s anyway, 1 s with other nodes
                    await self._finish(alert_no, tracker)

    async def _finish(self, alert_no: int, tracker: Tracker) -> None:
        left = await self.db.call(self.db.sync.unfinished, alert_no)
        if left:
            tracker.created = tracker.finished + left  # the outbox is the truth
            return
        del self.tracking[alert_no]
        self.on_state(tracker.record)


def _wants(row: RecipientRow, kinds: Sequence[str]) -> bool:
    return any(k in kinds for k in row[5].split(";"))
