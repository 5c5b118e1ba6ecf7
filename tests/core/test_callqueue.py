"""The dispatcher queue (priority, then age) and the position board."""

from __future__ import annotations

import random

import pytest

from gateway.intake.queue import Borrowing, CallQueue, Line, PositionBoard, assign, line_of, match


def drain(queue: CallQueue) -> list[str]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_empty_queue() -> None:
    queue = CallQueue()
    assert len(queue) == 0
    assert queue.peek() is None
    assert queue.pop() is None
    assert queue.ordered() == []
    assert queue.remove("nope") is False


def test_higher_priority_first_then_older_first() -> None:
    queue = CallQueue()
    queue.push("old-low", 1, 10.0)
    queue.push("new-high", 4, 30.0)
    queue.push("old-high", 4, 20.0)
    queue.push("mid", 3, 5.0)
    queue.push("new-low", 1, 40.0)
    expected = ["old-high", "new-high", "mid", "old-low", "new-low"]
    assert queue.ordered() == expected
    assert queue.peek() == "old-high"
    assert drain(queue) == expected
    assert len(queue) == 0


def test_same_priority_and_time_keeps_arrival_order() -> None:
    queue = CallQueue()
    for name in ("a", "b", "c", "d"):
        queue.push(name, 2, 100.0)
    assert drain(queue) == ["a", "b", "c", "d"]


def test_negative_and_zero_priorities_sort_below_positive() -> None:
    queue = CallQueue()
    queue.push("neg", -1, 0.0)
    queue.push("zero", 0, 1.0)
    queue.push("pos", 1, 2.0)
    assert drain(queue) == ["pos", "zero", "neg"]


def test_requeue_with_original_time_keeps_its_place() -> None:
    queue = CallQueue()
    queue.push("first", 1, 10.0)
    queue.push("second", 1, 20.0)
    queue.push("third", 1, 30.0)
    assert queue.pop() == "first"  # rang a position, nobody answered: back in the queue
    queue.push("first", 1, 10.0)
    assert queue.ordered() == ["first", "second", "third"]
    assert drain(queue) == ["first", "second", "third"]


def test_requeue_replaces_entry_never_duplicates() -> None:
    queue = CallQueue()
    queue.push("a", 1, 10.0)
    queue.push("b", 1, 20.0)
    queue.push("a", 1, 30.0)  # re-queued later
    queue.push("a", 1, 40.0)
    assert len(queue) == 2
    assert queue.ordered() == ["b", "a"]
    assert drain(queue) == ["b", "a"]


def test_requeue_with_new_priority_moves_the_call() -> None:
    queue = CallQueue()
    queue.push("a", 1, 10.0)
    queue.push("b", 1, 20.0)
    queue.push("b", 4, 20.0)  # IVR said: fire
    assert drain(queue) == ["b", "a"]


def test_remove() -> None:
    queue = CallQueue()
    queue.push("a", 1, 1.0)
    queue.push("b", 1, 2.0)
    assert "a" in queue
    assert queue.remove("a") is True
    assert "a" not in queue
    assert queue.remove("a") is False
    assert len(queue) == 1
    assert queue.ordered() == ["b"]


def test_stale_heap_entries_are_skipped_by_peek_and_pop() -> None:
    queue = CallQueue()
    queue.push("gone", 9, 1.0)  # most urgent, then hangs up
    queue.push("moved", 5, 2.0)
    queue.push("stay", 1, 3.0)
    queue.remove("gone")
    queue.push("moved", 1, 9.0)  # the old, more urgent heap entry for "moved" is now stale
    assert queue.peek() == "stay"
    assert queue.pop() == "stay"
    assert queue.pop() == "moved"
    assert queue.pop() is None
    assert len(queue) == 0


def test_remove_then_push_again_is_served_once() -> None:
    queue = CallQueue()
    queue.push("a", 1, 1.0)
    queue.remove("a")
    queue.push("a", 1, 1.0)
    assert drain(queue) == ["a"]


