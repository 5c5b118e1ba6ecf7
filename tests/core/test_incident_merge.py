"""Merging another node's change into the copy of an incident this node holds (``gateway.incident.merge``):
three ways, field by field, and the other node's events put in by time."""

from __future__ import annotations

import msgspec

from gateway.incident.merge import head_of, merge, take
from gateway.incident.records import Location, TimelineEvent
from tests.core.test_store import incident


def at(kind: str, wall: float) -> TimelineEvent:
    return TimelineEvent(kind=kind, wall=wall, mono=wall, actor="t")


def test_theirs_only_is_taken_mine_only_kept_and_both_keep_mine() -> None:
    base_incident = incident("m")
    base_incident.timeline = [at("call_arrived", 1.0)]
    base = head_of(base_incident)
    mine = msgspec.structs.replace(base_incident, timeline=list(base_incident.timeline))
    theirs = msgspec.structs.replace(base_incident, timeline=list(base_incident.timeline))
    mine.state, mine.priority = "answered", 9  # this node: the call answered, and a priority
    theirs.category, theirs.priority = "fire", 3  # the other: a category, and a priority too
    theirs.scene = Location(source="dispatcher", shape="point", lat=43.25, lon=76.9)
    theirs.timeline += [at("category_changed", 3.0), at("scene_set", 5.0)]
    mine.timeline += [at("answered", 2.0), at("note", 4.0)]
    taken, events = merge(base, mine, theirs)
    assert sorted(taken) == ["category", "scene"]  # state and priority: this node's
    take(mine, theirs, taken, events)
    assert (mine.category, mine.priority, mine.state, mine.scene) == ("fire", 9, "answered", theirs.scene)
    assert [e.kind for e in mine.timeline] == ["call_arrived", "answered", "category_changed", "note", "scene_set"]
    assert merge(head_of(theirs), mine, theirs) == ([], [])  # nothing new the second time
