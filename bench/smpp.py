"""SMPP benchmark: codec cost per PDU, then driver -> SMSC stand-in (separate process) on loopback.

(1) Codec: µs per encode/decode of submit_sm, submit_sm_resp and a delivery-receipt deliver_sm,
    with smpplib 2.2.4's PDU layer alongside for the submit_sm (why we wrote our own codec).
(2) End to end: ``python -m sim.smsc`` in its own process, ``open_smpp`` here, batches of
    ``max_batch`` messages from several concurrent ``deliver`` calls (as the engine does).
    Prints messages/s, submit_sm/s and CPU µs per message for each side, with delivery
    receipts on and off and for a few window sizes.

Run: `python bench/smpp.py [--messages N] [--quick]`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.base import Message, Receipt  # noqa: E402
from channels.smpp import open_smpp
from gateway.protocols import smpp_pdu as P  # noqa: E402
from gateway.settings.channels import SmppConfig  # noqa: E402
from sim.smsc import smsc_process  # noqa: E402

KAZAKH = "Назар аударыңыз! Алматыда су тасқыны. Биік жерге көтеріліңіз."  # 62 UCS-2 units: one part
ENGLISH = "Flood warning for Almaty: move to high ground now. Civil Defence."


def per_call_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        count += 200
    return elapsed / count * 1e6


def codec() -> None:
    text = P.encode_text(KAZAKH, ref=1)
    submit = P.SubmitSm(sequence=12345, source_addr="112", source_addr_ton=5, dest_addr_ton=1, dest_addr_npi=1,
                        destination_addr="77011234567", registered_delivery=1, data_coding=text.data_coding,
                        short_message=text.parts[0])
    resp = P.SubmitSmResp(sequence=12345, message_id="1A2B3C4D")
    receipt = P.DeliverSm(sequence=9, source_addr="77011234567", destination_addr="112", esm_class=4,
                          short_message=P.format_receipt(P.DeliveryReceipt(
                              message_id="1A2B3C4D", stat="DELIVRD", submit_date="2405011230",
                              done_date="2405011231")).encode(), receipted_message_id="1A2B3C4D", message_state=2)
    rows = [("encode_text (Kazakh, UCS-2)", per_call_us(lambda: P.encode_text(KAZAKH, ref=1)))]
    template = P.SubmitTemplate(submit)
    rows.append(("SubmitTemplate.frame", per_call_us(lambda: template.frame(12345, "77011234567"))))
    pdus: list[tuple[str, P.Pdu]] = [("submit_sm", submit), ("submit_sm_resp", resp), ("deliver_sm receipt", receipt)]
    for name, pdu in pdus:
        rows.append((f"encode {name}", per_call_us(functools.partial(P.encode, pdu))))
        stream = P.encode(pdu) * 500
        rows.append((f"decode {name} (stream)", per_call_us(functools.partial(P.Decoder().feed, stream)) / 500))
    rows.append(("parse_receipt", per_call_us(lambda: P.parse_receipt(receipt.short_message.decode()))))
    try:
        from smpplib import command
    except ImportError:
        command = None
    if command is not None:
        class Client:
            sequence = 0

            def next_sequence(self) -> int:
                self.sequence += 1
                return self.sequence
        client = Client()
        raw = P.encode(submit)

        def lib_encode() -> bytes:
            return command.SubmitSM("submit_sm", client=client, source_addr="112", source_addr_ton=5,
                                    dest_addr_ton=1, dest_addr_npi=1, destination_addr="77011234567",
                                    registered_delivery=1, data_coding=8, short_message=text.parts[0]).generate()

        def lib_decode() -> None:
            command.factory("submit_sm", client=client).parse(raw)
        rows.append(("smpplib 2.2.4 encode submit_sm", per_call_us(lib_encode)))
        rows.append(("smpplib 2.2.4 decode submit_sm", per_call_us(lib_decode)))
    print("codec (µs per call)")
    for name, us in rows:
        print(f"  {name:34} {us:7.2f}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def end_to_end(count: int, window: int, receipts: bool, tasks: int, body: str) -> None:
    extra = ["--no-text", "--no-counts", "--receipt-delay", "0.2"]
    async with smsc_process(*extra) as (process, ready):
        cfg = SmppConfig(system_id="warn", password="secret", host=str(ready["host"]), port=int(ready["port"]),
                         source_addr="112", source_addr_ton=5, window=window, max_per_second=100000,
                         registered_delivery=receipts)
        updates = 0
        all_reported = trio.Event()

        def on_update(_: Receipt) -> None:
            nonlocal updates
            updates += 1
            if updates == count + 200:
                all_reported.set()
        messages = [Message(idempotency_key=f"bench/{i}", alert_id="bench", address=f"+7701{i:07d}", language="kk",
                            body=body) for i in range(count)]
        async with open_smpp(cfg, on_update=on_update) as channel:
            await channel.deliver(messages[:200])  # warm up
            batches = [messages[i:i + channel.max_batch] for i in range(0, count, channel.max_batch)]
            sent = 0

            async def worker() -> None:
                nonlocal sent
                while batches:
                    result = await channel.deliver(batches.pop())
                    sent += sum(r.state == "sent" for r in result)
            own0, smsc0, start = time.process_time(), cpu_seconds(process.pid), time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(worker)
            elapsed = time.perf_counter() - start
            own, smsc = time.process_time() - own0, cpu_seconds(process.pid) - smsc0
            if receipts:
                with trio.move_on_after(5):
                    await all_reported.wait()
            pdus = channel.statistics()["submit_sm"] - 200 * len(P.encode_text(body, ref=0).parts)
    print(f"  window {window:4} receipts {'on ' if receipts else 'off'} tasks {tasks}: {count / elapsed:9,.0f} msg/s "
          f"{pdus / elapsed:9,.0f} submit_sm/s  sent {sent}/{count}  driver {own / count * 1e6:5.1f} µs/msg  "
          f"stand-in {smsc / count * 1e6:5.1f} µs/msg  receipts reported {max(updates - 200, 0)}")


async def run(args: argparse.Namespace) -> None:
    print(f"end to end, {args.messages:,} messages, stand-in in its own process (loopback)")
    for window, receipts in ((64, False), (64, True), (256, True), (16, True)):
        await end_to_end(args.messages, window, receipts, 4, KAZAKH)
    await end_to_end(args.messages // 2, 64, True, 4, KAZAKH * 3)  # three-part messages
    print("  (last row: 3-part Kazakh messages)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 messages")
    args = parser.parse_args()
    if args.quick:
        args.messages = 20_000
    codec()
    trio.run(run, args)


if __name__ == "__main__":
    main()