def test_random_operations_match_a_reference_model() -> None:
    rng = random.Random(1234)
    queue, model = CallQueue(), {}
    for step in range(2000):
        ident = f"c{rng.randrange(40)}"
        op = rng.random()
        if op < 0.5:
            prio, when = rng.randrange(1, 5), float(rng.randrange(100))
            queue.push(ident, prio, when)
            model[ident] = (-prio, when, step)
        elif op < 0.7:
            assert queue.remove(ident) == (model.pop(ident, None) is not None)
        else:
            expected = min(model, key=model.__getitem__) if model else None
            assert queue.pop() == expected
            model.pop(expected, None)
        assert len(queue) == len(model)
        assert queue.ordered() == sorted(model, key=model.__getitem__)


# --- position board ----------------------------------------------------------------------------

def test_first_free_follows_config_order() -> None:
    board = PositionBoard(["pos3", "pos1", "pos2"])
    assert board.first_free() == "pos3"
    board.set("pos3", "busy")
    assert board.first_free() == "pos1"
    board.set("pos1", "ringing")
    assert board.first_free() == "pos2"
    board.set("pos2", "busy")
    assert board.first_free() is None
    board.set("pos1", "free")
    assert board.first_free() == "pos1"


def test_set_unknown_position_raises() -> None:
    board = PositionBoard(["pos1"])
    with pytest.raises(KeyError):
        board.set("pos9", "busy")
    with pytest.raises(KeyError):
        board.state("pos9")


def test_snapshot_is_a_copy() -> None:
    board = PositionBoard(["pos1", "pos2"])
    snap = board.snapshot()
    snap["pos1"] = "busy"
    assert board.state("pos1") == "free"
    assert board.snapshot() == {"pos1": "free", "pos2": "free"}


def test_resting_position_is_skipped_until_rest_ends() -> None:
    board = PositionBoard(["pos1", "pos2"])
    board.rest("pos1", until=100.0)
    assert board.first_free(now=50.0) == "pos2"
    assert board.first_free(now=100.0) == "pos1"  # rest over exactly at `until`
    assert board.first_free(now=150.0) == "pos1"


def test_everyone_resting_means_nobody_free() -> None:
    board = PositionBoard(["pos1", "pos2"])
    board.rest("pos1", 10.0)
    board.rest("pos2", 20.0)
    assert board.first_free(5.0) is None
    assert board.first_free(15.0) == "pos1"


def test_next_rest_end() -> None:
    board = PositionBoard(["pos1", "pos2", "pos3"])
    assert board.next_rest_end(0.0) is None
    board.rest("pos1", 30.0)
    board.rest("pos2", 20.0)
    board.rest("pos3", 5.0)
    assert board.next_rest_end(0.0) == 5.0
    assert board.next_rest_end(5.0) == 20.0  # a rest ending now is over
    board.set("pos2", "busy")  # a busy position's rest does not matter
    assert board.next_rest_end(10.0) == 30.0
    assert board.next_rest_end(30.0) is None


# --- match -------------------------------------------------------------------------------------

def test_match_pairs_most_urgent_calls_with_positions_in_order() -> None:
    queue, board = CallQueue(), PositionBoard(["pos1", "pos2"])
    queue.push("low", 1, 1.0)
    queue.push("high", 4, 2.0)
    queue.push("mid", 3, 0.5)
    pairs = match(queue, board)
    assert pairs == [("high", "pos1"), ("mid", "pos2")]
    assert board.snapshot() == {"pos1": "ringing", "pos2": "ringing"}
    assert queue.ordered() == ["low"]
    assert match(queue, board) == []  # nobody free: the call keeps waiting
    assert queue.ordered() == ["low"]


def test_match_with_empty_queue_leaves_positions_free() -> None:
    board = PositionBoard(["pos1"])
    assert match(CallQueue(), board) == []
    assert board.state("pos1") == "free"


