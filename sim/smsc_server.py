"""The SMSC stand-in's SMPP 3.4 server: ``Smsc`` (state, counters, fault knobs) and ``open_smsc``.

It speaks the real wire protocol through ``gateway.protocols.smpp_pdu``: bind authentication
(ESME_RINVSYSID / ESME_RINVPASWD / ESME_RBINDFAIL), submit_sm_resp with message ids,
ESME_RINVDSTADR for destinations that are not 6..15 digits, enquire_link, unbind,
generic_nack for unknown commands, and delivery receipts as deliver_sm (receipt text plus
the receipted_message_id and message_state TLVs) after a configurable delay, to whichever
receiver-capable bind of that system id is up, as operators' SMSCs do after a reconnect.

It records what it accepted: totals, a count per destination and (unless turned off) one
``Delivery`` per whole message with its decoded text, concatenated parts reassembled.

Fault knobs: ``throttle_next(n)`` / ``throttle_above(per_s)`` answer ESME_RTHROTTLED,
``queue_full_next(n)`` answers ESME_RMSGQFUL, ``refuse_bind``, ``drop_after(n)`` closes the
connection after receiving n more PDUs without answering them, ``silent`` reads and never
answers. ``send_mo`` hands a text "sent by a handset" to a bound receiver, as the SMSC of a
short number like 112 does, and reports each part's deliver_sm_resp status.

In-process: ``async with open_smsc(system_id=..., password=...) as smsc`` (127.0.0.1, port 0).
"""

from __future__ import annotations

import collections
import functools
import math
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import trio

from gateway.protocols import smpp_mo
from gateway.protocols import smpp_pdu as P

DESTINATION = re.compile(r"^[0-9]{6,15}$")


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One whole message the SMSC accepted (all its parts)."""

    system_id: str
    source: str
    destination: str
    text: str
    data_coding: int
    parts: int
    message_ids: list[str]


class Faults(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fault knobs as one body for the control API; fields left out stay as they are."""

    throttle_next: int | None = None
    queue_full_next: int | None = None
    throttle_above: float | None = None  # 0 turns the per-second limit off
    refuse_bind: bool | None = None
    drop_after: int | None = None
    silent: bool | None = None
    receipt_delay_s: float | None = None
    receipt_tlvs: bool | None = None
    intermediate_receipts: bool | None = None
    fail_destinations: list[str] | None = None
    reject_destinations: list[str] | None = None


class _Pending(msgspec.Struct):
    due: float
    system_id: str
    origin: _Conn
    receipt: P.DeliveryReceipt
    source: str
    destination: str


