"""Who an area would reach, asked while an officer composes: the zones its named zones, polygons and circles
reach (as a draft would resolve them), the sirens and boards in those zones, and per channel how many
recipients of those zones can be reached there. A read: nothing is stored or audited (counts only)."""

from __future__ import annotations

from typing import Annotated

import msgspec
import trio
from msgspec import Meta

from gateway.errors import AlertError
from gateway.protocols import cap
from gateway.warning.engine import AsyncOutbox
from gateway.warning.outbox import Queries
from gateway.warning.workflow import KINDS, Point, Short
from gateway.warning.zones import ZoneSet, circle_problems, polygon_problems


class AudienceQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The area and channels being composed; the same limits as a draft's (``DraftSpec``)."""

    zones: Annotated[list[Short], Meta(max_length=1000)] = []
    polygons: Annotated[list[Annotated[list[Point], Meta(max_length=1000)]], Meta(max_length=100)] = []
    circles: Annotated[list[cap.Circle], Meta(max_length=100)] = []
    channels: Annotated[list[Short], Meta(max_length=20)] = msgspec.field(default_factory=lambda: list(KINDS))


class Audience(msgspec.Struct, frozen=True, kw_only=True):
    """``channels``: recipients reachable per chosen channel (for ``siren``: the siren relays); ``total``:
    distinct recipients at least one chosen channel reaches; ``sirens``/``boards``: relays in the zones."""

    zones: list[str]
    sirens: int
    boards: int
    channels: dict[str, int]
    total: int


async def audience(db: AsyncOutbox, zones: ZoneSet, query: AudienceQuery) -> Audience:
    """Count who ``query`` reaches, in a worker thread (shapes and the count), beside the outbox's writer: never
    queued behind a fan-out chunk. Raises AlertError (a 400) naming a bad shape by its index, an unknown zone
    or channel."""
    return await trio.to_thread.run_sync(count, db.sync, zones, query)


def count(outbox: Queries, zones: ZoneSet, query: AudienceQuery) -> Audience:
    """``audience``, blocking."""
    reached = resolve(zones, query)
    sirens = sum(len(g.coils) for name in reached for g in zones.zones[name].sirens)
    boards = sum(len(g.coils) for name in reached for g in zones.zones[name].boards)
    counts, total = outbox.count_audience(reached, query.channels) if reached else ({}, 0)
    channels = {c: sirens if c == "siren" else counts.get(c, 0) for c in dict.fromkeys(query.channels)}
    return Audience(zones=reached, sirens=sirens, boards=boards, channels=channels, total=total)


def resolve(zones: ZoneSet, query: AudienceQuery) -> list[str]:
    """The zones the area reaches, exactly as a draft resolves them. Raises AlertError."""
    wrong = [c for c in query.channels if c not in KINDS]
    if wrong:
        raise AlertError(f"channels: expected some of {', '.join(KINDS)}, got {wrong[0]!r}")
    problems = [f"polygons[{i}]: {p}" for i, poly in enumerate(query.polygons) for p in polygon_problems(poly)]
    problems += [f"circles[{i}]: {p}" for i, c in enumerate(query.circles) for p in circle_problems(c)]
    if problems:
        raise AlertError("; ".join(problems))
    area = cap.Area(area_desc="composed", zones=query.zones, polygons=query.polygons, circles=query.circles)
    return zones.matching([area])  # ZoneError (an AlertError) for an unknown zone
