"""One caller's channel being served, and the incident it belongs to."""

from __future__ import annotations

import trio

from gateway.incident.recorder import Held
from gateway.incident.records import Incident
from gateway.protocols import ari_events as ev


class Call:
    """A caller channel being served. Owned by the Intake; mutated only from Trio tasks."""

    def __init__(self, held: Held, channel_id: str, arrived_mono: float) -> None:
        self.held = held
        self.channel_id = channel_id
        self.arrived_mono = arrived_mono
        self.inbox_send, self.inbox = trio.open_memory_channel[ev.Event](64)
        self.scope = trio.CancelScope()
        self.gone = False
        self.enqueued_mono: float | None = None
        self.first_enqueued_mono: float | None = None
        self.ring_position: str | None = None  # the position being rung (or talking, once answered)
        self.ring_started_mono: float | None = None
        self.delivering = False  # handed to the dialplan's Dial: out of Stasis until it comes back
        self.subscribed = False  # our app receives its events even outside Stasis
        self.hold_scope = trio.CancelScope()  # ringback/announcements while queued
        self.answered = trio.Event()

    @property
    def incident(self) -> Incident:
        return self.held.incident

    @property
    def id(self) -> str:
        return self.incident.id
