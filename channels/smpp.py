"""SMS over SMPP 3.4 to a national operator's SMSC: one transceiver bind, a pipelined window.

Theory of operation: ``open_smpp`` connects and binds (bind_transceiver) before it yields, so
a refused bind or an unreachable SMSC is a ChannelError the caller sees at once. A link owns
one reader task (every PDU from the SMSC) and one keep-alive task (enquire_link when idle; a
missing response to anything within ``response_timeout_s`` declares the link dead). Writes go
through one lock and are coalesced: ``deliver`` takes as many window slots and rate tokens as
it can get and writes that many submit_sm in one ``send_all``. Each submit_sm's sequence
number maps to (batch, message, part); the reader resolves it from submit_sm_resp and frees
the slot. When a link dies every unanswered submit_sm becomes a retryable failure (the SMSC
may or may not have taken it: the engine decides), messages not yet written go out on the
next link, and a background task reconnects with exponential backoff.

ESME_RTHROTTLED and ESME_RMSGQFUL come back as retryable failures with ``retry_after_s`` and
halve the driver's own send rate, which then recovers by a tenth of ``max_per_second`` per
second. Delivery receipts (deliver_sm) are answered with deliver_sm_resp and reported through
``on_update``; a bounded map from message id to idempotency key ties them to messages, and a
message sent in several parts is reported once, when its last part is delivered or its first
part fails. Texts people send to our number (deliver_sm of message type 0) go to ``on_inbound``
when one is given: parts of a long text are answered at once and joined (``gateway.protocols.smpp_mo``);
the deliver_sm that completes a text is answered only after ``on_inbound`` returns, and with
ESME_RX_T_APPN if it fails, so the SMSC keeps it and tries again. ``on_inbound`` also gets the
text's replay key (``protocols.replay.smpp_message``: the SMSC's message id, "" if it gives none),
so a deliver_sm the SMSC resends because our answer was lost can be answered without taking it twice.

The connection and its bind are ``channels.smpp_link``, the window and send rate
``channels.smpp_flow``, and the bookkeeping of batches and delivery receipts
``channels.smpp_receipts``; this module is the channel's tasks and how they use those.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from channels.base import ChannelHealth, Message, Receipt, UpdateCallback, failed
from channels.smpp_flow import Flow
from channels.smpp_link import Link, bind_transceiver
from channels.smpp_receipts import Batch, ReceiptBook, Tracked
from gateway.errors import ChannelError
from gateway.protocols import replay, smpp_mo
from gateway.protocols import smpp_pdu as P
from gateway.settings.channels import SmppConfig

SLOW_DOWN = frozenset({P.Status.ESME_RTHROTTLED, P.Status.ESME_RMSGQFUL})
# Statuses about the message itself: sending it again cannot help. Everything else (system
# errors, bind state, vendor codes we do not know) is worth another try later.
PERMANENT = frozenset({
    P.Status.ESME_RINVMSGLEN, P.Status.ESME_RINVCMDID, P.Status.ESME_RINVPRTFLG, P.Status.ESME_RINVREGDLVFLG,
    P.Status.ESME_RINVSRCADR, P.Status.ESME_RINVDSTADR, P.Status.ESME_RINVSERTYP, P.Status.ESME_RINVESMCLASS,
    P.Status.ESME_RINVSRCTON, P.Status.ESME_RINVSRCNPI, P.Status.ESME_RINVDSTTON, P.Status.ESME_RINVDSTNPI,
    P.Status.ESME_RINVSCHED, P.Status.ESME_RINVEXPIRY, P.Status.ESME_RINVDFTMSGID, P.Status.ESME_RX_P_APPN,
    P.Status.ESME_RX_R_APPN, P.Status.ESME_RINVOPTPARSTREAM, P.Status.ESME_ROPTPARNOTALLWD,
    P.Status.ESME_RINVPARLEN, P.Status.ESME_RMISSINGOPTPARAM, P.Status.ESME_RINVOPTPARAMVAL,
})
InboundCallback = Callable[[str, str, str], Awaitable[object]]  # (sender as the SMSC gave it, text, replay key)
log = logging.getLogger(__name__)


class SmppChannel:
    """The ``smpp`` channel; get one from ``open_smpp``."""

    name = "smpp"

    def __init__(self, config: SmppConfig, on_update: UpdateCallback | None,
                 on_inbound: InboundCallback | None = None) -> None:
        self.config = config
        self._on_inbound = on_inbound
        self._reassembler = smpp_mo.Reassembler()
        self.max_per_second = config.max_per_second
        self.max_batch = config.max_batch
        self._link: Link | None = None
        self._link_up = trio.Event()
        self._flow = Flow(config.window, config.max_per_second)
        self._sequence = 0
        self._ref = 0
        self._problem = ""
        self._counts = collections.Counter[str]()
        self._receipts = ReceiptBook(config.receipt_memory, self._counts, on_update)

    # --- delivering ---------------------------------------------------------------------
    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        """One receipt per message, in order: "sent" with the SMSC's message id, or "failed"."""
        batch = Batch(messages)
        work = self._prepare(batch)
        pos = 0
        while pos < len(work):
            link = await self._wait_link()
            if link is None:
                for index, *_ in work[pos:]:
                    batch.fail(index, failed(messages[index], f"SMPP link down: {self._problem}", retryable=True))
                break
            count = await self._flow.take(len(work) - pos)
            pos += await self._write(link, batch, work[pos:pos + count])
        if batch.inflight:
            batch.done = trio.Event()
            await batch.done.wait()
        return [r or failed(m, "no response", retryable=True) for r, m in zip(batch.receipts, messages, strict=True)]

    def _prepare(self, batch: Batch) -> list[tuple[int, int, P.SubmitTemplate, str]]:
        """(message, part, template, destination) for every part of every message that can be sent."""
        work = []
        templates: dict[tuple[int, int, bytes, bytes | None], P.SubmitTemplate] = {}
        for index, message in enumerate(batch.messages):
            address = message.address[1:] if message.address.startswith("+") else message.address
            if not (6 <= len(address) <= 15 and address.isascii() and address.isdigit()):
                batch.fail(index, failed(message, f"not an E.164 number: {message.address!r}", retryable=False))
                continue
            self._ref = (self._ref + 1) & 0xFF
            try:
                text = P.encode_text(message.body, ref=self._ref)
            except ValueError as exc:
                batch.fail(index, failed(message, str(exc), retryable=False))
                continue
            if self.config.long_messages == "payload" and len(text.parts) > 1:
                body = P.gsm_encode(message.body) if text.data_coding == P.CODING_GSM else message.body.encode(
                    "utf-16-be")
                parts: list[tuple[int, bytes, bytes | None]] = [(0, b"", body)]
            else:
                parts = [(text.esm_class, part, None) for part in text.parts]
            batch.parts_left[index] = len(parts)
            for part, (esm_class, short_message, payload) in enumerate(parts):
                key = (text.data_coding, esm_class, short_message, payload)
                template = templates.get(key)
                if template is None:
                    template = templates[key] = self._template(text.data_coding, esm_class, short_message, payload)
                work.append((index, part, template, address))
        return work

    def _template(self, coding: int, esm_class: int, short_message: bytes, payload: bytes | None) -> P.SubmitTemplate:
        cfg = self.config
        return P.SubmitTemplate(P.SubmitSm(
            sequence=0, source_addr_ton=cfg.source_addr_ton, source_addr_npi=cfg.source_addr_npi,
            source_addr=cfg.source_addr, dest_addr_ton=cfg.dest_addr_ton, dest_addr_npi=cfg.dest_addr_npi,
            esm_class=esm_class, registered_delivery=int(cfg.registered_delivery), data_coding=coding,
            short_message=short_message, message_payload=payload))

    async def _write(self, link: Link, batch: Batch, items: list[tuple[int, int, P.SubmitTemplate, str]]) -> int:
        """Write ``items`` (their window slots already taken) in one send; returns how many were handled."""
        frames = []
        async with link.lock:
            if link.dead:  # died while we waited: hand the slots back, the caller waits for the next link
                self._flow.give(len(items))
                return 0
            now = trio.current_time()
            for index, part, template, address in items:
                if batch.receipts[index] is not None:  # an earlier part already failed
                    self._flow.give()
                    continue
                self._sequence = self._sequence % 0x7FFFFFFF + 1
                link.pending[self._sequence] = (batch, index, part, now)
                batch.inflight += 1
                frames.append(template.frame(self._sequence, address))
            try:
                # Shielded: a caller cancelled mid-write would leave half a PDU and desynchronise the
                # SMSC. Still bounded: a dead link closes the stream, which ends this send.
                with trio.CancelScope(shield=True):
                    await link.stream.send_all(b"".join(frames))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._kill(link, f"write failed: {exc}")
        self._counts["submit_sm"] += len(frames)
        return len(items)

    async def _wait_link(self) -> Link | None:
        with trio.move_on_after(self.config.response_timeout_s):
            while self._link is None or self._link.dead:
                await self._link_up.wait()
            return self._link
        return None

    # --- reading ------------------------------------------------------------------------
    async def _read(self, link: Link) -> None:
        try:
            while True:
                replies: list[bytes] = []
                end = self._drain(link, replies)
                if replies:
                    await link.send(b"".join(replies))
                if end:  # after the last answers (unbind_resp, generic_nack) went out
                    self._kill(link, end)
                    return
                data = await link.stream.receive_some(65536)
                if not data:
                    self._kill(link, "SMSC closed the connection")
                    return
                link.last_rx = trio.current_time()
                link.decoder.receive_data(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._kill(link, f"connection lost: {exc}")

    def _drain(self, link: Link, replies: list[bytes]) -> str:
        """Handle every buffered PDU, collecting answers; returns why the link must end, or ""."""
        while True:
            try:
                pdu = link.decoder.next_pdu()
            except P.PduError as exc:
                replies.append(P.encode(P.GenericNack(sequence=exc.sequence, status=exc.status)))
                if not exc.in_sync:
                    return f"SMSC broke the PDU stream: {exc}"
                continue
            if pdu is None:
                return ""
            if type(pdu) is P.SubmitSmResp:
                self._on_submit_resp(link, pdu.sequence, pdu.status, pdu.message_id)
            elif type(pdu) is P.DeliverSm and self._on_inbound is not None and smpp_mo.is_mobile_originated(pdu):
                self._on_mo(link, pdu, replies)
            elif type(pdu) is P.DeliverSm:
                replies.append(P.encode(P.DeliverSmResp(sequence=pdu.sequence)))
                self._receipts.on_receipt(pdu)
            elif type(pdu) is P.EnquireLinkResp:
                link.enquire_sent = None
            elif type(pdu) is P.EnquireLink:
                replies.append(P.encode(P.EnquireLinkResp(sequence=pdu.sequence)))
            elif type(pdu) is P.GenericNack:
                self._on_submit_resp(link, pdu.sequence, pdu.status or P.Status.ESME_RUNKNOWNERR, "")
            elif type(pdu) is P.Unbind:
                replies.append(P.encode(P.UnbindResp(sequence=pdu.sequence)))
                return "SMSC unbound"
            elif type(pdu) is P.UnbindResp:
                link.unbound.set()
            elif not pdu.command_id & 0x80000000:  # a request we do not serve as an ESME
                replies.append(P.encode(P.GenericNack(sequence=pdu.sequence, status=P.Status.ESME_RINVCMDID)))

    def _on_submit_resp(self, link: Link, sequence: int, status: int, message_id: str) -> None:
        entry = link.pending.pop(sequence, None)
        if entry is None:
            return  # a late answer to something already given up on, or a stray generic_nack
        batch, index, part, _ = entry
        self._flow.give()
        message = batch.messages[index]
        if status:
            self._counts[P.status_name(status)] += 1
            if status in SLOW_DOWN:
                self._flow.slow_down()
                receipt = failed(message, P.status_name(status), retryable=True,
                                 retry_after_s=self.config.throttle_retry_after_s)
            else:
                receipt = failed(message, P.status_name(status), retryable=status not in PERMANENT)
            batch.fail(index, receipt)
        elif batch.receipts[index] is None:
            tracked = batch.tracked[index]
            if tracked is None:
                tracked = batch.tracked[index] = Tracked(message.idempotency_key, batch.parts_left[index])
            if self.config.registered_delivery:
                self._receipts.remember(message_id, tracked)
            if part == 0:
                tracked.provider_id = message_id
            batch.parts_left[index] -= 1
            if batch.parts_left[index] == 0:
                batch.receipts[index] = Receipt(idempotency_key=message.idempotency_key, state="sent",
                                                provider_id=tracked.provider_id)
        batch.settle()

    def _on_mo(self, link: Link, pdu: P.DeliverSm, replies: list[bytes]) -> None:
        whole, pushed_out = self._reassembler.add(smpp_mo.decode_mo(pdu), trio.current_time())
        for text in pushed_out:
            self._hand_over(link, text, None)
        if whole is None:  # one part of a longer text: kept, answered now
            replies.append(P.encode(P.DeliverSmResp(sequence=pdu.sequence)))
        else:  # answered once on_inbound has taken the whole text
            self._hand_over(link, whole, pdu.sequence)

    def _hand_over(self, link: Link, text: smpp_mo.MoText, sequence: int | None) -> None:
        if text.flags:
            log.warning("SMS from %r: %s", text.sender, ", ".join(text.flags))
        assert link.nursery is not None  # set by _serve before the reader and keep-alive start
        link.nursery.start_soon(self._inbound, link, text, sequence)

    async def _inbound(self, link: Link, text: smpp_mo.MoText, sequence: int | None) -> None:
        assert self._on_inbound is not None
        status = P.Status.ESME_ROK
        try:
            await self._on_inbound(text.sender, text.text, replay.smpp_message(text.message_id))
            self._counts["mo_texts"] += 1
        except Exception:  # the SMSC keeps the text and retries: better than losing a 112 message
            log.exception("inbound SMS from %r could not be taken; asking the SMSC to retry", text.sender)
            self._counts["mo_failed"] += 1
            status = P.Status.ESME_RX_T_APPN
        if sequence is not None:
            try:
                await link.send(P.encode(P.DeliverSmResp(sequence=sequence, status=status)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._kill(link, f"write failed: {exc}")

    # --- the link's life ----------------------------------------------------------------
    def _kill(self, link: Link, reason: str) -> None:
        """Declare ``link`` dead: every unanswered submit_sm becomes a retryable failure."""
        if link.dead:
            return
        link.dead = reason
        self._problem = reason
        self._counts["links_lost"] += 1
        for batch, index, _, _ in link.pending.values():
            batch.fail(index, failed(batch.messages[index], f"no submit_sm_resp before the link was lost ({reason})",
                                     retryable=True))
            self._flow.give()
            batch.settle()
        link.pending.clear()
        if self._link is link:
            self._link = None
            self._link_up = trio.Event()
        link.scope.cancel()

    async def _keepalive(self, link: Link) -> None:
        cfg = self.config
        tick = max(0.01, min(cfg.enquire_link_s, cfg.response_timeout_s) / 4)
        while not link.dead:
            await trio.sleep(tick)
            now = trio.current_time()
            if link.enquire_sent is not None and now - link.enquire_sent > cfg.response_timeout_s:
                self._kill(link, f"no enquire_link_resp within {cfg.response_timeout_s} s")
            elif link.pending and now - next(iter(link.pending.values()))[3] > cfg.response_timeout_s:
                self._kill(link, f"no submit_sm_resp within {cfg.response_timeout_s} s")
            for text in self._reassembler.expire(now):
                self._hand_over(link, text, None)
            if link.dead:
                break
            if link.enquire_sent is None and now - link.last_rx >= cfg.enquire_link_s:
                link.enquire_sent = now
                self._sequence = self._sequence % 0x7FFFFFFF + 1
                try:
                    await link.send(P.encode(P.EnquireLink(sequence=self._sequence)))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._kill(link, f"write failed: {exc}")

    async def _bind(self) -> Link:
        """Connect and bind_transceiver. Raises ChannelError."""
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return await bind_transceiver(self.config, self._sequence)

    def _adopt(self, link: Link) -> None:
        self._link = link
        self._problem = ""
        self._link_up.set()

    async def _serve(self, link: Link) -> None:
        self._adopt(link)
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    link.nursery = nursery
                    nursery.start_soon(self._read, link)
                    nursery.start_soon(self._keepalive, link)
        finally:
            self._kill(link, link.dead or "closed")
            with trio.CancelScope(shield=True):
                await link.stream.aclose()

    async def run(self, link: Link) -> None:
        """Serve ``link``, then reconnect with backoff forever (cancelled by ``open_smpp``)."""
        cfg = self.config
        backoff = cfg.reconnect_min_s
        while True:
            up_since = trio.current_time()
            await self._serve(link)
            if trio.current_time() - up_since > 5.0:
                backoff = cfg.reconnect_min_s
            while True:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, cfg.reconnect_max_s)
                try:
                    link = await self._bind()
                    break
                except ChannelError as exc:
                    self._problem = str(exc)
            self._counts["reconnects"] += 1

    async def unbind(self) -> None:
        """Unbind politely (bounded by ``response_timeout_s``, at most 2 s)."""
        link = self._link
        if link is None or link.dead:
            return
        with trio.move_on_after(min(self.config.response_timeout_s, 2.0)):
            self._sequence = self._sequence % 0x7FFFFFFF + 1
            try:
                await link.send(P.encode(P.Unbind(sequence=self._sequence)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            await link.unbound.wait()

    def statistics(self) -> dict[str, int]:
        """Counters: submit_sm written, refusals by status name, receipts, links lost, reconnects."""
        return dict(self._counts, window_free=self._flow.free, tracked=len(self._receipts))

    async def health(self) -> ChannelHealth:
        link = self._link
        if link is None or link.dead:
            return ChannelHealth(up=False, detail=self._problem or "not bound")
        return ChannelHealth(up=True, detail=f"bound to {self.config.host}:{self.config.port}, "
                                             f"{len(link.pending)} in flight, {self._flow.rate:.0f}/s allowed")


@asynccontextmanager
async def open_smpp(config: SmppConfig, *, on_update: UpdateCallback | None = None,
                    on_inbound: InboundCallback | None = None) -> AsyncIterator[SmppChannel]:
    """Connect and bind to the SMSC, yield the ``smpp`` channel; unbind and close on exit.

    Raises ChannelError if the first connection or bind fails; later losses are retried in
    the background. Delivery receipts go to ``on_update`` (called from the reader task); texts
    people send go to ``on_inbound(sender, text, replay_key)``, awaited in the link's own task group."""
    channel = SmppChannel(config, on_update, on_inbound)
    link = await channel._bind()
    channel._adopt(link)  # bound and usable from the first moment the caller holds the channel
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.run, link)
        try:
            yield channel
        finally:
            with trio.CancelScope(shield=True):
                await channel.unbind()
            nursery.cancel_scope.cancel()
