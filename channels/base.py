"""The channel interface: deliver a batch of messages, get one receipt each; say how you are.

Theory of operation: the delivery engine claims jobs from the durable outbox, renders them
into ``Message``s and hands a batch to ``Channel.deliver``. A channel never raises for a
delivery failure: every message comes back as a ``Receipt`` in the same order, and
``retryable`` tells the engine whether trying again later can help (5xx, 429, timeouts,
a dropped connection) or not (a bad number, a refused address). Asynchronous reports that
arrive later (Twilio status callbacks, SMPP delivery receipts) are passed to the
``on_update`` callback the engine gave the driver when it was opened.

Every driver module exposes ``open_<name>(config, *, on_update=None)``, an async context
manager that owns the driver's connections and yields a ``Channel``; ``deliver`` may be
called from any Trio task while it is open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import msgspec

Language = Literal["kk", "ru", "en"]
DeliveryState = Literal["queued", "sent", "delivered", "failed"]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered message for one recipient (or one siren zone, one feed) on one channel.

    ``idempotency_key`` is stable across restarts for the same alert, channel and recipient.
    ``address`` is what the channel understands: an E.164 number, an e-mail address, a
    Telegram chat id or ``@channel``, a siren zone name.
    """

    idempotency_key: str
    alert_id: str
    address: str
    language: Language
    subject: str = ""
    body: str
    html: str = ""
    exercise: bool = False
    options: dict[str, str] = {}


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """What the channel knows about one message after handing it on."""

    idempotency_key: str
    state: DeliveryState
    provider_id: str = ""
    error: str = ""
    retryable: bool = False
    retry_after_s: float | None = None
    reply: str = ""  # what the recipient answered inside the delivery (a voice call's DTMF digit)
    replay_key: str = ""  # the provider's report this came from, if it may send it again (a status callback)


class ChannelHealth(msgspec.Struct, frozen=True, kw_only=True):
    up: bool
    detail: str = ""


UpdateCallback = Callable[[Receipt], None]


class Channel(Protocol):
    """A delivery channel: ``deliver`` returns one receipt per message, in order, and does not
    raise for delivery failures (only for programming errors)."""

    name: str
    max_per_second: float
    max_batch: int

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]: ...

    async def health(self) -> ChannelHealth: ...


def failed(message: Message, error: str, *, retryable: bool, retry_after_s: float | None = None) -> Receipt:
    """A failure receipt for ``message``."""
    return Receipt(
        idempotency_key=message.idempotency_key,
        state="failed",
        error=error,
        retryable=retryable,
        retry_after_s=retry_after_s,
    )
