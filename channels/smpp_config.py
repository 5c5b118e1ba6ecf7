"""``SmppConfig``: one SMSC account and how hard to push it (see ``channels.smpp``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.schema import Base

_Octet = Annotated[int, msgspec.Meta(ge=0, le=255)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]


class SmppConfig(Base, frozen=True):
    """One SMSC account. ``source_addr_ton`` 5 is alphanumeric, 1 international, 0 unknown."""

    system_id: Annotated[str, msgspec.Meta(max_length=15)]
    password: Annotated[str, msgspec.Meta(max_length=8)]
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2775
    system_type: Annotated[str, msgspec.Meta(max_length=12)] = ""
    source_addr: Annotated[str, msgspec.Meta(max_length=20)] = ""
    source_addr_ton: _Octet = 0
    source_addr_npi: _Octet = 0
    dest_addr_ton: _Octet = 1
    dest_addr_npi: _Octet = 1
    window: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 64
    max_per_second: Annotated[float, msgspec.Meta(gt=0, le=100000)] = 1000.0
    max_batch: Annotated[int, msgspec.Meta(ge=1)] = 500
    enquire_link_s: _Seconds = 30.0
    response_timeout_s: _Seconds = 10.0
    connect_timeout_s: _Seconds = 10.0
    reconnect_min_s: _Seconds = 0.2
    reconnect_max_s: _Seconds = 30.0
    throttle_retry_after_s: _Seconds = 1.0
    registered_delivery: bool = True
    long_messages: Literal["udh", "payload"] = "udh"  # concatenated parts, or one submit_sm with message_payload
    # Message ids awaiting a delivery receipt, oldest dropped first: ~300 bytes each (30 MB at the
    # default), 100 s of receipts at the default contracted 1,000/s.
    receipt_memory: Annotated[int, msgspec.Meta(ge=1)] = 100_000
