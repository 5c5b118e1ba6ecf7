"""One warning fanned out by gateway nodes sharing a PostgreSQL (issue 14), counted at the stand-ins.

The pieces a two-node warnings drill needs, for ``gateway run`` processes (``sim.lab.GatewayProcess``)
without Asterisk:

* ``open_stand_ins()``: the SMSC, SMTP relay and Telegram Bot API stand-ins on loopback, shared by every
  node; ``StandIns.delivered()`` counts the messages each recipient received on all three.
* ``write_warnings_node(workdir, node_id, dsn, stand_ins)``: a warnings-only config whose channels are the
  *drill* instances (an Exercise reaches nothing else) pointed at the stand-ins, on ``dsn`` as ``node_id``.
  Every node written against the same stand-ins sends to the same places.
* ``drill_channels(stand_ins)``: the officers and drill channels alone, for a node config written otherwise
  (``sim.cluster.started_nodes``); ``channel_tables`` the channel tables of either instance set.
* ``start_fanout(gateway, n)``: through that node's CLI, as officers would: import ``n`` recipients
  (``audience_csv``), draft an alert to zone medeu, approve it with a second officer and send; its id. Its
  steps (``import_audience``, ``draft_alert``, ``approve_and_send``) on their own when the send must wait.
  ``audience(n)`` is who must be warned (the refs in medeu).
* ``Tally``: samples ``delivered()`` while a fan-out runs (``run`` in a nursery) so a test can tell *when*
  a recipient's count rose, e.g. the first message a node sent of a dead node's work.
* ``job_owners``/``in_flight``: what PostgreSQL's ``warnings.jobs`` says of each job's (last) claiming node.

Recipient ``p<i>`` has phone ``+7701<i:07d>``, e-mail ``p<i>@example.kz`` and Telegram chat ``200000 + i``;
one in twenty wants Telegram, the rest SMS or e-mail alternately, nine in ten live in medeu.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import trio

from sim.cluster import NODE_SECTION
from sim.lab import REPO, GatewayProcess, free_port
from sim.smsc_server import Smsc, open_smsc
from sim.smtp import SmtpSim, open_smtp_sim
from sim.telegram import TelegramSim, open_telegram_sim

TOKEN = "123456:TEST-drill-token"
ZONE = "medeu"
OFFICERS = ("aigerim", "daniyar")  # one drafts, the other approves
TELEGRAM_BASE = 200_000
IMPORT_TIMEOUT_S = 600  # 100,000 lines (the long failover drill) took 12 s on the 2-core VM; room for a loaded one

CONFIG = """
[[services]]
name = "112"
dialled = ["112"]

[dispatch]
backup = ""
[[dispatch.positions]]
name = "pos1"
contact = "sip:pos1@127.0.0.1:{phone}"

[asterisk]
instance = "fan-{tag}"
sip_port = {sip}
http_port = {ari}
ami_port = {ami}

[store]
backend = "postgresql"
dsn = "{dsn}"
path = "{dir}/gateway.sqlite3"

[http]
port = {http}

[warnings]
store_path = "{dir}/warnings.sqlite3"
sms_routes = [{{ prefix = "+7", driver = "smpp" }}]
"""
# The officers who draft and approve (appended after ``[warnings]``: a node's config may list other users too).
OFFICER_USERS = "".join(f'\n[[warnings.users]]\nname = "{name}"\nroles = ["civil-defence"]\n' for name in OFFICERS)
CHANNELS = """
[warnings.{kind}.smpp]
system_id = "warn"
password = "secret"
port = {smpp}
max_per_second = {smpp_mps}
window = 128

[warnings.{kind}.email]
from_address = "{sender}"
port = {smtp}
max_per_second = {email_mps}
connections = 4

