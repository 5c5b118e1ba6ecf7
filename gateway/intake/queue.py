"""The dispatcher queue and position board (pure: no I/O, no clock of its own).

Theory of operation: a call waits in one queue ordered by category priority (higher first),
then by age (older first). Whenever a position becomes free or a call arrives, the driver asks
``match()`` for (call, position) pairs and rings them. Positions are offered in config order:
"first free position rings".
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Literal

PositionState = Literal["free", "ringing", "busy"]


@dataclass(order=True)
class _Entry:
    key: tuple[int, float, int]
    incident_id: str = field(compare=False)


class CallQueue:
    """Waiting calls; ``pop()`` yields the most urgent, oldest first."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[str, _Entry] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, incident_id: str) -> bool:
        return incident_id in self._live

    def push(self, incident_id: str, priority: int, enqueued_at: float) -> None:
        """Queue a call (re-queuing an id replaces its entry)."""
        self.remove(incident_id)
        entry = _Entry((-priority, enqueued_at, next(self._seq)), incident_id)
        self._live[incident_id] = entry
        heapq.heappush(self._heap, entry)

    def remove(self, incident_id: str) -> bool:
        """Forget a call (answered elsewhere, hung up). True if it was queued."""
        found = self._live.pop(incident_id, None) is not None
        if len(self._heap) > 2 * len(self._live) + 64:  # removed entries linger in the heap: compact
            self._heap = sorted(self._live.values())
        return found

    def peek(self) -> str | None:
        self._drop_stale()
        return self._heap[0].incident_id if self._heap else None

    def pop(self) -> str | None:
        self._drop_stale()
        if not self._heap:
            return None
        entry = heapq.heappop(self._heap)
        del self._live[entry.incident_id]
        return entry.incident_id

    def ordered(self) -> list[str]:
        """Waiting calls in service order (for the API and tests)."""
        return [e.incident_id for e in sorted(self._live.values())]

    def _drop_stale(self) -> None:
        while self._heap and self._live.get(self._heap[0].incident_id) is not self._heap[0]:
            heapq.heappop(self._heap)


class PositionBoard:
    """Which dispatcher positions are free, ringing or busy."""

    def __init__(self, names: list[str]) -> None:
        self._state: dict[str, PositionState] = {n: "free" for n in names}
        self._resting_until: dict[str, float] = {}

    def state(self, name: str) -> PositionState:
        return self._state[name]

    def set(self, name: str, state: PositionState) -> None:
        if name not in self._state:
            raise KeyError(name)
        self._state[name] = state

    def rest(self, name: str, until: float) -> None:
        """Skip a free position until ``until`` (it just failed to ring: do not hammer a dead phone)."""
        if name not in self._state:
            raise KeyError(name)
        self._resting_until[name] = until

    def first_free(self, now: float = 0.0) -> str | None:
        for name, state in self._state.items():
            if state == "free" and self._resting_until.get(name, 0.0) <= now:
                return name
        return None

    def next_rest_end(self, now: float) -> float | None:
        """When the earliest resting free position becomes usable again, if any."""
        ends = [t for n, t in self._resting_until.items() if t > now and self._state[n] == "free"]
        return min(ends) if ends else None

    def snapshot(self) -> dict[str, PositionState]:
        return dict(self._state)


def match(queue: CallQueue, board: PositionBoard, now: float = 0.0) -> list[tuple[str, str]]:
    """Pair waiting calls with free positions, marking those positions ringing."""
    pairs = []
    while len(queue):
        position = board.first_free(now)
        if position is None:
            break
        incident_id = queue.pop()
        if incident_id is None:
            break
        board.set(position, "ringing")
        pairs.append((incident_id, position))
    return pairs