class _Conn:
    """One ESME connection: its bind state and a locked writer shared with the receipt task."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.lock = trio.Lock()
        self.system_id = ""
        self.bound: type[P.Pdu] | None = None
        self.closed = False
        self.sequence = 0
        self.mo_answers: dict[int, int | None] = {}  # deliver_sm (MO) sequence -> status of its resp
        self.mo_answered = trio.Event()

    @property
    def receives(self) -> bool:
        return self.bound in (P.BindTransceiver, P.BindReceiver) and not self.closed

    async def send(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)


class Smsc:
    """The stand-in's state, counters and fault knobs; shared by all its connections."""

    def __init__(self, *, system_id: str, password: str, system_type: str = "", receipt_delay_s: float = 0.05,
                 keep_text: bool = True, count_by_destination: bool = True,
                 fail_destinations: frozenset[str] = frozenset(),
                 reject_destinations: frozenset[str] = frozenset()) -> None:
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.receipt_delay_s = receipt_delay_s
        self.receipt_tlvs = True  # receipted_message_id and message_state beside the text
        self.intermediate_receipts = False  # an ENROUTE notification before each final receipt
        self.keep_text, self.count_by_destination = keep_text, count_by_destination
        self.fail_destinations, self.reject_destinations = fail_destinations, reject_destinations
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        # counters
        self.binds = 0
        self.bind_failures = 0
        self.submitted = 0  # submit_sm PDUs accepted (parts)
        self.messages = 0  # whole messages accepted, after reassembly
        self.throttled = 0
        self.rejected = 0
        self.receipts_sent = 0
        self.receipts_acked = 0
        self.unbinds = 0
        self.mo_sent = 0  # mobile-originated deliver_sm written (parts)
        self.mo_acked = 0
        self.by_destination: collections.Counter[str] = collections.Counter()
        self.records: dict[str, list[Delivery]] = collections.defaultdict(list)
        # fault knobs
        self.refuse_bind = False
        self.silent = False
        self._throttle_next = 0
        self._queue_full_next = 0
        self._throttle_above: float | None = None
        self._window_start = 0.0
        self._window_count = 0
        self._drop_after: int | None = None
        # internals
        self._next_id = 0x1000
        # A real SMSC never reuses a message id; a gateway keeps the MO ids it took, so a stand-in
        # started again must not name a new text with an old id.
        self._mo_prefix = f"MO{int(time.time() * 1000):X}-"
        self._conns: list[_Conn] = []
        self._parts: dict[tuple[str, str, str, int, int], dict[int, tuple[str, str]]] = {}
        self._receipts: collections.deque[_Pending] = collections.deque()
        self._wake = trio.Event()
        self._wall = (0.0, "")

    # --- knobs --------------------------------------------------------------------------
    def throttle_next(self, count: int) -> None:
        """Answer the next ``count`` submit_sm with ESME_RTHROTTLED."""
        self._throttle_next = count

    def queue_full_next(self, count: int) -> None:
        """Answer the next ``count`` submit_sm with ESME_RMSGQFUL."""
        self._queue_full_next = count

    def throttle_above(self, per_second: float | None) -> None:
        """Answer ESME_RTHROTTLED to submit_sm beyond ``per_second`` in each one-second window."""
        self._throttle_above = per_second

    def drop_after(self, pdus: int) -> None:
        """Once: answer the next ``pdus - 1`` PDUs, then close the connection on the next one unanswered."""
        self._drop_after = pdus

    def apply(self, faults: Faults) -> None:
        """Set every knob ``faults`` names."""
        if faults.throttle_next is not None:
            self.throttle_next(faults.throttle_next)
        if faults.queue_full_next is not None:
            self.queue_full_next(faults.queue_full_next)
        if faults.throttle_above is not None:
            self.throttle_above(faults.throttle_above or None)
        if faults.drop_after is not None:
            self.drop_after(faults.drop_after)
        if faults.refuse_bind is not None:
            self.refuse_bind = faults.refuse_bind
        if faults.silent is not None:
            self.silent = faults.silent
        if faults.receipt_delay_s is not None:
            self.receipt_delay_s = faults.receipt_delay_s
        if faults.receipt_tlvs is not None:
            self.receipt_tlvs = faults.receipt_tlvs
        if faults.intermediate_receipts is not None:
            self.intermediate_receipts = faults.intermediate_receipts
        if faults.fail_destinations is not None:
            self.fail_destinations = frozenset(faults.fail_destinations)
        if faults.reject_destinations is not None:
            self.reject_destinations = frozenset(faults.reject_destinations)

    def stats(self) -> dict[str, object]:
        return {"binds": self.binds, "bind_failures": self.bind_failures, "submitted": self.submitted,
                "messages": self.messages, "throttled": self.throttled, "rejected": self.rejected,
                "receipts_sent": self.receipts_sent, "receipts_acked": self.receipts_acked, "unbinds": self.unbinds,
                "destinations": len(self.by_destination), "mo_sent": self.mo_sent, "mo_acked": self.mo_acked}

    def texts(self, destination: str) -> list[str]:
        return [d.text for d in self.records.get(destination, [])]

    # --- serving ------------------------------------------------------------------------
    async def serve(self, stream: trio.SocketStream) -> None:
        """Serve one ESME connection until it unbinds, drops, or a fault knob closes it."""
        conn = _Conn(stream)
        self._conns.append(conn)
        decoder = P.Decoder()
        try:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                decoder.receive_data(data)
                out: list[bytes] = []
                keep_open = self._drain(conn, decoder, out)
                if out:
                    await conn.send(b"".join(out))
                if not keep_open:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            conn.closed = True
            self._conns.remove(conn)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _drain(self, conn: _Conn, decoder: P.Decoder, out: list[bytes]) -> bool:
        """Handle every whole PDU buffered; False when the connection must close."""
        while True:
            try:
                pdu = decoder.next_pdu()
            except P.PduError as exc:
                out.append(P.encode(P.GenericNack(sequence=exc.sequence, status=exc.status)))
                if not exc.in_sync:
                    return False
                continue
            if pdu is None:
                return True
            if self._drop_after is not None:
                self._drop_after -= 1
                if self._drop_after <= 0:  # answers so far go out; this PDU and later ones never do
                    self._drop_after = None
                    return False
            if self.silent:
                continue
            reply = self._handle(conn, pdu)
            if reply is not None:
                out.append(P.encode(reply))
            if isinstance(pdu, P.Unbind):
                return False

    def _handle(self, conn: _Conn, pdu: P.Pdu) -> P.Pdu | None:
        seq = pdu.sequence
        match pdu:
            case P.SubmitSm():
                if conn.bound not in (P.BindTransceiver, P.BindTransmitter):
                    return P.SubmitSmResp(sequence=seq, status=P.Status.ESME_RINVBNDSTS)
                return self._submit(conn, pdu)
            case P.DeliverSmResp() if seq in conn.mo_answers:
                conn.mo_answers[seq] = pdu.status
                conn.mo_answered.set()  # wakes every waiting send_mo; each checks its own sequences
                conn.mo_answered = trio.Event()
                self.mo_acked += 1
                return None
            case P.DeliverSmResp():
                self.receipts_acked += 1
                return None
            case P.EnquireLink():
                return P.EnquireLinkResp(sequence=seq)
            case P.BindTransceiver() | P.BindTransmitter() | P.BindReceiver():
                return self._bind(conn, pdu)
            case P.Unbind():
                self.unbinds += 1
                return P.UnbindResp(sequence=seq)
            case P.EnquireLinkResp() | P.GenericNack() | P.UnbindResp():
                return None
            case _:  # deliver_sm or a response an ESME should never send us
                return P.GenericNack(sequence=seq, status=P.Status.ESME_RINVCMDID)

    def _bind(self, conn: _Conn, pdu: P._Bind) -> P.Pdu:
        resp = {P.BindTransceiver: P.BindTransceiverResp, P.BindTransmitter: P.BindTransmitterResp,
                P.BindReceiver: P.BindReceiverResp}[type(pdu)]
        status = P.Status.ESME_ROK
        if conn.bound is not None:
            status = P.Status.ESME_RALYBND
        elif pdu.system_id != self.system_id:
            status = P.Status.ESME_RINVSYSID
        elif pdu.password != self.password:
            status = P.Status.ESME_RINVPASWD
        elif self.system_type and pdu.system_type != self.system_type:
            status = P.Status.ESME_RINVSYSTYP
        elif self.refuse_bind:
            status = P.Status.ESME_RBINDFAIL
        if status:
            self.bind_failures += 1
            return resp(sequence=pdu.sequence, status=status)
        conn.bound, conn.system_id = type(pdu), pdu.system_id
        self.binds += 1
        if conn.receives:
            self._wake.set()
        return resp(sequence=pdu.sequence, system_id="SIMSMSC", sc_interface_version=P.INTERFACE_VERSION)

    def _refusal(self) -> int:
        if self._throttle_next > 0:
            self._throttle_next -= 1
            return P.Status.ESME_RTHROTTLED
        if self._queue_full_next > 0:
            self._queue_full_next -= 1
            return P.Status.ESME_RMSGQFUL
        if self._throttle_above is not None:
            now = trio.current_time()
            if now - self._window_start >= 1.0:
                self._window_start, self._window_count = now, 0
            if self._window_count >= self._throttle_above:
                return P.Status.ESME_RTHROTTLED
            self._window_count += 1
        return P.Status.ESME_ROK

    def _submit(self, conn: _Conn, pdu: P.SubmitSm) -> P.SubmitSmResp:
        destination = pdu.destination_addr
        if not DESTINATION.match(destination) or destination in self.reject_destinations:
            self.rejected += 1
            return P.SubmitSmResp(sequence=pdu.sequence, status=P.Status.ESME_RINVDSTADR)
        status = self._refusal()
        if status:
            self.throttled += 1
            return P.SubmitSmResp(sequence=pdu.sequence, status=status)
        self._next_id += 1
        message_id = f"{self._next_id:X}"
        self.submitted += 1
        self._account(conn, pdu, message_id)
        if pdu.registered_delivery & 0x03:
            stat = "UNDELIV" if destination in self.fail_destinations else "DELIVRD"
            wall = self._wall_clock()
            receipt = P.DeliveryReceipt(message_id=message_id, stat=stat, err="001" if stat != "DELIVRD" else "000",
                                        dlvrd="000" if stat != "DELIVRD" else "001", submit_date=wall, done_date=wall)
            if not self._receipts:
                self._wake.set()
            due = trio.current_time() + self.receipt_delay_s
            if self.intermediate_receipts:
                enroute = msgspec.structs.replace(receipt, stat="ENROUTE", dlvrd="000", err="000")
                self._receipts.append(_Pending(due, conn.system_id, conn, enroute, pdu.source_addr, destination))
            self._receipts.append(_Pending(due, conn.system_id, conn, receipt, pdu.source_addr, destination))
        return P.SubmitSmResp(sequence=pdu.sequence, message_id=message_id)

    def _wall_clock(self) -> str:
        now = time.time()
        if now - self._wall[0] >= 1.0:  # strftime per message would cost more than the rest of submit_sm
            self._wall = (now, time.strftime("%y%m%d%H%M", time.localtime(now)))
        return self._wall[1]

    def _account(self, conn: _Conn, pdu: P.SubmitSm, message_id: str) -> None:
        """Count a whole message once its last part is in; keep its text if asked to."""
        body, concat = pdu.short_message, None
        if pdu.message_payload is not None:
            body = pdu.message_payload
        elif pdu.esm_class & P.ESM_UDHI:
            concat, body = P.split_udh(body)
        if concat is None and pdu.sar_msg_ref_num is not None and pdu.sar_total_segments and pdu.sar_segment_seqnum:
            concat = P.Concat(pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum)
        text = P.decode_text(pdu.data_coding, body) if self.keep_text else ""
        if concat is None or concat.total <= 1:
            self._record(conn, pdu, text, 1, [message_id])
            return
        key = (conn.system_id, pdu.source_addr, pdu.destination_addr, concat.ref, concat.total)
        parts = self._parts.setdefault(key, {})
        parts[concat.seq] = (text, message_id)
        if len(parts) == concat.total:
            del self._parts[key]
            ordered = [parts[i] for i in sorted(parts)]
            self._record(conn, pdu, "".join(t for t, _ in ordered), concat.total, [m for _, m in ordered])

    def _record(self, conn: _Conn, pdu: P.SubmitSm, text: str, parts: int, ids: list[str]) -> None:
        self.messages += 1
        if self.count_by_destination:
            self.by_destination[pdu.destination_addr] += 1
        if self.keep_text:
            self.records[pdu.destination_addr].append(Delivery(
                system_id=conn.system_id, source=pdu.source_addr, destination=pdu.destination_addr, text=text,
                data_coding=pdu.data_coding, parts=parts, message_ids=ids))

    # --- mobile-originated texts ------------------------------------------------------
    async def send_mo(self, source: str, destination: str = "112", text: str = "", *, data_coding: int | None = None,
                      body: bytes | None = None, message_id: str | None = None, timeout_s: float = 5.0) -> list[int]:
        """Send a handset's text to the first bound receiver (split like submit_sm, or ``body`` as
        raw octets); return each part's deliver_sm_resp status. Each deliver_sm names the SMSC's
        message id in ``receipted_message_id`` (the id, or id-1, id-2... for the parts of a long
        text); give ``message_id`` to send a stored message again, as an SMSC does when it missed
        our answer. Raises LookupError when no receiver is bound, trio.TooSlowError when an answer
        does not come within ``timeout_s``."""
        conn = next((c for c in self._conns if c.receives), None)
        if conn is None:
            raise LookupError("no receiver or transceiver is bound")
        self._next_id += 1
        pdus = smpp_mo.mo_pdus(source, destination, text, ref=self._next_id & 0xFF, data_coding=data_coding, body=body)
        base = message_id or f"{self._mo_prefix}{self._next_id:X}"
        ids = [base] if len(pdus) == 1 else [f"{base}-{n}" for n in range(1, len(pdus) + 1)]
        frames, sequences = [], []
        for pdu, part_id in zip(pdus, ids, strict=True):
            conn.sequence = conn.sequence % 0x7FFFFFFF + 1
            frames.append(P.encode(msgspec.structs.replace(pdu, sequence=conn.sequence,  # ValueError: too long
                                                           receipted_message_id=part_id)))
            sequences.append(conn.sequence)
        conn.mo_answers.update(dict.fromkeys(sequences))
        await conn.send(b"".join(frames))
        self.mo_sent += len(frames)
        try:
            with trio.fail_after(timeout_s):
                while any(conn.mo_answers[s] is None for s in sequences):
                    await conn.mo_answered.wait()
            return [conn.mo_answers[s] or 0 for s in sequences]
        finally:
            for s in sequences:
                conn.mo_answers.pop(s, None)

    # --- delivery receipts --------------------------------------------------------------
    def _receiver(self, pending: _Pending) -> _Conn | None:
        if pending.origin.receives:
            return pending.origin
        return next((c for c in self._conns if c.receives and c.system_id == pending.system_id), None)

    async def run_receipts(self) -> None:
        """Send due delivery receipts as deliver_sm, one write per connection per round; an SMSC
        keeps receipts while no receiver bind of that system id is up (or while it is silent)."""
        while True:
            if not self._receipts or self.silent:
                self._wake = trio.Event()
                with trio.move_on_after(0.2 if self._receipts else math.inf):
                    await self._wake.wait()
                continue
            now = trio.current_time()
            if self._receipts[0].due > now:
                await trio.sleep(self._receipts[0].due - now)
                continue
            batches: dict[_Conn, list[_Pending]] = {}
            held: list[_Pending] = []
            while self._receipts and self._receipts[0].due <= now:
                pending = self._receipts.popleft()
                conn = self._receiver(pending)
                (held if conn is None else batches.setdefault(conn, [])).append(pending)
            for conn, items in batches.items():
                try:
                    await conn.send(b"".join([self._deliver_sm(conn, p) for p in items]))
                    self.receipts_sent += len(items)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    conn.closed = True
                    held.extend(items)
            if held:
                self._receipts.extendleft(reversed(held))
                await trio.sleep(0.2)  # wait for a receiver bind to come (back) up

    def _deliver_sm(self, conn: _Conn, pending: _Pending) -> bytes:
        conn.sequence = conn.sequence % 0x7FFFFFFF + 1
        r = pending.receipt
        return P.encode(P.DeliverSm(
            sequence=conn.sequence, source_addr=pending.destination, dest_addr_ton=0,
            destination_addr=pending.source, esm_class=P.ESM_DELIVERY_RECEIPT,
            short_message=P.format_receipt(r).encode("latin-1"),
            receipted_message_id=r.message_id if self.receipt_tlvs else None,
            message_state=P.STATE_CODES[r.stat] if self.receipt_tlvs else None))


@asynccontextmanager
async def open_smsc(*, system_id: str = "warn", password: str = "secret", host: str = "127.0.0.1", port: int = 0,
                    **options: object) -> AsyncIterator[Smsc]:
    """Run a stand-in SMSC on ``host:port`` (port 0: any free one); yields it with ``address`` set.
    ``options`` are ``Smsc`` keyword arguments."""
    smsc = Smsc(system_id=system_id, password=password, **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, smsc.serve, port, host=host))
        smsc.address = listeners[0].socket.getsockname()[:2]
        nursery.start_soon(smsc.run_receipts)
        yield smsc
        nursery.cancel_scope.cancel()
