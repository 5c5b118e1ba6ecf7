"""Warning fan-out benchmark: N recipients (default 1,000,000) through the delivery engine to local
stand-ins, each in its own process: an SMSC (SMPP), an SMTP relay, the Telegram Bot API (public
channel post) and a Modbus RTU relay board on a socat pty (sirens).

Prints messages/s, peak RSS of the engine process, and time from approval to the first message
accepted by each channel. Baseline in the same run: the SMPP driver alone, pushing the same kind of
message to the same SMSC without the engine (no outbox, no rendering) — the ratio shows what the
durable outbox costs.

``--store postgresql`` runs the same fan-out with the warnings store on PostgreSQL (issue 14): a throwaway
server of ``sim.pg`` (fsync and synchronous_commit on), each scenario in a fresh database made by the
migrations, reached over its unix socket as one node. ``--store both`` runs SQLite then PostgreSQL on the
same recipients and prints msg/s of each with the ratio to SQLite.

Run: ``python bench/fanout.py [--recipients N] [--email-share F] [--store sqlite|postgresql|both]``.
Targets: ≥ 20,000 msg/s, ≤ 300 MB RSS, first message on every channel ≤ 200 ms after approval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.base import Channel, Message  # noqa: E402
from channels.email import open_email
from channels.sirens import SirenConfig, SirenTarget, open_sirens
from channels.smpp import open_smpp
from channels.telegram import open_telegram
from gateway.incident.store_pg import migrate
from gateway.settings.channels import (
    EmailConfig,  # noqa: E402
    SirenLine,  # noqa: E402
    SmppConfig,  # noqa: E402
    TelegramConfig,  # noqa: E402
)
from gateway.stores import MIGRATIONS, VERSION
from gateway.warning import zones  # noqa: E402
from gateway.warning.engine import AsyncOutbox, Engine  # noqa: E402
from gateway.warning.outbox import Outbox, Queries  # noqa: E402
from gateway.warning.outbox_pg import PgOutbox
from gateway.warning.recipients import Recipient  # noqa: E402
from gateway.warning.render import Renderer  # noqa: E402
from gateway.warning.templates import load_catalogue  # noqa: E402
from gateway.warning.workflow import DraftSpec, Workflow  # noqa: E402
from sim import pg

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:BENCH-token"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@asynccontextmanager
async def process(*command: str) -> AsyncIterator[dict[str, object]]:
    """A stand-in as a separate process; yields its ready line (JSON)."""
    proc = await trio.lowlevel.open_process([sys.executable, "-m", *command], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"{command[0]} exited before it was ready")
                line += chunk
        yield json.loads(line.splitlines()[0])
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        proc.kill()


def populate(outbox: Queries, n: int, email_share: float) -> None:
    every = max(1, round(1 / email_share)) if email_share > 0 else 0
    batch: list[Recipient] = []
    for i in range(n):
        email = every and i % every == 0
        batch.append(Recipient(ref=f"p{i}", phone=f"+7701{i:07d}", email=f"p{i}@example.kz",
                               language=("kk", "ru", "en")[i % 3], zones=["medeu" if i % 50 else "almaly"],
                               channels=["email"] if email else ["sms"]))  # type: ignore[list-item]
        if len(batch) == 20_000:
            outbox.put_recipients(batch)
            batch = []
    if batch:
        outbox.put_recipients(batch)


async def baseline(smpp: SmppConfig, count: int) -> float:
    """The SMPP driver alone: messages/s with no engine in front of it."""
    async with open_smpp(smpp) as channel:
        body = ("ТЖД: Медеу ауданында сел қаупі! Өзен арналарынан алыстаңыз, биік жерге көтеріліңіз. "
                "Ресми ақпаратты күтіңіз. Сұрақтар: 112. 21.11 18:00-ге дейін.")  # 2 UCS-2 parts, like the templates
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for w in range(3):
                nursery.start_soon(_blast, channel, body, range(w, count, 3))
        return count / (trio.current_time() - start)


async def _blast(channel: Channel, body: str, numbers: range) -> None:
    ids = list(numbers)
    for i in range(0, len(ids), 250):
        await channel.deliver([Message(idempotency_key=f"b{n}", alert_id="bench", address=f"+7702{n:07d}",
                                       language="kk", body=body) for n in ids[i:i + 250]])


async def run(args: argparse.Namespace) -> None:
    shares = [args.email_share] if args.email_share is not None else [0.0, 0.1]
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    results: dict[tuple[float, str], tuple[float, float]] = {}  # (share, store) → (msg/s, SMPP alone msg/s)
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(pg.open_pg_server()) if "postgresql" in stores else None
        for share in shares:
            for store in stores:
                print(f"== {args.recipients:,} recipients, {share:.0%} by e-mail, the rest by SMS (SMPP, "
                      f"long messages as {args.long_messages}); sirens and the Telegram channel post alongside; "
                      f"warnings store on {store}", flush=True)
                with tempfile.TemporaryDirectory(prefix="ecgw-bench-") as work, \
                        open_store(store, Path(work), server, len(results)) as outbox:
                    results[(share, store)] = await scenario(args, outbox, share)
    summary(results, stores)


def summary(results: dict[tuple[float, str], tuple[float, float]], stores: list[str]) -> None:
    print(f"\n== fan-out msg/s by warnings store; ratios against {stores[0]} and against the SMPP driver alone "
          f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}) ==")
    print(f"{'e-mail share':>12s} {'store':>10s} {'msg/s':>8s} {'ratio':>6s} {'SMPP alone':>10s} {'ratio':>6s}")
    for (share, store), (rate, alone) in results.items():
        base = results[(share, stores[0])][0]
        print(f"{share:12.0%} {store:>10s} {rate:8,.0f} {rate / base:6.2f} {alone:10,.0f} {rate / alone:6.2f}")


@contextmanager
def open_store(kind: str, work: Path, server: pg.PgServer | None, n: int) -> Iterator[Queries]:
    """The warnings store: a SQLite file in ``work``, or a fresh migrated database of ``server`` over its
    unix socket (one node). Closed when the block exits."""
    outbox: Queries
    if kind == "postgresql":
        assert server is not None
        database = f"fanout_{n}"
        server.psql(f"CREATE DATABASE {database} OWNER {server.user}")
        dsn = dataclasses.replace(server, database=database).dsn(unix=True)
        migrate(dsn, MIGRATIONS)
        outbox = PgOutbox(dsn, schema_version=VERSION, node_id="bench-fanout")
    else:
        outbox = Outbox(work / "warnings.sqlite3")
    try:
        yield outbox
    finally:
        outbox.close()


async def scenario(args: argparse.Namespace, outbox: Queries, email_share: float) -> tuple[float, float]:
    """One fan-out; (msg/s, the SMPP driver alone's msg/s)."""
    t0 = time.perf_counter()
    populate(outbox, args.recipients, email_share)
    print(f"recipients: {args.recipients:,} stored in {time.perf_counter() - t0:.1f} s; RSS so far {rss_mb():.0f} MB")
    async with AsyncExitStack() as stack:
        smsc = await stack.enter_async_context(process("sim.smsc", "--port", "0", "--system-id", "warn",
                                                        "--password", "secret", "--no-text", "--no-counts"))
        smtp = await stack.enter_async_context(process("sim.smtp", "--port", "0"))
        tg = await stack.enter_async_context(process("sim.telegram", "--port", "0", "--token", TOKEN,
                                                      "--channel", "@ecgw_alerts"))
        board = await stack.enter_async_context(process("sim.relayboard", "--units", "1,3", "--coils", "8",
                                                                         "--parity", "N"))
        smpp_cfg = SmppConfig(system_id="warn", password="secret", port=int(smsc["port"]), window=256,  # type: ignore[call-overload]
                              max_per_second=100_000, max_batch=250, long_messages=args.long_messages)
        raw = await baseline(smpp_cfg, args.baseline)
        print(f"baseline: SMPP driver alone {raw:,.0f} msg/s ({args.baseline:,} messages)")
        channels: dict[str, Channel] = {
            "smpp": await stack.enter_async_context(open_smpp(smpp_cfg)),
            "email": await stack.enter_async_context(open_email(EmailConfig(
                from_address="alerts@ecgw.kz", port=int(smtp["port"]), max_per_second=0, connections=4,  # type: ignore[call-overload]
                recipients_per_transaction=50, max_batch=250))),
            "telegram": await stack.enter_async_context(open_telegram(TelegramConfig(
                bot_token=TOKEN, api_base_url=str(tg["base_url"]), public_channel="@ecgw_alerts"))),
            "siren": await stack.enter_async_context(open_sirens(SirenConfig(
                lines=[SirenLine(name="rs485-1", port=str(board["port"]), parity="N")],
                zones={"medeu": [SirenTarget(line="rs485-1", unit=3, coils=list(range(8)))],
                       "almaly": [SirenTarget(line="rs485-1", unit=1, coils=[0, 1, 2, 3])]}))),
        }
        return await fan_out(AsyncOutbox(outbox), channels, args), raw


async def fan_out(db: AsyncOutbox, channels: dict[str, Channel], args: argparse.Namespace) -> float:
    zone_set = zones.load(ROOT / "config" / "zones.toml")
    renderer = Renderer(load_catalogue(ROOT / "alert_templates"), zone_set)
    engine = Engine(db, channels, renderer, sms_routes=[("+", "smpp")], public_channel="@ecgw_alerts")
    users = {"aigerim": ["civil-defence"], "daniyar": ["civil-defence"]}
    workflow = Workflow(db, renderer, zone_set, users, sender="civil-defence.almaty@ecgw.kz", engine=engine)
    done = trio.Event()
    engine.on_state = lambda record: done.set()
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        draft = await workflow.draft(DraftSpec(event="mudflow", zones=["medeu", "almaly"],
                                               channels=["sms", "email", "telegram", "siren"]), "aigerim")
        rss_before = rss_mb()
        approved_at = time.time()
        record = await workflow.approve(draft.id, "daniyar", send=True)
        no, _ = await db.call(db.sync.get_alert, record.id)
        tracker = engine.tracking[no]
        nursery.start_soon(_report, tracker, args.verbose)
        await done.wait()
        elapsed = (tracker.last_at or time.time()) - approved_at
        channels_seen = dict(tracker.channels)
        nursery.cancel_scope.cancel()
    progress = await db.call(db.sync.progress, no)
    total = sum(p.sent + p.delivered for p in progress.values())
    failed = sum(p.failed for p in progress.values())
    print(f"fan-out: {total:,} messages in {elapsed:.1f} s = {total / elapsed:,.0f} msg/s "
          f"(target ≥ 20,000); failed {failed}")
    for key, p in sorted(progress.items()):
        first = channels_seen.get(key)
        delay = (first.first_at - approved_at) * 1000 if first and first.first_at else float("nan")
        print(f"  {key:<9} sent {p.sent + p.delivered:>9,}  first message {delay:7.1f} ms after approval")
    print(f"peak RSS: {rss_mb():.0f} MB (before approval {rss_before:.0f} MB; target ≤ 300 MB)")
    return total / elapsed


async def _report(tracker: object, verbose: bool) -> None:
    while verbose:
        await trio.sleep(1)
        t = tracker
        print(f"  … created {t.created:,} finished {t.finished:,} "  # type: ignore[attr-defined]
              f"{ {k: (p.sent + p.delivered, p.failed, p.retried) for k, p in t.channels.items()} }",  # type: ignore[attr-defined]
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--email-share", type=float, default=None,
                        help="share of recipients reached by e-mail (default: two runs, 0 and 0.1)")
    parser.add_argument("--baseline", type=int, default=200_000)
    parser.add_argument("--verbose", action="store_true", help="print progress every second")
    parser.add_argument("--long-messages", choices=["udh", "payload"], default="payload",
                        help="SMPP long messages as UDH parts or one submit_sm with message_payload")
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="sqlite",
                        help="the warnings store: a SQLite file, PostgreSQL (sim.pg, unix socket), or both in turn")
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