def test_match_skips_busy_and_resting_positions() -> None:
    queue, board = CallQueue(), PositionBoard(["pos1", "pos2", "pos3"])
    board.set("pos1", "busy")
    board.rest("pos2", 60.0)
    queue.push("a", 1, 1.0)
    queue.push("b", 1, 2.0)
    assert match(queue, board, now=10.0) == [("a", "pos3")]
    assert match(queue, board, now=60.0) == [("b", "pos2")]
    assert len(queue) == 0


def test_match_ignores_removed_calls() -> None:
    queue, board = CallQueue(), PositionBoard(["pos1", "pos2"])
    queue.push("hung-up", 4, 1.0)
    queue.push("waiting", 1, 2.0)
    queue.remove("hung-up")
    assert match(queue, board) == [("waiting", "pos1")]
    assert board.state("pos2") == "free"


# --- the 1402 line: which waiting call goes to which free position -------------------------------

E, N = "emergency", "1402"
BORROW = Borrowing(emergency_may_use_1402=True)
OWN_ONLY = Borrowing(emergency_may_use_1402=False)
BOTH_WAYS = Borrowing(emergency_may_use_1402=True, emergency_positions_take_1402=True)
LEND = Borrowing(emergency_may_use_1402=False, emergency_positions_take_1402=True)


@pytest.mark.parametrize("waiting, free, rule, expected", [
    # nothing to do
    ({}, [("p1", E), ("p9", N)], BORROW, []),
    ({E: 2, N: 2}, [], BOTH_WAYS, []),
    # each line to its own positions, in config order
    ({E: 1}, [("p1", E), ("p2", E)], BORROW, [(E, "p1")]),
    ({N: 1}, [("p9", N)], OWN_ONLY, [(N, "p9")]),
    ({E: 1, N: 1}, [("p1", E), ("p9", N)], OWN_ONLY, [(E, "p1"), (N, "p9")]),
    # an emergency prefers a 102/112 position, leaving the 1402 one to the 1402 caller
    ({E: 1, N: 1}, [("p9", N), ("p1", E)], BORROW, [(E, "p1"), (N, "p9")]),
    # only a 1402 position free: the emergency takes it when configured, the 1402 caller waits ...
    ({E: 1, N: 1}, [("p9", N)], BORROW, [(E, "p9")]),
    # ... and when not configured, the 1402 caller takes its own position, the emergency waits
    ({E: 1, N: 1}, [("p9", N)], OWN_ONLY, [(N, "p9")]),
    ({E: 2, N: 1}, [("p1", E), ("p9", N)], BORROW, [(E, "p1"), (E, "p9")]),
    ({E: 2, N: 1}, [("p1", E), ("p9", N)], OWN_ONLY, [(E, "p1"), (N, "p9")]),
    # a 1402 caller never takes a 102/112 position while an emergency waits
    ({N: 1}, [("p1", E)], BORROW, []),
    ({E: 3, N: 1}, [("p1", E), ("p2", E)], BOTH_WAYS, [(E, "p1"), (E, "p2")]),
    ({E: 1, N: 1}, [("p9", N)], LEND, [(N, "p9")]),
    # ... but may, when configured, once no emergency waits
    ({N: 1}, [("p1", E)], BOTH_WAYS, [(N, "p1")]),
    ({E: 1, N: 2}, [("p1", E), ("p2", E)], BOTH_WAYS, [(E, "p1"), (N, "p2")]),
    ({N: 2}, [("p1", E), ("p9", N)], LEND, [(N, "p9"), (N, "p1")]),
    # starvation: with no emergency waiting, the 1402 line gets every 1402 position
    ({N: 3}, [("p9", N), ("p8", N)], BOTH_WAYS, [(N, "p9"), (N, "p8")]),
    ({E: 0, N: 1}, [("p1", E), ("p9", N)], BORROW, [(N, "p9")]),
    # more positions than calls, more calls than positions
    ({E: 1}, [("p1", E), ("p2", E), ("p9", N)], BORROW, [(E, "p1")]),
    ({E: 5}, [("p1", E), ("p9", N)], OWN_ONLY, [(E, "p1")]),
])
def test_assign(waiting: dict[Line, int], free: list[tuple[str, Line]], rule: Borrowing,
                expected: list[tuple[Line, str]]) -> None:
    assert assign(waiting, free, rule) == expected


