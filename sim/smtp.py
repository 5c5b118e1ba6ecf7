"""An SMTP relay stand-in: a real ESMTP server (aiosmtpd) that records what it accepts and fails on demand.

Theory of operation: the gateway's e-mail driver talks to a relay (the ministry's Exchange, a
provider's submission server); this stand-in is such a relay on 127.0.0.1, speaking ESMTP on the
wire through aiosmtpd (EHLO, MAIL/RCPT/DATA, RSET, NOOP, QUIT, SIZE, 8BITMIME, pipelined
clients). Every accepted message is recorded with its envelope and raw bytes; the MIME is parsed
only when someone reads the records (``records()``), so a benchmark run does not pay for it.

Knobs for failure drills:
  * ``fail_next(n, code, stage)``: the next ``n`` transactions are answered ``code`` at MAIL, at every
    RCPT, or after DATA (421/451/452 temporary, 550/552/554 permanent); after a 421 the server
    closes the connection, as RFC 5321 says it does;
  * ``drop_next(n, stage)``: the next ``n`` transactions lose their connection at that stage, no reply;
  * ``stall_next(n, stage)``: the next ``n`` transactions get no reply at that stage (a hung relay);
  * ``refuse(address, ...)``: those recipients get ``550 5.1.1`` at RCPT until ``refuse()`` is reset;
  * ``disconnect_all()``: every open connection is closed silently (a relay restart, an idle timeout).

Records are in memory (``records()``, ``counts``) and, in the separate process, at
``GET /_sim/records`` and ``GET /_sim/counts``; knobs at ``POST /_sim/faults`` and ``POST /_sim/reset``.
Run in-process with ``open_smtp_sim()`` (Trio, hosted through trio-asyncio) or as
``python -m sim.smtp --port N`` (plain asyncio), which prints one JSON line when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import signal
import sys
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from typing import Any, Literal, cast

import msgspec
import trio_asyncio
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

Stage = Literal["mail", "rcpt", "data"]
Action = Literal["reply", "drop", "stall"]
HOSTNAME = "smtp-sim.ecgw.invalid"
_TEXT = {421: "4.3.2 Service not available, closing transmission channel",
         450: "4.2.1 Mailbox unavailable, try again later",
         451: "4.3.0 Local error in processing, try again later",
         452: "4.3.1 Insufficient system storage",
         550: "5.7.1 Message rejected by policy",
         552: "5.3.4 Message size exceeds fixed limit",
         553: "5.1.3 Mailbox name not allowed",
         554: "5.6.0 Transaction failed"}


class Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One transaction's fault; also the body of ``POST /_sim/faults`` (with ``count``)."""

    action: Action = "reply"
    code: int = 451
    stage: Stage = "data"
    count: int = 1


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted message as the relay saw it (envelope) and as a reader would (decoded MIME)."""

    mail_from: str
    rcpt_tos: list[str]
    queue_id: str
    message_id: str
    subject: str
    to: str
    alert: str
    text: str
    html: str
    size: int


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``GET /_sim/counts``."""

    accepted: int
    transactions: int
    rejected: int
    recipients: dict[str, int]


