"""One long-lived thread that runs a store's blocking calls in the order they were asked.

Why not ``trio.to_thread.run_sync``: every call through it takes a capacity limiter, a cached
thread (named and renamed: two ``prctl`` system calls) and its cancellation machinery. Profiled at
50 calls/s, a call's half-dozen store hand-offs cost the Trio thread ~100 µs each that way. Here a
call is a queue put on the way out and one ``run_sync_soon`` on the way back.

Like ``to_thread.run_sync`` with its default, a call cannot be cancelled once its function has
started: the store's work is never abandoned half done (it is checked for cancellation before).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

T = TypeVar("T")
IDLE_EXIT_S = 30.0  # an idle lane's thread ends (a store no longer used must not keep one forever)
_Job = tuple[Callable[[], object], Callable[[outcome.Outcome[object]], None]]


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