def test_assign_never_gives_a_1402_call_an_emergency_position_while_one_waits() -> None:
    rng = random.Random(1402)
    for _ in range(3000):
        waiting: dict[Line, int] = {E: rng.randrange(4), N: rng.randrange(4)}
        free = [(f"p{i}", rng.choice([E, N])) for i in range(rng.randrange(5))]
        rule = Borrowing(emergency_may_use_1402=rng.random() < 0.5, emergency_positions_take_1402=rng.random() < 0.5)
        pairs = assign(waiting, free, rule)
        groups = dict(free)
        served = sum(1 for line, _ in pairs if line == E)
        assert len({p for _, p in pairs}) == len(pairs)  # a position rings one call
        if served < waiting[E]:  # an emergency still waits: no 1402 call on a 102/112 position
            assert all(groups[p] == N for line, p in pairs if line == N)
        if not rule.emergency_may_use_1402:
            assert all(groups[p] == E for line, p in pairs if line == E)
        own_free = sum(1 for _, g in free if g == N) - sum(1 for line, p in pairs if line == E and groups[p] == N)
        assert sum(1 for line, _ in pairs if line == N) >= min(waiting[N], own_free)  # never starved of its own


def test_line_of_service() -> None:
    assert [line_of(s) for s in ("112", "102", "1402", "")] == [E, E, N, E]


def test_queue_keeps_lines_apart_and_serves_emergencies_first() -> None:
    queue = CallQueue()
    queue.push("n-old-high", 9, 1.0, line=N)
    queue.push("e-new-low", 1, 5.0)
    queue.push("e-old", 1, 2.0, line=E)
    queue.push("n-new", 0, 3.0, line=N)
    assert queue.counts() == {E: 2, N: 2}
    assert queue.ordered() == ["e-old", "e-new-low", "n-old-high", "n-new"]
    assert queue.peek(N) == "n-old-high" and queue.pop(N) == "n-old-high"
    queue.push("e-old", 1, 2.0, line=N)  # moved to the 1402 line (a 102 caller who chose 1402)
    assert queue.counts() == {E: 1, N: 2}
    assert drain(queue) == ["e-new-low", "e-old", "n-new"]
    assert queue.counts() == {E: 0, N: 0}


def test_match_follows_the_rule_on_the_board() -> None:
    queue = CallQueue()
    board = PositionBoard(["pos1", "pos2", "pos3"], {"pos3": N})
    board.set("pos1", "busy")
    board.set("pos2", "busy")
    queue.push("line", 2, 1.0, line=N)
    queue.push("fire", 9, 2.0)
    assert match(queue, board, rule=OWN_ONLY) == [("line", "pos3")]  # the emergency waits for pos1/pos2
    board.set("pos3", "free")
    queue.push("line2", 2, 3.0, line=N)
    assert match(queue, board, rule=BORROW) == [("fire", "pos3")]
    board.set("pos2", "free")
    assert match(queue, board, rule=BORROW) == []  # the 1402 caller never takes pos2 ...
    assert match(queue, board, rule=BOTH_WAYS) == [("line2", "pos2")]  # ... unless lent, with no emergency waiting
    assert board.free() == []


def test_the_first_free_positions_of_each_group_are_found_without_scanning_the_board() -> None:
    rng = random.Random(13)
    names = [f"p{i}" for i in range(60)]
    groups: dict[str, Line] = {n: "1402" if rng.random() < 0.3 else "emergency" for n in names}
    board = PositionBoard(names, groups)
    for step in range(3000):
        name = rng.choice(names)
        if rng.random() < 0.05:
            board.rest(name, step + rng.randint(0, 20))
        else:
            board.set(name, rng.choice(["free", "free", "ringing", "busy"]))
        k = rng.randint(0, 8)
        everyone = board.free(step)
        expected = [(n, g) for n, g in everyone if [x for x, h in everyone if h == g].index(n) < k]
        assert board.free(step, k) == expected, step
