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
    call handling."""

    def __init__(self, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[IncidentSummary]] = set()

    def publish(self, change: IncidentSummary) -> None:
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
