"""Fan-out of incident changes to live subscribers (server-sent events)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from gateway.incident.records import IncidentSummary

log = logging.getLogger(__name__)


class Bus:
    """Publishes never block: a subscriber that falls ``buffer`` changes behind is dropped
    (its stream ends and the client reconnects and re-reads), so one slow console cannot stall
    call handling. Only changes are published: most timeline events (a scenario's steps, each
    notification) leave an incident's summary as it was, and sending them again to every console
    multiplied the stream by the number of events (200 consoles fell behind at 50 incidents/s)."""

    def __init__(self, buffer: int = 1000, remember: int = 10_000) -> None:
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[IncidentSummary]] = set()
        self._last: dict[str, IncidentSummary] = {}  # what each recent incident last looked like
        self._remember = remember

    def publish(self, change: IncidentSummary) -> None:
        if self._last.get(change.id) == change:
            return
        self._last.pop(change.id, None)
        self._last[change.id] = change  # newest last: the oldest go first when there are too many
        if len(self._last) > self._remember:
            del self._last[next(iter(self._last))]
        for send in list(self._subscribers):
            try:
                send.send_nowait(change)
            except (trio.WouldBlock, trio.BrokenResourceError):
                log.warning("dropping a slow incident-events subscriber")
                self._subscribers.discard(send)
                send.close()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[IncidentSummary]]:
        send, receive = trio.open_memory_channel[IncidentSummary](self._buffer)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
