"""What became of each message sent over SMPP: the answers to submit_sm, then delivery receipts.

Theory of operation: a ``Batch`` is one ``deliver`` call; it holds a receipt slot per message
that the reader task fills from submit_sm_resp, and an event ``deliver`` waits on until every
part it wrote has been answered or given up. A message accepted by the SMSC becomes a
``Tracked`` in the ``ReceiptBook``, a bounded map from the SMSC's message id (one per part)
to the message's idempotency key. A delivery receipt (deliver_sm) resolves it: a message
sent in several parts is reported through ``on_update`` once, when its last part is
delivered or its first part fails. Intermediate notifications (ENROUTE) are counted and
otherwise ignored, because the final receipt is still to come.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import trio

from channels.base import Message, Receipt, UpdateCallback
from gateway.errors import ProtocolError
from gateway.protocols import smpp_pdu as P


class Tracked:
    """A message waiting for delivery receipts: one per part, reported once."""

    __slots__ = ("key", "provider_id", "parts_left", "done")

    def __init__(self, key: str, parts: int) -> None:
        self.key, self.provider_id, self.parts_left, self.done = key, "", parts, False


class Batch:
    """One ``deliver`` call: a receipt slot per message, filled by the reader task."""

    __slots__ = ("messages", "receipts", "parts_left", "tracked", "inflight", "done")

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = messages
        self.receipts: list[Receipt | None] = [None] * len(messages)
        self.parts_left = [0] * len(messages)
        self.tracked: list[Tracked | None] = [None] * len(messages)
        self.inflight = 0
        self.done: trio.Event | None = None  # created only if deliver has to wait

    def fail(self, index: int, receipt: Receipt) -> None:
        if self.receipts[index] is None:
            self.receipts[index] = receipt
        tracked = self.tracked[index]
        if tracked is not None:
            tracked.done = True  # parts the SMSC took for a failed message must not report it delivered

    def settle(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self.done is not None:
            self.done.set()


class ReceiptBook:
    """Messages waiting for delivery receipts, by the SMSC's message id; the oldest are forgotten
    beyond ``memory`` so an SMSC that never sends receipts cannot grow it without bound."""

    def __init__(self, memory: int, counts: collections.Counter[str], on_update: UpdateCallback | None) -> None:
        self._memory = memory
        self._counts = counts  # the channel's counters, shown by its ``statistics``
        self._on_update = on_update
        self._tracked: collections.OrderedDict[str, Tracked] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._tracked)

    def remember(self, message_id: str, tracked: Tracked) -> None:
        self._tracked[message_id] = tracked
        if len(self._tracked) > self._memory:
            self._tracked.popitem(last=False)

    def on_receipt(self, pdu: P.DeliverSm) -> None:
        if pdu.esm_class & 0x3C != P.ESM_DELIVERY_RECEIPT:
            return  # a mobile-originated message: acknowledged, not ours to handle
        parsed: P.DeliveryReceipt | None = None
        message_id = pdu.receipted_message_id or ""
        stat = P.MESSAGE_STATES.get(pdu.message_state or 0, "")
        if not message_id or stat != "DELIVRD":  # the TLVs say it all for the common case; the text has err:
            try:
                parsed = P.parse_receipt(pdu.short_message.decode("latin-1"))
            except ProtocolError:
                pass
            message_id = message_id or (parsed.message_id if parsed else "")
            stat = stat or (parsed.stat if parsed else "")
        if stat == "ENROUTE" or not stat:  # an intermediate notification: the final receipt is still to come
            self._counts["receipt_intermediate"] += 1
            return
        tracked = self._tracked.pop(message_id, None)
        if tracked is None or tracked.done:
            self._counts["receipt_unmatched" if tracked is None else "receipt_ignored"] += 1
            return
        if stat in P.FINAL_FAILURES:
            tracked.done = True
            self._notify(Receipt(idempotency_key=tracked.key, state="failed", provider_id=tracked.provider_id,
                                 error=f"stat:{stat} err:{parsed.err if parsed else ''}"))
            return
        tracked.parts_left -= 1
        if tracked.parts_left <= 0:
            tracked.done = True
            self._notify(Receipt(idempotency_key=tracked.key, state="delivered", provider_id=tracked.provider_id))

    def _notify(self, receipt: Receipt) -> None:
        self._counts[f"receipt_{receipt.state}"] += 1
        if self._on_update is not None:
            self._on_update(receipt)
