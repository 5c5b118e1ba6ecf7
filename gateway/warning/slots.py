"""Per-channel delivery state: one ``Slot`` per open channel instance (a driver, or its drill twin
``drill:<name>``), with what paces it and what guards it.

Theory of operation. The token bucket paces a channel's workers to the provider's rate: a worker
waits for tokens before it claims jobs, gives back what it could not use, and a provider's
retry-after pauses the bucket. The breaker counts failing batches; once it opens, the engine's
``usable`` map (which the router reads) marks the channel unusable, so its recipients fail over
at once instead of waiting, and after the cool-down it half-opens so the next batch probes the
provider. The health probe asks the driver every 15 s, which also opens its connections before the
first alert: two "down" answers in a row trip the breaker, an "up" after the cool-down closes it.
The engine (``engine.py``) owns the slots and the ``usable`` map; a slot changes only its own state
and its own entry in that map.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio

from channels.base import Channel, Receipt
from gateway.errors import GatewayError
from gateway.warning.policy import DRILL_PREFIX, Breaker, TokenBucket


@dataclass
class Slot:
    """One open channel instance: ``key`` is the driver name, or ``drill:<name>`` for exercises."""

    key: str
    channel: Channel
    bucket: TokenBucket
    breaker: Breaker = field(default_factory=Breaker)
    wake: trio.Event = field(default_factory=trio.Event)
    workers: int = 3
    health: str = "not checked yet"

    @classmethod
    def for_channel(cls, key: str, channel: Channel) -> Slot:
        """A fresh slot paced at the channel's own ``max_per_second``."""
        return cls(key, channel, TokenBucket(channel.max_per_second))

    @property
    def driver(self) -> str:
        return self.key.removeprefix(DRILL_PREFIX)

    async def take(self, most: int) -> int:
        """Wait until the bucket grants tokens for one batch (at most ``most`` and the channel's
        ``max_batch``, at least 1); returns how many it granted."""
        while True:
            granted, wait = self.bucket.take(max(1, min(self.channel.max_batch, most)), trio.current_time())
            if granted:
                return granted
            await trio.sleep(wait)

    def refund(self, granted: int) -> None:
        """Tokens taken for jobs that were not there go back to the bucket."""
        self.bucket.tokens += granted

    async def idle(self, poll_s: float) -> None:
        """Nothing to claim: wait until woken (new jobs) or ``poll_s`` passed (jobs falling due)."""
        with trio.move_on_after(poll_s):
            await self.wake.wait()
        self.wake = trio.Event() if self.wake.is_set() else self.wake

    def note_breaker(self, receipts: list[Receipt], now: float, usable: dict[str, bool]) -> None:
        """Count a batch's outcome on the breaker; a change of open/closed updates ``usable``."""
        if not receipts:
            return
        failed = [r for r in receipts if r.state == "failed" and r.retryable]
        ok = len(failed) < len(receipts)
        if self.breaker.record(ok, now, failed[0].error if failed else ""):
            usable[self.key] = self.breaker.state == "up"
        elif self.breaker.opened_at is not None and not self.breaker.is_open(now):
            usable[self.key] = True  # half-open: let the next batch probe the provider

    async def probe(self, usable: dict[str, bool], every_s: float = 15.0) -> None:
        """Ask the channel how it is (which also opens its connections before the first alert).
        A channel that says it is down opens its breaker: its recipients fail over at once."""
        downs = 0
        while True:
            try:
                with trio.fail_after(10):
                    health = await self.channel.health()
                self.health = health.detail if health.up else f"down: {health.detail}"
                downs = 0 if health.up else downs + 1
                # Twice in a row: a driver still connecting or polling at start is not "down".
                if downs >= 2 and not self.breaker.is_open(time.time()):
                    self.breaker.trip(time.time(), health.detail)
                    usable[self.key] = False
                elif health.up and self.breaker.opened_at is not None and not self.breaker.is_open(time.time()):
                    self.breaker.record(True, time.time())  # cooled down and the provider answers again
                    usable[self.key] = True
            except trio.TooSlowError:
                self.health = "down: no answer to a health check within 10 s"
            except GatewayError as exc:
                self.health = f"down: {exc}"
            await trio.sleep(every_s)
