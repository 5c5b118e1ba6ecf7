"""Another node's change to an incident this node holds in memory, taken into this node's copy (issue 14).

Two nodes may work on one incident at once: its call on node A (which holds it in memory while the call
lives) and a dispatcher on node B's console setting its category or scene. Each writes the whole head of
the incident from its own copy, so without this A's next write would undo B's change in the head (the
timeline keeps both events: ``timeline_sql.APPEND_DISPLACED``).

So a node that holds an incident keeps ``base``, the head as it last wrote or read it. When the database
tells it another node changed the incident (``remote``), it reads the incident and merges field by field,
three ways: a field the other node changed and this one did not is taken; one this node changed is kept
(its write is on the way and carries it); one both changed keeps this node's. The other node's events this
node lacks are put into its timeline by time. ``base`` becomes what the database holds. Pure: no I/O.
"""

from __future__ import annotations

import msgspec

from gateway.incident.records import Incident, TimelineEvent

HEAD = tuple(f.name for f in msgspec.structs.fields(Incident) if f.name not in ("timeline", "updated_wall"))
Head = dict[str, object]


def head_of(incident: Incident) -> Head:
    """The incident's head fields as plain values (compared, never written)."""
    return {name: msgspec.to_builtins(getattr(incident, name)) for name in HEAD}


def _key(item: TimelineEvent) -> tuple[str, float, float, str]:
    return item.kind, item.wall, item.mono, item.actor


def merge(base: Head, mine: Incident, theirs: Incident) -> tuple[list[str], list[TimelineEvent]]:
    """The head fields to take from ``theirs`` (changed there since ``base``, not here), and their events
    ``mine`` lacks."""
    taken = []
    for name in HEAD:
        was = base.get(name)
        if msgspec.to_builtins(getattr(theirs, name)) != was and msgspec.to_builtins(getattr(mine, name)) == was:
            taken.append(name)
    known = {_key(e) for e in mine.timeline}
    return taken, [e for e in theirs.timeline if _key(e) not in known]


def take(mine: Incident, theirs: Incident, taken: list[str], events: list[TimelineEvent]) -> None:
    """Apply ``merge``'s result to ``mine`` in place (it is shared by every task working on it)."""
    for name in taken:
        setattr(mine, name, getattr(theirs, name))
    for item in events:  # by time; a timeline is nearly in time order, so look from its end
        at = len(mine.timeline)
        while at > 0 and mine.timeline[at - 1].wall > item.wall:
            at -= 1
        mine.timeline.insert(at, item)
