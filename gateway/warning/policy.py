"""Delivery policy, pure: retry back-off, the per-channel circuit breaker, the token bucket, and
which channel a recipient is reached on. No I/O, no Trio: times are passed in."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from gateway.warning.outbox import RecipientRow

# A recipient's channel preference names kinds; a kind is carried by one of several drivers.
KIND_OF_DRIVER = {"smpp": "sms", "twilio": "sms", "email": "email", "telegram": "telegram", "voice": "voice"}
DRILL_PREFIX = "drill:"


def backoff_s(attempt: int, *, base_s: float = 1.0, cap_s: float = 60.0, rng: random.Random | None = None) -> float:
    """Exponential back-off with equal jitter: a random point in the upper half of the doubling,
    capped window (attempt 1 → 0.5-1 × base)."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Breaker:
    """Opens after ``threshold`` consecutive failed batches; half-opens after ``cooldown_s``.

    While open, the channel's jobs fail over to each recipient's next channel instead of waiting.
    """

    def __init__(self, threshold: int = 3, cooldown_s: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.reason = ""

    def is_open(self, now: float) -> bool:
        return self.opened_at is not None and now - self.opened_at < self.cooldown_s

    def record(self, ok: bool, now: float, reason: str = "") -> bool:
        """Count a batch outcome; True when this call changed open/closed."""
        was_open = self.opened_at is not None
        if ok:
            self.failures, self.opened_at, self.reason = 0, None, ""
            return was_open
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at, self.reason = now, reason
            return not was_open
        return False

    def trip(self, now: float, reason: str) -> None:
        """Open at once (a health check said the provider is down)."""
        self.failures, self.opened_at, self.reason = self.threshold, now, reason

    @property
    def state(self) -> str:
        return "down" if self.opened_at is not None else "up"


class TokenBucket:
    """Provider rate limits (Telegram 30 msg/s, Twilio MPS, the SMPP contract)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate if rate > 0 else math.inf  # 0: the channel sets no pace of its own
        self.capacity = burst if burst is not None else max(1.0, min(self.rate, 1e9) / 10)
        self.tokens = self.capacity
        self.updated: float | None = None

    def take(self, wanted: int, now: float) -> tuple[int, float]:
        """Take up to ``wanted`` tokens: (granted, seconds to wait when none were granted)."""
        if math.isinf(self.rate):
            return wanted, 0.0
        if self.updated is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        granted = max(0, min(wanted, int(self.tokens)))
        if granted == 0:
            return 0, (1 - self.tokens) / self.rate
        self.tokens -= granted
        return granted, 0.0

    def pause(self, seconds: float, now: float) -> None:
        """A provider said 'retry after': spend the bucket into debt for that long."""
        if math.isinf(self.rate):
            self.rate = 1e9  # an unpaced channel that was told to wait: pace it from now on
        self.take(0, now)
        self.tokens = min(self.tokens, -seconds * self.rate)


class Router:
    """Maps a recipient's kind preference onto open drivers.

    ``sms_routes`` are (prefix, driver) in order: the first whose prefix starts the number and whose
    driver is usable carries the SMS. Exercise alerts use the ``drill:`` instances only.
    """

    def __init__(self, sms_routes: Sequence[tuple[str, str]], usable: Mapping[str, bool], kinds: Sequence[str]) -> None:
        self.sms_routes = list(sms_routes)
        self.usable = usable
        self.kinds = set(kinds)

    def channel(self, row: RecipientRow, *, exercise: bool, after: str | None = None) -> str | None:
        """The channel for this recipient, or the next one after ``after`` (fail-over)."""
        prefix = DRILL_PREFIX if exercise else ""
        candidates = [c for kind in row[5].split(";") if kind in self.kinds
                      for c in self._drivers(kind, row, prefix)]
        if after is not None:
            if after not in candidates:
                return None
            candidates = candidates[candidates.index(after) + 1:]
        usable = [c for c in candidates if self.usable.get(c, False)]
        if usable:
            return usable[0]
        # None usable right now: wait on the first one configured (retries and fail-over take over)
        # rather than leave the recipient without a job.
        return next((c for c in candidates if c in self.usable), None)

    def _drivers(self, kind: str, row: RecipientRow, prefix: str) -> list[str]:
        if kind == "sms":
            return [prefix + d for p, d in self.sms_routes if row[1].startswith(p) and row[1]] or []
        address = {"email": row[2], "telegram": row[3], "voice": row[1]}.get(kind, "")
        return [prefix + kind] if address else []
