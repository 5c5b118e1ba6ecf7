"""Records of the warning workflow: an alert as the gateway keeps it, its audit trail, its progress."""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.protocols.cap import Alert

AlertState = Literal["draft", "approved", "sending", "sent", "superseded", "cancelled"]
# Job states in the outbox; small integers because a million-row table stores one per job.
QUEUED, SENDING, SENT, DELIVERED, FAILED, MOVED, WITHDRAWN = range(7)
JOB_STATE_NAMES = ("queued", "sending", "sent", "delivered", "failed", "moved", "withdrawn")
TERMINAL = (SENT, DELIVERED, FAILED, MOVED, WITHDRAWN)


class AlertRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A public warning: the CAP message plus what the gateway needs to deliver and audit it.

    ``event`` names the template; ``zones`` are the zones the areas reach (resolved once, at
    draft time, so approval approves exactly the audience); ``root`` is the identifier of the
    first Alert of an Update/Cancel chain, whose recipients every later message reaches.
    """

    id: str
    state: AlertState
    event: str
    cap: Alert
    zones: list[str]
    channels: list[str]
    fields: dict[str, str] = {}
    root: str = ""
    created_by: str
    created_at: float
    approved_by: str = ""
    approved_at: float | None = None
    sent_by: str = ""
    sent_at: float | None = None
    finished_at: float | None = None

    @property
    def exercise(self) -> bool:
        """Exercise and Test messages go only to drill destinations."""
        return self.cap.status in ("Exercise", "Test")


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an alert's append-only audit trail."""

    at: float
    actor: str
    kind: str
    detail: dict[str, str | int | float | bool] = {}


class ChannelProgress(msgspec.Struct, kw_only=True):
    """Per-channel counts for ``gateway alert status`` and the progress stream."""

    queued: int = 0
    sending: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    moved: int = 0
    withdrawn: int = 0
    retried: int = 0
    first_at: float | None = None
    health: str = "up"


class Progress(msgspec.Struct, kw_only=True):
    alert_id: str
    state: AlertState
    targeted: int
    materialised: bool
    channels: dict[str, ChannelProgress]
