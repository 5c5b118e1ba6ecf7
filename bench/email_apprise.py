"""E-mail benchmark: our driver versus Apprise, the same e-mails to the same SMTP relay stand-in.

Same machine, same run, same relay: the aiosmtpd stand-in (``python -m sim.smtp``) runs as a
separate process so its CPU is not the sender's. The same N e-mails (default 10,000; distinct
recipients; Kazakh, Russian and English subject, text and HTML in turn) are sent
  (a) by our driver through ``open_email`` (``send_with_ours``): one message per recipient with a
      personal To: (the default), and again with several envelope recipients per transaction;
  (b) by Apprise as an ordinary user would use it: one ``mailto://`` URL per language listing that
      language's recipients, the three sent concurrently with ``Apprise.async_notify``. Apprise
      sends each recipient a personal copy over one SMTP connection per URL.
Printed per run: messages/s, sender CPU seconds, and the relay's own count check (each address
accepted exactly once); then the ratio ours/Apprise. Setup (opening the channel, parsing the
Apprise URLs) is inside the timing for both.

The runs are interleaved over ``--rounds`` rounds (the machine is shared; medians are reported).

Run: `python bench/email_apprise.py [--count 10000] [--connections 4] [--group 50] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import apprise
import httpx
import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.base import Language, Message  # noqa: E402
from channels.email import open_email
from gateway.settings.channels import EmailConfig  # noqa: E402

FROM = "alerts@police.kz"
FROM_NAME = "ҚР ІІМ Алматы"
LANGUAGES: tuple[Language, ...] = ("kk", "ru", "en")
SUBJECTS = {"kk": "ЖАТТЫҒУ: Қатты жел туралы ескерту — Алматы қаласы",
            "ru": "УЧЕНИЯ: Штормовое предупреждение — город Алматы",
            "en": "EXERCISE: Storm warning — Almaty city"}
BODIES = {"kk": "Құрметті тұрғындар! Бүгін 18:00-ден бастап қатты жел күтілуде (25 м/с дейін). "
                "Үйде болыңыз, терезелерден алыс тұрыңыз, көлікті ағаштардың астына қоймаңыз.\n"
                "Бұл жаттығу хабарламасы.\n",
          "ru": "Уважаемые жители! Сегодня с 18:00 ожидается сильный ветер (до 25 м/с). "
                "Оставайтесь дома, держитесь подальше от окон, не оставляйте машины под деревьями.\n"
                "Это учебное сообщение.\n",
          "en": "Dear residents! Strong wind (up to 25 m/s) is expected from 18:00 today. "
                "Stay indoors, keep away from windows, do not park under trees.\n"
                "This is an exercise message.\n"}


def language_of(index: int) -> Language:
    return LANGUAGES[index % len(LANGUAGES)]


def html_of(language: Language) -> str:
    paragraphs = "".join(f"<p>{line}</p>" for line in BODIES[language].splitlines())
    return f"<html><body><h2>{SUBJECTS[language]}</h2>{paragraphs}</body></html>"


def bench_messages(addresses: Sequence[str]) -> list[Message]:
    return [Message(idempotency_key=f"bench-alert:email:{address}", alert_id="bench-alert", address=address,
                    language=language_of(i), subject=SUBJECTS[language_of(i)], body=BODIES[language_of(i)],
                    html=html_of(language_of(i)))
            for i, address in enumerate(addresses)]


async def send_with_ours(addresses: Sequence[str], *, port: int, host: str = "127.0.0.1", connections: int = 4,
                         per_transaction: int = 1) -> float:
    """Send one warning to every address through ``open_email``; return the elapsed seconds
    (opening the channel included). Raises RuntimeError if any message was not accepted."""
    messages = bench_messages(addresses)
    config = msgspec.convert({"from_address": FROM, "from_name": FROM_NAME, "host": host, "port": port,
                              "helo_name": "gateway.bench", "connections": connections, "max_per_second": 0,
                              "recipients_per_transaction": per_transaction}, EmailConfig)
    start = time.perf_counter()
    not_sent = 0
    async with open_email(config) as channel:
        for offset in range(0, len(messages), channel.max_batch):
            receipts = await channel.deliver(messages[offset:offset + channel.max_batch])
            not_sent += sum(receipt.state != "sent" for receipt in receipts)
    elapsed = time.perf_counter() - start
    if not_sent:
        raise RuntimeError(f"ours: {not_sent} messages not accepted")
    return elapsed


async def send_with_engine(addresses: Sequence[str], *, port: int, host: str = "127.0.0.1",
                           connections: int = 4) -> float:
    """The same addresses as warning recipients, through the whole engine: durable outbox, templates,
    workers; one message per recipient. Returns seconds from approval to the last receipt."""
    import tempfile

    from gateway.warning import zones
    from gateway.warning.engine import AsyncOutbox, Engine
    from gateway.warning.outbox import Outbox
    from gateway.warning.recipients import Recipient
    from gateway.warning.render import Renderer
    from gateway.warning.templates import load_catalogue
    from gateway.warning.workflow import DraftSpec, Workflow

    root = Path(__file__).resolve().parent.parent
    config = msgspec.convert({"from_address": FROM, "from_name": FROM_NAME, "host": host, "port": port,
                              "helo_name": "gateway.bench", "connections": connections, "max_per_second": 0},
                             EmailConfig)
    with tempfile.TemporaryDirectory() as work:
        outbox = Outbox(Path(work) / "w.sqlite3")
        outbox.put_recipients([Recipient(ref=f"e{i}", email=a, language=language_of(i), zones=["medeu"],
                                         channels=["email"]) for i, a in enumerate(addresses)])
        db = AsyncOutbox(outbox)
        zone_set = zones.load(root / "config" / "zones.toml")
        renderer = Renderer(load_catalogue(root / "alert_templates"), zone_set)
        async with open_email(config) as channel, trio.open_nursery() as nursery:
            engine = Engine(db, {"email": channel}, renderer)
            done = trio.Event()
            engine.on_state = lambda _record: done.set()
            users = {"a": ["civil-defence"], "b": ["civil-defence"]}
            workflow = Workflow(db, renderer, zone_set, users, sender="bench@ecgw.kz", engine=engine)
            await nursery.start(engine.run)
            draft = await workflow.draft(DraftSpec(event="flood", zones=["medeu"], channels=["email"]), "a")
            start = time.time()
            record = await workflow.approve(draft.id, "b", send=True)
            no, _ = await db.call(outbox.get_alert, record.id)
            tracker = engine.tracking[no]
            await done.wait()
            elapsed = (tracker.last_at or time.time()) - start
            nursery.cancel_scope.cancel()
        outbox.close()
    return elapsed


async def send_with_apprise(addresses: Sequence[str], *, port: int, host: str = "127.0.0.1") -> float:
    """One mailto:// URL per language with that language's recipients, notified concurrently; return the
    elapsed seconds (URL parsing included). Raises RuntimeError if Apprise reports a failure."""
    start = time.perf_counter()
    calls = []
    for language in LANGUAGES:
        targets = [a for i, a in enumerate(addresses) if language_of(i) == language]
        notifier = apprise.Apprise()
        url = f"mailto://{host}:{port}?" + urlencode({"mode": "insecure", "from": FROM, "name": FROM_NAME,
                                                      "to": ",".join(targets)})
        if not notifier.add(url):
            raise RuntimeError(f"apprise refused the {language} URL")
        calls.append(notifier.async_notify(body=BODIES[language], title=SUBJECTS[language],
                                           body_format=apprise.NotifyFormat.TEXT))
    results = await asyncio.gather(*calls)
    elapsed = time.perf_counter() - start
    if not all(results):
        raise RuntimeError(f"apprise reported failures: {results}")
    return elapsed


@dataclass
class Run:
    name: str
    count: int
    elapsed: float
    cpu: float
    relay_cpu: float
    check: str

    @property
    def rate(self) -> float:
        return self.count / self.elapsed


class Relay:
    """The stand-in relay in its own process, with its HTTP control API."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "sim.smtp", "--port", "0"], stdout=subprocess.PIPE,
                                        cwd=Path(__file__).resolve().parent.parent)
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline())
        self.port: int = ready["port"]
        self.control = httpx.Client(base_url=ready["control"], timeout=30.0)

    def cpu(self) -> float:
        """CPU seconds the relay process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset(self) -> None:
        self.control.post("/_sim/reset").raise_for_status()

    def check(self, addresses: Sequence[str]) -> str:
        """Each address accepted exactly once, nothing else: a one-line verdict, or RuntimeError."""
        counts = self.control.get("/_sim/counts").json()
        recipients: dict[str, int] = counts["recipients"]
        missing = [a for a in addresses if recipients.get(a.lower(), 0) == 0]
        doubled = [a for a, n in recipients.items() if n > 1]
        extra = set(recipients) - {a.lower() for a in addresses}
        if missing or doubled or extra:
            raise RuntimeError(f"relay counts wrong: {len(missing)} missing, {len(doubled)} twice, "
                               f"{len(extra)} unknown")
        return f"relay: {len(recipients)} recipients once each in {counts['accepted']} messages"

    def close(self) -> None:
        self.control.close()
        self.process.terminate()
        self.process.wait(timeout=10)


def measure(relay: Relay, name: str, addresses: Sequence[str], send: object) -> Run:
    relay.reset()
    cpu, relay_cpu = time.process_time(), relay.cpu()
    elapsed = send()  # type: ignore[operator]
    run = Run(name, len(addresses), elapsed, time.process_time() - cpu, relay.cpu() - relay_cpu,
              relay.check(addresses))
    print(f"{run.name:<44} {run.rate:6.0f} msg/s  {run.elapsed:6.2f} s  CPU sender {run.cpu:5.2f} s "
          f"relay {run.relay_cpu:5.2f} s   {run.check}", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4, help="our SMTP session pool")
    parser.add_argument("--group", type=int, default=50, help="recipients per transaction in our second run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three runs, interleaved")
    args = parser.parse_args()
    addresses = [f"resident{i:05d}@example.kz" for i in range(args.count)]
    relay = Relay()
    runs: dict[str, list[Run]] = {"ours": [], "apprise": [], "grouped": [], "engine": []}
    try:
        print(f"{args.count} e-mails (kk/ru/en, text+HTML, distinct recipients) to the relay stand-in on "
              f"127.0.0.1:{relay.port} (separate process), {args.rounds} interleaved rounds", flush=True)
        for _ in range(args.rounds):
            runs["ours"].append(measure(
                relay, f"ours: 1 recipient/transaction, {args.connections} sessions", addresses,
                lambda: trio.run(lambda: send_with_ours(addresses, port=relay.port, connections=args.connections))))
            runs["apprise"].append(measure(
                relay, "apprise: 3 mailto:// URLs, async_notify", addresses,
                lambda: asyncio.run(send_with_apprise(addresses, port=relay.port))))
            runs["engine"].append(measure(
                relay, f"ours: whole engine (outbox, templates), {args.connections} sessions", addresses,
                lambda: trio.run(lambda: send_with_engine(addresses, port=relay.port, connections=args.connections))))
            runs["grouped"].append(measure(
                relay, f"ours: {args.group} recipients/transaction", addresses,
                lambda: trio.run(lambda: send_with_ours(addresses, port=relay.port, connections=args.connections,
                                                        per_transaction=args.group))))
    finally:
        relay.close()
    rate = {name: statistics.median(run.rate for run in done) for name, done in runs.items()}
    print(f"median msg/s: ours {rate['ours']:.0f}, engine {rate['engine']:.0f}, apprise {rate['apprise']:.0f}, "
          f"ours grouped {rate['grouped']:.0f}")
    print(f"ratio engine/apprise: {rate['engine'] / rate['apprise']:.2f}x (the whole warning engine, one message "
          "per recipient)")
    print(f"ratio ours/apprise: {rate['ours'] / rate['apprise']:.2f}x (one message per recipient), "
          f"{rate['grouped'] / rate['apprise']:.2f}x ({args.group} recipients per transaction)")


if __name__ == "__main__":
    main()