[warnings.{kind}.telegram]
bot_token = "{token}"
api_base_url = "{telegram}/bot"
max_per_second = {telegram_mps}
per_chat_interval_s = 0
"""


def channel_tables(kind: str, *, smpp: int, smtp: int, telegram: str, token: str = TOKEN, per_s: float = 0,
                   telegram_per_s: float = 200.0) -> str:
    """``[warnings.<kind>.smpp|email|telegram]`` (``kind`` "drill" or "actual") pointed at stand-ins on loopback:
    the SMSC's and SMTP relay's ports, the Telegram Bot API's URL. ``per_s`` paces every channel (0: SMPP at
    5,000/s, e-mail unpaced, Telegram at ``telegram_per_s``)."""
    return CHANNELS.format(kind=kind, smpp=smpp, smtp=smtp, telegram=telegram, token=token,
                           sender=f"{'drill' if kind == 'drill' else 'alerts'}@ecgw.kz",
                           smpp_mps=per_s or 5000, email_mps=per_s, telegram_mps=per_s or telegram_per_s)


def drill_channels(stand_ins: StandIns, *, per_s: float = 0, telegram_per_s: float = 200.0) -> str:
    """The officers and the drill channels pointed at ``stand_ins``: what a node's config needs, appended, to
    send Exercises there (``start_fanout``)."""
    return OFFICER_USERS + channel_tables("drill", smpp=stand_ins.smsc.address[1], smtp=stand_ins.smtp.port,
                                          telegram=stand_ins.telegram.url, per_s=per_s,
                                          telegram_per_s=telegram_per_s)


def audience_csv(n: int) -> str:
    """Recipients p0 … p<n-1> as ``recipients import`` reads them."""
    lines = ["ref,name,phone,email,telegram,language,zones,channels"]
    for i in range(n):
        kind = "telegram" if i % 20 == 7 else ("sms", "email")[i % 2]
        zone = ZONE if i % 10 else "bostandyk"
        lines.append(f"p{i},Тұрғын {i},+7701{i:07d},p{i}@example.kz,{TELEGRAM_BASE + i},"
                     f"{('kk', 'ru', 'en')[i % 3]},{zone},{kind}")
    return "\n".join(lines) + "\n"


def audience(n: int) -> set[str]:
    """The refs of ``audience_csv(n)`` an alert to medeu must reach."""
    return {f"p{i}" for i in range(n) if i % 10}


@dataclass
class StandIns:
    """The providers every node sends to."""

    smsc: Smsc
    smtp: SmtpSim
    telegram: TelegramSim

    def delivered(self) -> Counter[str]:
        """Messages received so far, by recipient ref (non-blocking: the stand-ins' own counters)."""
        counts: Counter[str] = Counter()
        for number, n in self.smsc.by_destination.items():
            counts[f"p{int(number[-7:])}"] += n
        for address, n in self.smtp.counts.items():
            counts[address.split("@")[0]] += n
        for chat, n in self.telegram.counts().items():
            counts[f"p{int(chat) - TELEGRAM_BASE}"] += n
        return counts

    def reached(self) -> int:
        """Recipients with a message so far: each has one channel, so the addressees the stand-ins counted.
        Cheap enough to ask many times a second during a 100,000-recipient fan-out, unlike ``delivered()``."""
        return len(self.smsc.by_destination) + len(self.smtp.counts) + len(self.telegram.counts())

    def messages(self) -> int:
        """Messages received so far on all three."""
        return sum(self.smsc.by_destination.values()) + sum(self.smtp.counts.values()) + len(self.telegram.sent)

    def delivered_to(self, refs: Iterable[str]) -> Counter[str]:
        """``delivered()`` of ``refs`` only: a few hundred of a large audience, many times a second."""
        prefix = next((number[:-7] for number in self.smsc.by_destination), "+7701")  # as the SMSC keys them
        chats = self.telegram.counts()
        counts: Counter[str] = Counter()
        for ref in refs:
            i = int(ref[1:])
            counts[ref] = (self.smsc.by_destination[f"{prefix}{i:07d}"] + self.smtp.counts[f"{ref}@example.kz"]
                           + chats.get(str(TELEGRAM_BASE + i), 0))
        return counts


@asynccontextmanager
async def open_stand_ins(*, telegram_per_s: float = 1000.0) -> AsyncIterator[StandIns]:
    """The three stand-ins on loopback until the block exits (Telegram's own rate limit at ``telegram_per_s``)."""
    async with open_smsc(receipt_delay_s=0.01, keep_text=False) as smsc, open_smtp_sim() as smtp, \
            open_telegram_sim(TOKEN, rate_per_s=telegram_per_s, burst=telegram_per_s) as telegram:
        yield StandIns(smsc, smtp, telegram)


def write_warnings_node(workdir: Path, node_id: str, dsn: str, stand_ins: StandIns, *, lease_s: float = 2.0,
                        telegram_per_s: float = 200.0) -> Path:
    """A warnings-only node config in ``workdir`` (its own ports, local key and logs) on the shared ``dsn``."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gateway.toml"
    path.write_text(CONFIG.format(
        phone=free_port(), tag=f"{node_id}-{workdir.name[-6:]}".replace("_", "-"), sip=free_port(),
        ari=free_port(socket.SOCK_STREAM), ami=free_port(socket.SOCK_STREAM), dsn=dsn, dir=workdir,
        http=free_port(socket.SOCK_STREAM))
        + drill_channels(stand_ins, telegram_per_s=telegram_per_s)
        + NODE_SECTION.format(node_id=node_id, lease_s=lease_s))
    return path


async def cli(gateway: GatewayProcess, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``gateway --config <node's> <args>`` on a worker thread, as its operator would type it."""
    command = [sys.executable, "-m", "gateway.cli", "--config", str(gateway.path), *args]
    return await trio.to_thread.run_sync(lambda: subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False))


async def start_fanout(gateway: GatewayProcess, n: int, *, status: str = "Exercise") -> str:
    """Import ``audience_csv(n)`` and send an alert (``status``) to medeu on SMS, e-mail and Telegram through
    ``gateway``; its id once approved and sending. Raises AssertionError with the CLI's words if a step fails."""
    await import_audience(gateway, n)
    alert_id = await draft_alert(gateway, status=status)
    await approve_and_send(gateway, alert_id)
    return alert_id


