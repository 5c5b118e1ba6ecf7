"""The channel interface: deliver a message, get a receipt; say what you can do and how you are."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered message for one recipient on one channel."""

    idempotency_key: str
    recipient: str
    language: Literal["kk", "ru", "en"]
    subject: str = ""
    body: str
    exercise: bool = False


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """What the channel knows after handing a message on."""

    idempotency_key: str
    state: Literal["queued", "sent", "delivered", "failed"]
    provider_id: str = ""
    error: str = ""
    retry_after_s: float | None = None


class ChannelHealth(msgspec.Struct, frozen=True, kw_only=True):
    up: bool
    detail: str = ""


class Channel(Protocol):
    """A delivery channel. ``deliver`` raises only for programming errors; delivery failures are receipts."""

    name: str
    max_per_second: float
    max_body_chars: int

    async def deliver(self, message: Message) -> Receipt: ...

    async def health(self) -> ChannelHealth: ...
