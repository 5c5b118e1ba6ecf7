"""One caller's channel being served, and the incident it belongs to.

What the call may do next is its ``life`` (``intake.call_state``, a pure table); this object adds the
I/O handles the Trio driver needs: the inbox of the caller's ARI events, the scope of the call's own
tasks and the scope of its ringback/announcements while it waits.
"""

from __future__ import annotations

import trio

from gateway.incident.recorder import Held
from gateway.incident.records import Incident
from gateway.intake.call_state import CallLife
from gateway.protocols import ari_events as ev


class Call:
    """A caller channel being served. Owned by the Intake; mutated only from Trio tasks."""

    def __init__(self, held: Held, channel_id: str, arrived_mono: float) -> None:
        self.held = held
        self.channel_id = channel_id
        self.arrived_mono = arrived_mono
        self.life = CallLife()
        self.inbox_send, self.inbox = trio.open_memory_channel[ev.Event](64)
        self.scope = trio.CancelScope()  # the call's own tasks; cancelled when the caller is gone
        self.subscribed = False  # our app receives its events even outside Stasis (an ARI fact, not call state)
        self.location_ref = ""  # a location sent by reference, fetched once the incident is stored
        self._hold = trio.CancelScope()

    @property
    def incident(self) -> Incident:
        return self.held.incident

    @property
    def id(self) -> str:
        return self.incident.id

    def new_hold(self) -> trio.CancelScope:
        """A fresh scope for ringback and announcements while the call waits (the previous one is
        cancelled: at most one hold plays). A hand-off or an overflow ends it (``stop_hold``)."""
        self._hold.cancel()
        self._hold = trio.CancelScope()
        return self._hold

    def stop_hold(self) -> None:
        self._hold.cancel()
