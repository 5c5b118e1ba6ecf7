"""One caller's channel being served, and the incident it belongs to.

What the call may do next is its ``life`` (``intake.call_state``, a pure table); this object adds the
I/O handles the Trio driver needs: the inbox of the caller's ARI events, the scope of the call's own
tasks and the scope of its ringback/announcements while it waits.
"""

from __future__ import annotations

import math

import trio

from gateway.incident.recorder import Held
from gateway.incident.records import Incident
from gateway.intake.arrival import Unread
from gateway.intake.call_state import CallLife
from gateway.intake.silence import Silence
from gateway.protocols import ari_events as ev

# Theory of the inbox: one task reads the ARI websocket for every call, so it must never wait
# for one call's task (a slow call would stall every other caller's Dial and hang-up events, and
# the websocket's own back-pressure would stall Asterisk's event delivery for everyone). It must
# never drop either: an accepted call's events are its record. So each call's inbox is unbounded
# and drained in order by the call's task. It is bounded in practice by the call's life: Asterisk
# sends a channel's DTMF and playback events at human pace, and the inbox goes with the call.
# Past INBOX_HIGH_WATER waiting events the call's task is behind: logged and counted, still kept.
INBOX_HIGH_WATER = 64


class Call:
    """A caller channel being served. Owned by the Intake; mutated only from Trio tasks."""

    def __init__(self, held: Held, channel_id: str, arrived_mono: float) -> None:
        self.held = held
        self.channel_id = channel_id
        self.arrived_mono = arrived_mono
        self.life = CallLife()
        self.inbox_send, self.inbox = trio.open_memory_channel[ev.Event](math.inf)
        self.scope = trio.CancelScope()  # the call's own tasks; cancelled when the caller is gone
        self.subscribed = False  # our app receives its events even outside Stasis (an ARI fact, not call state)
        self.location_ref = ""  # a location sent by reference, fetched once the incident is stored
        self.unread: Unread | None = None  # facts still to be read before the incident is stored
        self.silence: Silence | None = None  # the silence rule, from the gateway's answer (intake.silent_calls)
        self._hold = trio.CancelScope()

    @property
    def incident(self) -> Incident:
        return self.held.incident

    @property
    def id(self) -> str:
        return self.incident.id

    def post(self, event: ev.Event) -> bool:
        """Put one of the caller's ARI events in the call's inbox, in order; never blocks, never drops.
        True when this event took the backlog past ``INBOX_HIGH_WATER`` (once per crossing)."""
        self.inbox_send.send_nowait(event)
        return self.inbox_send.statistics().current_buffer_used == INBOX_HIGH_WATER + 1

    def new_hold(self) -> trio.CancelScope:
        """A fresh scope for ringback and announcements while the call waits (the previous one is
        cancelled: at most one hold plays). A hand-off or an overflow ends it (``stop_hold``)."""
        self._hold.cancel()
        self._hold = trio.CancelScope()
        return self._hold

    def stop_hold(self) -> None:
        self._hold.cancel()
