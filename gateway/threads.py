"""One long-lived thread that runs a store's blocking calls in the order they were asked.

Why not ``trio.to_thread.run_sync``: every call through it takes a capacity limiter, a cached
thread (named and renamed: two ``prctl`` system calls) and its cancellation machinery. Profiled at
50 calls/s, a call's half-dozen store hand-offs cost the Trio thread ~100 µs each that way. Here a
call is a queue put on the way out and one ``run_sync_soon`` on the way back.

Like ``to_thread.run_sync`` with its default, a call cannot be cancelled once its function has
started: the store's work is never abandoned half done (it is checked for cancellation before).

``Batches`` group-commits on a lane: every item asked while one batch runs goes into the next, so
the disk's sync rate bounds transactions, not writers. It needs no task of its own: the lane's
answer, on Trio's thread, wakes the batch's writers and starts the next batch (one scheduler step
per write, where a writer task cost three: measured, the hand-offs were most of the Trio thread's
cost of a write).

With a window, while writes come from several writers at once (two met in a batch within the last
second), a batch waits on the lane's thread until its oldest item has waited ``window_s`` and then takes
everything asked meanwhile; an urgent item ends the wait at once. This holds for a batch started as the
last one ends too (its items' wait began when they were asked). Why: at 50 calls/s a call's six writes
rarely met, so each was a transaction (SQLite's commit and fsync cost ~90 µs of CPU beyond its rows,
measured) and a round trip to the lane's thread (~57 µs of CPU on the two threads). With a window longer
than the time between calls, each new call's first write (urgent) takes everything the calls before it
asked since: ~1 transaction per call instead of 3.5 (measured at 50 calls/s with 20 ms). Reads asked
during the wait queue behind it without waking the thread. A lone writer (a CLI, a test) never waits.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import outcome
import trio

T = TypeVar("T")
IDLE_EXIT_S = 30.0  # an idle lane's thread ends (a store no longer used must not keep one forever)
COMPANY_S = 1.0  # a batch window is used for this long after two writers' items last met
_Job = tuple[Callable[[], object], Callable[[outcome.Outcome[object]], None]]
Item = TypeVar("Item")


class Lane:
    """Runs functions one at a time, in order, on its own thread (started on first use, ended after
    ``IDLE_EXIT_S`` idle or by ``close``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the lane's thread; its result or exception, here."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task, token = trio.lowlevel.current_task(), trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[object]) -> None:
            try:
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)
            except trio.RunFinishedError:
                pass  # nobody is left to tell

        self._submit((lambda: fn(*args), deliver))
        return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)  # type: ignore[no-any-return]

    def submit(self, fn: Callable[[], object], done: Callable[[outcome.Outcome[object]], None]) -> None:
        """``fn()`` on the lane's thread, then ``done(its outcome)`` on Trio's thread (``done`` must not block:
        it runs between Trio's tasks). Call from Trio's thread."""
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[object]) -> None:
            try:
                token.run_sync_soon(done, result)
            except trio.RunFinishedError:
                pass

        self._submit((fn, deliver))

    def close(self) -> None:
        """Finish the calls already asked, then end the thread (a later call starts a new one, on a queue of
        its own: it never takes a job the old thread still has to run, so order holds)."""
        with self._lock:
            thread, self._thread = self._thread, None
            jobs, self._jobs = self._jobs, queue.SimpleQueue()
            if thread is not None:
                jobs.put(None)
        if thread is not None:  # joined outside the lock: the thread may need it to end on its idle path
            thread.join()

    def _submit(self, job: _Job) -> None:
        with self._lock:  # under the lock: an idle thread ending now cannot leave this job unserved
            self._jobs.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, args=(self._jobs,), name=self.name, daemon=True)
                self._thread.start()

    def _work(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            try:
                job = jobs.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs is jobs and jobs.empty():  # still the lane's queue, and idle: end
                        self._thread = None
                        return
                continue  # closed meanwhile: its None is on the way
            if job is None:
                return
            fn, deliver = job
            deliver(outcome.capture(fn))


class _Waiter(Generic[Item]):
    __slots__ = ("item", "task", "error")

    def __init__(self, item: Item, task: trio.lowlevel.Task | None) -> None:
        self.item = item
        self.task = task  # None once its writer stopped waiting (cancelled): the item is still committed
        self.error: BaseException | None = None


class Batches(Generic[Item]):
    """Items committed in batches on ``lane`` by ``commit(items)``, which runs there and returns, per item,
    None or the exception that item's writer gets (one bad item need not fail its neighbours).
    ``window_s``: how long an item may wait for company while writers meet (see the module docstring)."""

    def __init__(self, lane: Lane, commit: Callable[[list[Item]], list[BaseException | None]],
                 window_s: float = 0.0) -> None:
        self._lane = lane
        self._commit = commit
        self._window_s = window_s
        self._waiting: list[_Waiter[Item]] = []
        self._lock = threading.Lock()  # ``_waiting`` is taken on the lane's thread when a batch waits
        self._first = 0.0  # when the oldest waiting item was asked (time.monotonic)
        self._hurry = threading.Event()  # an urgent item waits: a waiting batch stops waiting
        self._company_until = -1.0  # writers met until about then (time.monotonic)
        self._running = False
        self._taken: list[_Waiter[Item]] = []  # the running batch's items, once taken

    async def put(self, item: Item, urgent: bool = False) -> None:
        """Commit ``item`` with the next batch; returns once that batch is done, or raises its error. A writer
        cancelled while it waits leaves, and its item is committed all the same (it may be already).
        ``urgent``: its batch waits for no more company."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waiter = _Waiter(item, trio.lowlevel.current_task())
        with self._lock:
            if not self._waiting:
                self._first = time.monotonic()
            self._waiting.append(waiter)
        if urgent:
            self._hurry.set()
        if not self._running:
            self._start(self._windowed())

        def abort(_: object) -> trio.lowlevel.Abort:
            waiter.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _windowed(self) -> bool:
        """Whether the next batch waits for company: writers met lately."""
        return self._window_s > 0 and time.monotonic() < self._company_until

    def _start(self, window: bool) -> None:
        """The next batch on the lane: at once, or after the window (``_gather``)."""
        self._running, self._taken = True, []
        if window:
            self._lane.submit(self._gather, self._done)
            return
        self._lane.submit(functools.partial(self._run, self._take()), self._done)

    def _take(self) -> list[_Waiter[Item]]:
        """Everything asked so far, as the next batch (an urgent item among it has had its way)."""
        with self._lock:
            batch, self._waiting = self._waiting, []
            self._hurry.clear()
        return batch

    def _gather(self) -> None:
        """On the lane's thread: wait until the oldest item has waited the window (or an urgent one comes),
        then commit everything asked by then. Asked meanwhile, reads queue behind it without waking the thread."""
        wait = self._first + self._window_s - time.monotonic()
        if wait > 0:
            self._hurry.wait(wait)
        self._run(self._take())

    def _run(self, batch: list[_Waiter[Item]]) -> None:
        """On the lane's thread: each item's outcome on its waiter (if the commit raises, a bug, ``_done`` hands
        that to every writer of the batch)."""
        self._taken = batch
        errors = self._commit([w.item for w in batch])
        if len(errors) != len(batch):
            raise RuntimeError(f"commit answered {len(errors)} items of {len(batch)}")
        for waiter, error in zip(batch, errors, strict=True):
            waiter.error = error

    def _done(self, result: outcome.Outcome[object]) -> None:
        """On Trio's thread: wake the batch's writers (with the job's own failure, if it raised: a bug), note
        whether writers met, start the next batch (which waits out the window of its oldest item)."""
        batch, self._taken = self._taken, []
        failed = result.error if isinstance(result, outcome.Error) else None
        for waiter in batch:
            if waiter.task is not None:
                error = failed or waiter.error
                trio.lowlevel.reschedule(waiter.task, outcome.Error(error) if error else outcome.Value(None))
        if len(batch) > 1 or self._waiting:
            self._company_until = time.monotonic() + COMPANY_S
        self._running = False
        if self._waiting:
            self._start(self._windowed())
