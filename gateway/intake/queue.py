"""The dispatcher queue, the position board and the rule pairing them (pure: no I/O, no clock of its own).

Theory of operation: calls wait in one queue per line: the 102/112 emergency line and the 1402
non-emergency line. Within a line they are ordered by category priority (higher first), then by age
(older first). Positions belong to a group (``emergency`` or ``1402``). Whenever a position becomes
free or a call arrives, the driver asks ``match()`` for (call, position) pairs and rings them;
``assign()`` is the rule deciding which line's next call goes to which free position:

1. Every waiting emergency call comes first: it takes the first free emergency position, else (when
   ``emergency_may_use_1402``) the first free 1402 position.
2. Then 1402 calls take the free 1402 positions left; a free emergency position only when
   ``emergency_positions_take_1402`` and no emergency call still waits. So a 1402 call never takes a
   102/112 position while an emergency call waits, and it always gets a 1402 position that no
   emergency call needs (no starvation when no emergency waits).

Positions are offered in config order: "first free position rings".
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

PositionState = Literal["free", "ringing", "busy"]
Line = Literal["emergency", "1402"]  # a call's line, and the group of positions serving it
LINES: tuple[Line, ...] = ("emergency", "1402")  # service order: every emergency call before any 1402 call


def line_of(service: str) -> Line:
    """The line a service's calls wait on: 1402 is its own, 102 and 112 (and any other) are emergencies."""
    return "1402" if service == "1402" else "emergency"


@dataclass(order=True)
class _Entry:
    key: tuple[int, float, int]
    incident_id: str = field(compare=False)
    line: Line = field(compare=False, default="emergency")


class CallQueue:
    """Waiting calls per line; ``pop()`` yields the most urgent, oldest first, emergencies before 1402."""

    def __init__(self) -> None:
        self._heaps: dict[Line, list[_Entry]] = {line: [] for line in LINES}
        self._live: dict[str, _Entry] = {}
        self._count: dict[Line, int] = dict.fromkeys(LINES, 0)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, incident_id: str) -> bool:
        return incident_id in self._live

    def counts(self) -> dict[Line, int]:
        """How many calls wait on each line."""
        return dict(self._count)

    def push(self, incident_id: str, priority: int, enqueued_at: float, line: Line = "emergency") -> None:
        """Queue a call on its line (re-queuing an id replaces its entry, on whichever line it was)."""
        self.remove(incident_id)
        entry = _Entry((-priority, enqueued_at, next(self._seq)), incident_id, line)
        self._live[incident_id] = entry
        self._count[line] += 1
        heapq.heappush(self._heaps[line], entry)

    def remove(self, incident_id: str) -> bool:
        """Forget a call (answered elsewhere, hung up). True if it was queued."""
        entry = self._live.pop(incident_id, None)
        if entry is None:
            return False
        self._count[entry.line] -= 1
        heap = self._heaps[entry.line]
        if len(heap) > 2 * len(self._live) + 64:  # removed entries linger in the heap: compact
            self._heaps[entry.line] = sorted(e for e in self._live.values() if e.line == entry.line)
        return True

    def peek(self, line: Line | None = None) -> str | None:
        for heap in self._lines(line):
            self._drop_stale(heap)
            if heap:
                return heap[0].incident_id
        return None

    def pop(self, line: Line | None = None) -> str | None:
        """The next call of ``line`` (None: of the first line with a call waiting), or None."""
        for heap in self._lines(line):
            self._drop_stale(heap)
            if heap:
                entry = heapq.heappop(heap)
                del self._live[entry.incident_id]
                self._count[entry.line] -= 1
                return entry.incident_id
        return None

    def ordered(self) -> list[str]:
        """Waiting calls in service order (for the API and tests)."""
        rank = {line: i for i, line in enumerate(LINES)}
        return [e.incident_id for e in sorted(self._live.values(), key=lambda e: (rank[e.line], e.key))]

    def _lines(self, line: Line | None) -> list[list[_Entry]]:
        return [self._heaps[line]] if line is not None else [self._heaps[x] for x in LINES]

    def _drop_stale(self, heap: list[_Entry]) -> None:
        while heap and self._live.get(heap[0].incident_id) is not heap[0]:
            heapq.heappop(heap)