async def import_audience(gateway: GatewayProcess, n: int) -> None:
    """``recipients import`` of ``audience_csv(n)`` through ``gateway``'s CLI, as the first officer."""
    people = gateway.path.parent / "people.csv"
    people.write_text(audience_csv(n))
    run = await cli(gateway, "recipients", "import", str(people), "--as", OFFICERS[0], timeout=IMPORT_TIMEOUT_S)
    assert run.returncode == 0, f"recipients import: {run.stdout}{run.stderr}"


async def draft_alert(gateway: GatewayProcess, *, status: str = "Exercise") -> str:
    """A mudflow alert (``status``) to medeu on SMS, e-mail and Telegram drafted by the first officer; its id."""
    run = await cli(gateway, "alert", "draft", "--as", OFFICERS[0], "--event", "mudflow", "--zone", ZONE,
                    "--status", status, "--channel", "sms", "--channel", "email", "--channel", "telegram")
    assert run.returncode == 0, f"alert draft: {run.stdout}{run.stderr}"
    return run.stdout.strip()


async def approve_and_send(gateway: GatewayProcess, alert_id: str) -> None:
    """The second officer approves ``alert_id`` and sends it at once."""
    run = await cli(gateway, "alert", "approve", alert_id, "--as", OFFICERS[1], "--send")
    assert run.returncode == 0 and "sending" in run.stdout, run.stdout + run.stderr


async def alert_status(gateway: GatewayProcess, alert_id: str) -> dict[str, Any]:
    """``GET /alerts/<id>/status`` of ``gateway``, as its operator (the local key)."""
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.host_headers(), timeout=5) as client:
        reply = await client.get(f"/alerts/{alert_id}/status")
    reply.raise_for_status()
    return reply.json()  # type: ignore[no-any-return]


async def wait_sent(gateway: GatewayProcess, alert_id: str) -> None:
    """Until ``gateway`` says the alert is sent (the caller's cancel scope bounds it). A reply slower than
    ``alert_status``'s timeout is asked again: a node adopting a dead node's work under load may be slow to
    answer, and only the caller's bound says when that is too slow."""
    while True:
        try:
            if (await alert_status(gateway, alert_id))["state"] == "sent":
                return
        except httpx.TimeoutException:
            pass
        await trio.sleep(0.1)


async def audit(gateway: GatewayProcess, alert_id: str) -> list[dict[str, Any]]:
    """The alert's audit trail, through ``gateway``'s CLI."""
    run = await cli(gateway, "alert", "show", alert_id, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["audit"]  # type: ignore[no-any-return]


def job_owners(dsn: str, alert_id: str) -> Counter[str]:
    """Jobs of the alert by the node that last claimed them (``warnings.jobs.owner``; "" never claimed)."""
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT j.owner, COUNT(*) FROM warnings.jobs j JOIN warnings.alerts a ON a.no = j.alert_no "
                          "WHERE a.id = %s GROUP BY j.owner", (alert_id,)).fetchall()
    return Counter({str(owner): int(n) for owner, n in rows})


def in_flight(dsn: str, node_id: str) -> dict[str, str]:
    """Jobs ``node_id`` claims and has not settled ("sending"): recipient ref → channel."""
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT r.ref, j.channel FROM warnings.jobs j JOIN warnings.recipients r ON r.id = j.target "
                          "WHERE j.state = 1 AND j.owner = %s", (node_id,)).fetchall()
    return {str(ref): str(channel) for ref, channel in rows}


@dataclass
class Tally:
    """When each recipient's count at the stand-ins rose, sampled every ``every_s`` (Trio's clock)."""

    stand_ins: StandIns
    every_s: float = 0.05
    counts: Counter[str] = field(default_factory=Counter)
    rises: list[tuple[float, str, int]] = field(default_factory=list)  # (time, ref, count after)

    def sample(self) -> Counter[str]:
        """Note every rise since the last sample; the counts now."""
        now, counts = trio.current_time(), self.stand_ins.delivered()
        self.rises.extend((now, ref, n) for ref, n in counts.items() if n > self.counts[ref])
        self.counts = counts
        return counts

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await trio.sleep(self.every_s)

    def first_rise(self, refs: Iterable[str], after: float) -> float | None:
        """When the first of ``refs`` got a message after ``after`` (None: none did)."""
        wanted = set(refs)
        return next((t for t, ref, _ in self.rises if t > after and ref in wanted), None)

    def all_reached(self, refs: Iterable[str]) -> float | None:
        """When the last of ``refs`` got its first message (None: some never did)."""
        first: dict[str, float] = {}
        for t, ref, _ in self.rises:  # in time order: a ref's first rise is its first message
            first.setdefault(ref, t)
        wanted = set(refs)
        return max(first[r] for r in wanted) if wanted <= first.keys() else None