def decode(mail_from: str, rcpt_tos: list[str], queue_id: str, content: bytes) -> Record:
    """Parse one accepted message the way a mail client would (RFC 2047 subject, base64/QP bodies)."""
    mail = email.message_from_bytes(content, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    return Record(mail_from=mail_from, rcpt_tos=rcpt_tos, queue_id=queue_id,
                  message_id=str(mail.get("Message-ID", "")), subject=str(mail.get("Subject", "")),
                  to=str(mail.get("To", "")), alert=str(mail.get("X-ECGW-Alert", "")),
                  text=_lines(plain), html=_lines(html), size=len(content))


def _lines(part: Any) -> str:
    # Canonical MIME text has CRLF line ends (inside base64 too); a reader sees plain lines.
    return "" if part is None else str(part.get_content()).replace("\r\n", "\n")


class SmtpSim:
    """State, knobs and aiosmtpd handler hooks of one relay. ``host``/``port`` are set once listening."""

    def __init__(self) -> None:
        self.host = ""
        self.port = 0
        self.counts: Counter[str] = Counter()
        self.transactions = 0
        self.rejected = 0
        self.refused: dict[str, int] = {}
        self._raw: list[tuple[str, list[str], str, bytes]] = []
        self._decoded: list[Record] = []
        self._faults: list[Fault] = []
        self._current: weakref.WeakKeyDictionary[Envelope, Fault] = weakref.WeakKeyDictionary()
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._server: asyncio.Server | None = None

    # -- knobs -----------------------------------------------------------------------------------

    def fail_next(self, n: int, code: int = 451, stage: Stage = "data") -> None:
        """Answer the next ``n`` transactions with ``code`` at ``stage``."""
        if not (400 <= code < 600):
            raise ValueError(f"fail_next: code must be 4xx or 5xx, not {code}")
        self._faults.extend([Fault(action="reply", code=code, stage=stage)] * n)

    def drop_next(self, n: int, stage: Stage = "data") -> None:
        """Close the connection without a reply at ``stage`` of the next ``n`` transactions."""
        self._faults.extend([Fault(action="drop", stage=stage)] * n)

    def stall_next(self, n: int, stage: Stage = "data") -> None:
        """Never answer at ``stage`` of the next ``n`` transactions (until the client gives up)."""
        self._faults.extend([Fault(action="stall", stage=stage)] * n)

    def refuse(self, *addresses: str, code: int = 550) -> None:
        """Refuse these recipients at RCPT with ``code``; ``refuse()`` with none clears the list."""
        if not addresses:
            self.refused.clear()
        self.refused.update({address.lower(): code for address in addresses})

    def disconnect_all(self) -> None:
        """Close every open client connection without a word (a relay restart, an idle timeout)."""
        for smtp in list(self._connections):
            if smtp.transport is not None:
                smtp.transport.close()

    def apply(self, fault: Fault) -> None:
        match fault.action:
            case "reply":
                self.fail_next(fault.count, fault.code, fault.stage)
            case "drop":
                self.drop_next(fault.count, fault.stage)
            case "stall":
                self.stall_next(fault.count, fault.stage)

    def reset(self) -> None:
        """Forget records, counts and pending faults."""
        self.counts.clear()
        self.transactions = self.rejected = 0
        self.refused.clear()
        self._raw.clear()
        self._decoded.clear()
        self._faults.clear()

    # -- records ---------------------------------------------------------------------------------

    @property
    def accepted(self) -> int:
        """Messages accepted (one per DATA answered 250, whatever the number of recipients)."""
        return len(self._raw)

    def count(self, address: str) -> int:
        """How many accepted messages had ``address`` as an envelope recipient."""
        return self.counts[address.lower()]

    def records(self, offset: int = 0, limit: int | None = None) -> list[Record]:
        """Accepted messages in order, decoded (parsed once, on first read)."""
        for raw in self._raw[len(self._decoded):]:
            self._decoded.append(decode(*raw))
        end = None if limit is None else offset + limit
        return self._decoded[offset:end]

    def summary(self) -> Counts:
        return Counts(accepted=self.accepted, transactions=self.transactions, rejected=self.rejected,
                      recipients=dict(self.counts))

    # -- aiosmtpd hooks --------------------------------------------------------------------------

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        self.transactions += 1
        if self._faults:
            self._current[envelope] = self._faults.pop(0)
        if (status := await self._fault(server, envelope, "mail")) is not None:
            return status
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if (status := await self._fault(server, envelope, "rcpt")) is not None:
            return status
        if (code := self.refused.get(address.lower())) is not None:
            self.rejected += 1
            return f"{code} 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if (status := await self._fault(server, envelope, "data")) is not None:
            return status
        content = envelope.original_content or b""
        queue_id = f"{len(self._raw) + 1:08X}"
        self._raw.append((envelope.mail_from or "", list(envelope.rcpt_tos), queue_id, content))
        self.counts.update(address.lower() for address in envelope.rcpt_tos)
        return f"250 2.0.0 OK queued as {queue_id}"

    async def _fault(self, server: SMTP, envelope: Envelope, stage: Stage) -> str | None:
        fault = self._current.get(envelope)
        if fault is None or fault.stage != stage:
            return None
        assert server.transport is not None
        if fault.action == "drop":
            cast(asyncio.WriteTransport, server.transport).abort()
            await asyncio.Event().wait()  # aiosmtpd cancels this handler when it sees the connection lost
        if fault.action == "stall":
            await asyncio.Event().wait()  # until the client gives up, or stop() closes the connection
        self.rejected += 1
        if fault.code == 421:
            # Sent first (the reply is written before the next loop turn), then the channel closes.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return f"{fault.code} {_TEXT.get(fault.code, 'Requested action not taken')}"

    # -- serving (asyncio side) ------------------------------------------------------------------

    def _protocol(self) -> SMTP:
        smtp = SMTP(self, hostname=HOSTNAME, ident="ecgw SMTP stand-in", loop=asyncio.get_running_loop())
        self._connections.add(smtp)
        return smtp

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0: a free port) in the running asyncio loop."""
        self._server = await asyncio.get_running_loop().create_server(self._protocol, host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        """Stop listening and close every open connection (stalled ones included)."""
        if self._server is not None:
            self._server.close()
            self.disconnect_all()
            await self._server.wait_closed()
            self._server = None


@asynccontextmanager
async def open_smtp_sim(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[SmtpSim]:
    """Serve a stand-in relay from Trio (aiosmtpd in a trio-asyncio loop); yields it listening."""
    sim = SmtpSim()
    async with trio_asyncio.open_loop() as loop:
        await loop.run_aio_coroutine(sim.start(host, port))
        try:
            yield sim
        finally:
            await loop.run_aio_coroutine(sim.stop())


# -- separate process: plain asyncio, with a small HTTP control API ---------------------------------

def control_app(sim: SmtpSim) -> web.Application:
    """``GET /_sim/counts``, ``GET /_sim/records?offset=&limit=``, ``POST /_sim/faults`` (a Fault),
    ``POST /_sim/refuse`` (``{"addresses": [...], "code": 550}``), ``POST /_sim/reset``."""

    def reply(body: Any, status: int = 200) -> web.Response:
        return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")

    async def counts(_: web.Request) -> web.Response:
        return reply(sim.summary())

    async def records(request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query["limit"]) if "limit" in request.query else None
        return reply(sim.records(offset, limit))

    async def faults(request: web.Request) -> web.Response:
        try:
            sim.apply(msgspec.json.decode(await request.read(), type=Fault))
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            return reply({"error": str(exc)}, 400)
        return reply({"pending": len(sim._faults)})

    async def refuse(request: web.Request) -> web.Response:
        body = json.loads(await request.read() or b"{}")
        sim.refuse(*body.get("addresses", []), code=int(body.get("code", 550)))
        return reply({"refused": sim.refused})

    async def reset(_: web.Request) -> web.Response:
        sim.reset()
        return reply({"ok": True})

    app = web.Application()
    app.add_routes([web.get("/_sim/counts", counts), web.get("/_sim/records", records),
                    web.post("/_sim/faults", faults), web.post("/_sim/refuse", refuse),
                    web.post("/_sim/reset", reset)])
    return app


async def _serve_process(host: str, port: int, control_port: int, refused: list[str]) -> None:
    sim = SmtpSim()
    sim.refuse(*refused)
    await sim.start(host, port)
    runner = web.AppRunner(control_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, control_port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server is not None else control_port  # type: ignore[attr-defined]
    print(json.dumps({"host": sim.host, "port": sim.port, "control": f"http://{host}:{bound}"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.smtp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="SMTP port (0: a free one)")
    parser.add_argument("--control-port", type=int, default=0, help="HTTP control API port (0: a free one)")
    parser.add_argument("--refuse", action="append", default=[], help="recipient refused with 550 at RCPT")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the stand-in listens on loopback only")

    async def run() -> None:
        await _serve_process(args.host, args.port, args.control_port, args.refuse)

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
