"""E-mail channel: warnings handed to an SMTP relay over a small pool of kept-alive sessions.

Theory of operation: ``open_email`` opens a trio-asyncio loop and keeps ``connections`` SMTP
sessions (aiosmtplib), each connected on first use and kept open between transactions. A batch
is planned into transactions (``email_message.plan``): one message per recipient by default, so
each gets a personal To:, or with ``recipients_per_transaction`` > 1 one copy of identical
content for several envelope recipients. Workers (one per session) take transactions in turn,
each paced to ``max_per_second`` recipients, and run the whole SMTP dialogue (MAIL, RCPT per
recipient, DATA) as one asyncio coroutine, so a transaction crosses between Trio and asyncio
once.

What a reply means for a recipient:
  * 250 after DATA: "sent" (the relay took responsibility), ``provider_id`` = our Message-ID;
  * a refusal at RCPT fails only that recipient (4xx retryable, 5xx not);
  * 4xx/5xx at MAIL or DATA fail every recipient of the transaction (4xx retryable, 5xx not);
  * a lost connection, a timeout or a refusal while the session is being set up (greeting,
    EHLO, STARTTLS, AUTH) is retryable: it says nothing about the message, and the session is
    closed so the next transaction opens a fresh one.
The deadline is a Trio cancel scope around each transaction (``timeout_s``), not aiosmtplib's
per-command timers: those arm an asyncio timer per command, 10-20 % of the sender's CPU when
hosted in trio-asyncio (measured with the benchmark's relay).
A session idle for longer than ``idle_check_s`` is checked with NOOP before use, because
relays close idle connections (Postfix after 300 s) and alerts come in bursts.

aiosmtplib's exceptions are translated in one place (``_failure``). There are no asynchronous
delivery reports for e-mail (bounces go to a mailbox), so ``on_update`` is never called.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiosmtplib
import trio
import trio_asyncio

from channels import email_message as em
from channels.base import ChannelHealth, Message, Receipt, UpdateCallback, failed
from gateway.errors import ChannelError
from gateway.settings.channels import EmailConfig

_CACHED_CONTENTS = 64


@dataclass(frozen=True)
class _Outcome:
    """What one SMTP step said about one recipient."""

    ok: bool
    detail: str
    retryable: bool = False


@dataclass
class _Session:
    smtp: aiosmtplib.SMTP | None = None
    last_used: float = float("-inf")


@dataclass
class _Attempt:
    """One transaction as it goes: the asyncio side fills it in, so that a deadline that cuts it
    short still knows which step hung and which recipients were already answered."""

    recipients: list[str]
    stage: str = "connect"
    outcomes: dict[str, _Outcome] = field(default_factory=dict)

    def finish(self, outcome: _Outcome) -> None:
        """``outcome`` for every recipient not answered yet."""
        for recipient in self.recipients:
            self.outcomes.setdefault(recipient, outcome)


@dataclass
class _Pacer:
    """Spaces recipients ``1/rate`` apart across every worker (no burst: relays count per second)."""

    rate: float
    next_at: float = field(default=float("-inf"))

    async def wait(self, recipients: int) -> None:
        if self.rate <= 0:
            return
        now = trio.current_time()
        start = max(self.next_at, now)
        self.next_at = start + recipients / self.rate
        if start > now:
            await trio.sleep_until(start)


def _failure(exc: BaseException, stage: str) -> _Outcome:
    """The one translation of aiosmtplib's (and the socket's) exceptions into an outcome."""
    if stage == "connect":
        # Greeting, EHLO, STARTTLS or AUTH: a problem with the relay, not with this message.
        return _Outcome(False, f"SMTP session setup failed: {_describe(exc)}", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        permanent = 500 <= exc.code < 600
        return _Outcome(False, f"{stage} refused: {exc.code} {exc.message}", retryable=not permanent)
    return _Outcome(False, f"{stage}: {_describe(exc)}", retryable=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return f"timed out ({exc})"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return f"connection lost ({exc})"
    return f"{type(exc).__name__}: {exc}"


_SMTP_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


class EmailChannel:
    """The e-mail ``Channel``; made by ``open_email``, which owns its loop and sessions."""

    name = "email"

    def __init__(self, config: EmailConfig, loop: trio_asyncio.TrioEventLoop, helo_name: str) -> None:
        self.max_per_second = config.max_per_second
        self.max_batch = config.max_batch
        self._config = config
        self._loop = loop
        self._helo_name = helo_name
        self._sender = em.normalize_address(config.from_address)
        self._domain = em.domain_of(config.from_address)
        self._sessions = [_Session() for _ in range(config.connections)]
        self._idle_send, self._idle = trio.open_memory_channel[_Session](config.connections)
        for session in self._sessions:
            self._idle_send.send_nowait(session)
        self._pacer = _Pacer(config.max_per_second)
        self._contents: dict[tuple[str, ...], bytes] = {}
        self._last_error = ""

    # -- Channel ---------------------------------------------------------------------------------

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        """One receipt per message, in order; never raises for a delivery failure."""
        receipts: list[Receipt | None] = [None] * len(messages)
        valid: list[int] = []
        for i, message in enumerate(messages):
            try:
                em.check(message)
            except em.EmailContentError as exc:
                receipts[i] = failed(message, str(exc), retryable=False)
            else:
                valid.append(i)
        groups = [[valid[j] for j in group]
                  for group in em.plan([messages[i] for i in valid], self._config.recipients_per_transaction)]
        work = iter(groups)
        async with trio.open_nursery() as nursery:
            for _ in range(min(len(groups), self._config.connections)):
                nursery.start_soon(self._worker, work, messages, receipts)
        assert all(receipt is not None for receipt in receipts)
        return receipts  # type: ignore[return-value]

    async def health(self) -> ChannelHealth:
        """NOOP on a pooled session (connecting it if need be). When every session stays busy for
        ``timeout_s``, the last transaction's outcome answers instead."""
        with trio.move_on_after(self._config.timeout_s):
            session = await self._idle.receive()
            try:
                with trio.move_on_after(self._config.timeout_s):
                    return await self._loop.run_aio_coroutine(self._aio_noop(session))
                return ChannelHealth(up=False, detail=f"no NOOP answer within {self._config.timeout_s} s")
            finally:
                self._idle_send.send_nowait(session)
        if self._last_error:
            return ChannelHealth(up=False, detail=f"all sessions busy; last error: {self._last_error}")
        return ChannelHealth(up=True, detail="all sessions busy delivering")

    # -- transactions ----------------------------------------------------------------------------

    async def _worker(self, work: Iterator[list[int]], messages: Sequence[Message],
                      receipts: list[Receipt | None]) -> None:
        session = await self._idle.receive()
        try:
            for group in work:
                await self._pacer.wait(len(group))
                batch = [messages[i] for i in group]
                for i, receipt in zip(group, await self._transaction(session, batch), strict=True):
                    receipts[i] = receipt
        finally:
            self._idle_send.send_nowait(session)

    async def _transaction(self, session: _Session, batch: list[Message]) -> list[Receipt]:
        shared = self._config.recipients_per_transaction > 1
        first = batch[0]
        mid = em.message_id(em.group_key(first) if shared else first.idempotency_key, self._domain)
        recipients = [em.normalize_address(message.address) for message in batch]
        data = em.personalize(self._content(first), to=None if shared else recipients[0], message_id=mid,
                              date=datetime.now(UTC))
        probe = trio.current_time() - session.last_used > self._config.idle_check_s
        attempt = _Attempt(recipients)
        with trio.move_on_after(self._config.timeout_s) as deadline:
            await self._loop.run_aio_coroutine(self._aio_transaction(session, attempt, data, probe))
        if deadline.cancelled_caught:
            # The asyncio side was cancelled and closed the session; the next transaction reconnects.
            self._last_error = f"{attempt.stage}: timed out after {self._config.timeout_s} s"
            attempt.finish(_Outcome(False, self._last_error, retryable=True))
        session.last_used = trio.current_time()
        receipts = []
        for message, outcome in zip(batch, (attempt.outcomes[r] for r in recipients), strict=True):
            if outcome.ok:
                receipts.append(Receipt(idempotency_key=message.idempotency_key, state="sent", provider_id=mid))
            else:
                receipts.append(failed(message, outcome.detail, retryable=outcome.retryable))
        return receipts

    def _content(self, message: Message) -> bytes:
        """The shared part of the e-mail, rendered once per distinct content (the costly part)."""
        key = em.content_key(message)
        content = self._contents.get(key)
        if content is None:
            content = em.render_content(message, from_address=self._config.from_address,
                                        from_name=self._config.from_name)
            if len(self._contents) >= _CACHED_CONTENTS:
                del self._contents[next(iter(self._contents))]
            self._contents[key] = content
        return content

    # -- asyncio side (runs in the trio-asyncio loop) --------------------------------------------

    async def _aio_connected(self, session: _Session, probe: bool) -> aiosmtplib.SMTP:
        smtp = session.smtp
        if smtp is not None and smtp.is_connected and probe:
            try:
                await smtp.noop()
            except _SMTP_ERRORS:
                smtp.close()  # the relay dropped an idle session: open a fresh one, nothing was sent
        if smtp is None or not smtp.is_connected:
            cfg = self._config
            smtp = session.smtp = aiosmtplib.SMTP(
                hostname=cfg.host, port=cfg.port, username=cfg.username or None, password=cfg.password or None,
                local_hostname=self._helo_name, timeout=None, use_tls=cfg.use_tls,
                start_tls=cfg.starttls)
            await smtp.connect()
        return smtp

    async def _aio_transaction(self, session: _Session, attempt: _Attempt, data: bytes, probe: bool) -> None:
        try:
            smtp = await self._aio_connected(session, probe)
            attempt.stage = "MAIL"
            options = [f"SIZE={len(data)}"] if smtp.supports_extension("size") else []
            await smtp.mail(self._sender, options=options)
            attempt.stage = "RCPT"
            for recipient in attempt.recipients:
                try:
                    await smtp.rcpt(recipient)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    attempt.outcomes[recipient] = _failure(exc, "RCPT")
            if len(attempt.outcomes) == len(attempt.recipients):
                await smtp.rset()
                return
            attempt.stage = "DATA"
            reply = await smtp.data(data)
            self._last_error = ""
            attempt.finish(_Outcome(True, f"{reply.code} {reply.message}"))
        except _SMTP_ERRORS as exc:
            outcome = _failure(exc, attempt.stage)
            self._last_error = outcome.detail
            if session.smtp is not None:
                await self._aio_after_failure(session.smtp, exc)
            attempt.finish(outcome)
        except asyncio.CancelledError:
            if session.smtp is not None:
                session.smtp.close()  # cut short mid-dialogue: the session's state is unknown
            raise

    async def _aio_after_failure(self, smtp: aiosmtplib.SMTP, exc: BaseException) -> None:
        """Leave the session usable: RSET after a refusal, close it after anything else."""
        if isinstance(exc, aiosmtplib.SMTPResponseException) and smtp.is_connected:
            try:
                await smtp.rset()
                return
            except _SMTP_ERRORS:
                pass  # falls through to closing: a session that cannot RSET is not reused
        smtp.close()

    async def _aio_noop(self, session: _Session) -> ChannelHealth:
        smtp = session.smtp
        if smtp is not None and smtp.is_connected:
            try:
                reply = await smtp.noop()
            except _SMTP_ERRORS:
                smtp.close()  # a session the relay dropped while idle says nothing yet: try a fresh one
            else:
                return self._up(reply)
        stage = "connect"
        try:
            smtp = await self._aio_connected(session, probe=False)
            stage = "NOOP"
            reply = await smtp.noop()
        except _SMTP_ERRORS as exc:
            if session.smtp is not None:
                session.smtp.close()
            return ChannelHealth(up=False, detail=_failure(exc, stage).detail)
        return self._up(reply)

    def _up(self, reply: aiosmtplib.SMTPResponse) -> ChannelHealth:
        return ChannelHealth(up=True, detail=f"{self._config.host}:{self._config.port} NOOP {reply.code}")

    async def _aio_close(self) -> None:
        await asyncio.gather(*(self._aio_quit(session) for session in self._sessions))

    @staticmethod
    async def _aio_quit(session: _Session) -> None:
        smtp, session.smtp = session.smtp, None
        if smtp is not None and smtp.is_connected:
            try:
                # A polite QUIT; whatever the relay answers (or not) within a second, we disconnect.
                with suppress(*_SMTP_ERRORS):
                    await smtp.quit(timeout=1.0)
            finally:
                smtp.close()


@asynccontextmanager
async def open_email(config: EmailConfig, *, on_update: UpdateCallback | None = None) -> AsyncIterator[EmailChannel]:
    """Open the e-mail channel: its own trio-asyncio loop and a pool of ``connections`` SMTP sessions,
    connected on first use and QUIT on exit. ``on_update`` is accepted for the common signature;
    e-mail has no asynchronous delivery reports. Raises ``ChannelError`` for an unusable sender."""
    del on_update
    try:
        em.normalize_address(config.from_address)
        em.check_header("from_name", config.from_name)
    except em.EmailContentError as exc:
        raise ChannelError(f"channels.email: {exc}") from exc
    if config.use_tls and config.starttls:
        raise ChannelError("channels.email: use_tls and starttls are exclusive (465 vs 587)")
    helo = config.helo_name or await trio.to_thread.run_sync(socket.getfqdn)
    async with trio_asyncio.open_loop() as loop:
        channel = EmailChannel(config, loop, helo)
        try:
            yield channel
        finally:
            with trio.move_on_after(3.0, shield=True):
                await loop.run_aio_coroutine(channel._aio_close())