class PositionBoard:
    """Which dispatcher positions are free, ringing or busy, and which group each belongs to."""

    def __init__(self, names: list[str], groups: Mapping[str, Line] | None = None) -> None:
        self._state: dict[str, PositionState] = {n: "free" for n in names}
        self._group: dict[str, Line] = {n: (groups or {}).get(n, "emergency") for n in names}
        self._resting_until: dict[str, float] = {}
        # Free positions per group by config rank, so that matching never scans the whole board: an entry
        # may be stale (no longer free), dropped when met; ``_listed`` says who has an entry.
        self._rank = {n: i for i, n in enumerate(self._state)}
        self._free: dict[Line, list[tuple[int, str]]] = {line: [] for line in LINES}
        for name in self._state:
            self._free.setdefault(self._group[name], []).append((self._rank[name], name))
        self._listed = set(self._state)

    def state(self, name: str) -> PositionState:
        return self._state[name]

    def group(self, name: str) -> Line:
        return self._group[name]

    def set(self, name: str, state: PositionState) -> None:
        if name not in self._state:
            raise KeyError(name)
        self._state[name] = state
        if state == "free" and name not in self._listed:
            heapq.heappush(self._free[self._group[name]], (self._rank[name], name))
            self._listed.add(name)

    def rest(self, name: str, until: float) -> None:
        """Skip a free position until ``until`` (it just failed to ring: do not hammer a dead phone)."""
        if name not in self._state:
            raise KeyError(name)
        self._resting_until[name] = until

    def free(self, now: float = 0.0, per_group: int | None = None) -> list[tuple[str, Line]]:
        """Free positions not resting, with their group, in config order; ``per_group``: only the first so
        many of each group (without looking at the others)."""
        if per_group is None:
            return [(name, self._group[name]) for name, state in self._state.items()
                    if state == "free" and self._resting_until.get(name, 0.0) <= now]
        found: list[tuple[int, str, Line]] = []
        for line, heap in self._free.items():
            taken, resting = 0, list[tuple[int, str, Line]]()
            while heap and taken < per_group:
                rank, name = heapq.heappop(heap)
                if self._state[name] != "free":
                    self._listed.discard(name)  # stale: pushed again when it is freed
                    continue
                (resting if self._resting_until.get(name, 0.0) > now else found).append((rank, name, line))
                taken += self._resting_until.get(name, 0.0) <= now
            for rank, name, _ in found[len(found) - taken:] + resting:
                heapq.heappush(heap, (rank, name))
        return [(name, line) for _, name, line in sorted(found)]

    def first_free(self, now: float = 0.0) -> str | None:
        found = self.free(now)
        return found[0][0] if found else None

    def next_rest_end(self, now: float) -> float | None:
        """When the earliest resting free position becomes usable again, if any."""
        ends = [t for n, t in self._resting_until.items() if t > now and self._state[n] == "free"]
        return min(ends) if ends else None

    def snapshot(self) -> dict[str, PositionState]:
        return dict(self._state)


@dataclass(frozen=True)
class Borrowing:
    """Which line may use the other's free positions (``[dispatch]`` in the config)."""

    emergency_may_use_1402: bool = True
    emergency_positions_take_1402: bool = False


def assign(waiting: Mapping[Line, int], free: Sequence[tuple[str, Line]],
           rule: Borrowing = Borrowing()) -> list[tuple[Line, str]]:
    """Which waiting call goes to which free position: ``(line, position)`` pairs, each meaning "the next
    call of ``line`` rings ``position``", in the order to take them (see the module's rule)."""
    left: dict[Line, list[str]] = {line: [name for name, group in free if group == line] for line in LINES}
    pairs: list[tuple[Line, str]] = []
    emergencies = waiting.get("emergency", 0)
    while emergencies:
        pool = left["emergency"] or (left["1402"] if rule.emergency_may_use_1402 else [])
        if not pool:
            break
        pairs.append(("emergency", pool.pop(0)))
        emergencies -= 1
    others = waiting.get("1402", 0)
    while others:
        borrow = rule.emergency_positions_take_1402 and not emergencies  # never while an emergency waits
        pool = left["1402"] or (left["emergency"] if borrow else [])
        if not pool:
            break
        pairs.append(("1402", pool.pop(0)))
        others -= 1
    return pairs


def match(queue: CallQueue, board: PositionBoard, now: float = 0.0,
          rule: Borrowing = Borrowing()) -> list[tuple[str, str]]:
    """Pair waiting calls with free positions by ``assign``, marking those positions ringing."""
    if not len(queue):
        return []
    pairs = []
    waiting = queue.counts()
    for line, position in assign(waiting, board.free(now, sum(waiting.values())), rule):
        incident_id = queue.pop(line)
        if incident_id is None:
            break
        board.set(position, "ringing")
        pairs.append((incident_id, position))
    return pairs
