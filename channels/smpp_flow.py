"""Flow control toward the SMSC: how many submit_sm may be unanswered, and how fast to send.

Theory of operation: ``Flow.take`` hands a writer as many slots of the window (submit_sm
written but not yet answered) and rate tokens as it can get at once, so ``deliver`` writes
that many PDUs in one ``send_all``; each answer, or a link lost with the PDU unanswered, gives
its slot back. The rate is a token bucket that ESME_RTHROTTLED and ESME_RMSGQFUL halve
(``slow_down``) and that recovers by a tenth of ``max_per_second`` per second once the SMSC
has stopped refusing for a second.
"""

from __future__ import annotations

import math

import trio


class Window:
    """Slots for outstanding submit_sm, taken several at a time.

    Writers wake only once a quarter of the window is free: waking them for every answer
    would turn one write of sixteen PDUs into sixteen writes of one (and sixteen task switches)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._low = max(1, size // 4)
        self._lot = trio.lowlevel.ParkingLot()

    async def take(self, want: int) -> int:
        while self.free < min(want, self._low):
            await self._lot.park()
        taken = min(self.free, want)
        self.free -= taken
        return taken

    def give(self, count: int = 1) -> None:
        self.free += count
        if self.free >= self._low and self._lot:
            self._lot.unpark_all()


class Flow:
    """The window and the send rate together: a writer needs a slot and a token per submit_sm."""

    def __init__(self, window: int, max_per_second: float) -> None:
        self.window = Window(window)
        self.max_per_second = max_per_second
        self.rate = max_per_second
        self._tokens = 1.0
        self._refilled = trio.current_time()
        self._last_throttle = -math.inf

    @property
    def free(self) -> int:
        return self.window.free

    def give(self, count: int = 1) -> None:
        self.window.give(count)

    async def take(self, want: int) -> int:
        """Window slots and rate tokens for up to ``want`` submit_sm (at least one)."""
        count = await self.window.take(want)
        try:
            return await self._tokens_for(count)
        except BaseException:
            self.window.give(count)  # cancelled while waiting for tokens
            raise

    async def _tokens_for(self, count: int) -> int:
        while True:
            now = trio.current_time()
            if now - self._last_throttle > 1.0 and self.rate < self.max_per_second:
                self.rate = min(self.max_per_second, self.rate + self.max_per_second * 0.1 * (now - self._refilled))
            burst = max(1.0, self.rate / 20)  # 50 ms worth: smooth enough for an SMSC's per-second counter
            self._tokens = min(burst, self._tokens + (now - self._refilled) * self.rate)
            self._refilled = now
            if self._tokens >= 1.0:
                granted = min(count, int(self._tokens))
                self._tokens -= granted
                self.window.give(count - granted)
                return granted
            await trio.sleep((1.0 - self._tokens) / self.rate)

    def slow_down(self) -> None:
        now = trio.current_time()
        if now - self._last_throttle > 0.25:  # one halving per burst of refusals, not one per refusal
            self.rate = max(self.rate / 2, self.max_per_second / 1000, 1.0)
            self._tokens = 0.0
        self._last_throttle = now
