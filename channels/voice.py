"""Voice call-out of public warnings through Asterisk: ring each number, speak the warning, hang up.

Theory of operation: ``open_voice`` keeps one ARI connection for the call-out's own Stasis app
(``ecgw-callout``, never the intake's, so neither sees the other's channels), reconnecting with
backoff, and one reader task that hands each event to the call it concerns. ``deliver`` turns each
message's text into a cached WAV (``channels.voice_tts``) and, at most ``max_concurrent_calls`` at
a time across every batch and ``max_calls_per_second`` apart, originates a call to
``PJSIP/ecgw-callout/sip:<number>@<trunk>`` into the app:

- answered: the channel enters Stasis (StasisStart); the warning is played ``repeats`` times and
  the call hung up. "delivered" only if every playback finished as "done", i.e. to the end.
- not answered: the channel is destroyed with a Q.850 cause (Asterisk gives up after
  ``ring_timeout_s``). Busy, no answer and congestion are worth retrying; an unallocated or
  malformed number is not. A number that is not E.164 is never dialled.

Acknowledgement by DTMF: a message whose ``options`` carry ``ack_digits`` (e.g. ``"1"``; optional
``ack_wait_s``, default 10) keeps the call up after the last repetition for ``ack_wait_s``,
replaying the message once after ``pause_s`` meanwhile, and listens for ChannelDtmfReceived. The
first of ``ack_digits`` pressed, from the answer on, ends the call: the receipt is "delivered"
with ``reply`` set to that digit (a press during the message counts: the resident heard enough to
answer). Other keys are ignored. No key, or a hang-up once the message was heard to the end:
"delivered" with ``reply`` "". A malformed ``ack_digits``/``ack_wait_s`` fails the message,
not retryable, before anything is dialled.

Receipts are final when ``deliver`` returns; ``on_update`` is accepted like every driver's and
never called.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import trio

from channels.base import ChannelHealth, Message, Receipt, UpdateCallback, failed
from channels.voice_tts import Speech, Synthesizer, text_problem
from gateway.asterisk.ari import Ari, ChannelGone, connect_app, quietly
from gateway.errors import AriError, ChannelError, ConfigError
from gateway.protocols import ari_events as ev
from gateway.settings.channels import VoiceConfig, voice_problems

log = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EVENTS = ["StasisStart", "StasisEnd", "ChannelDestroyed", "PlaybackFinished", "Dial", "ChannelDtmfReceived"]
# Asterisk's own no-answer timer ends the call; ours only catches a trunk that never answers at all.
ANSWER_GRACE_S = 10.0
HANGUP_TIMEOUT_S = 3.0
ACK_DIGITS = re.compile(r"^[0-9*#A-D]{1,16}$")
DEFAULT_ACK_WAIT_S = 10.0
MAX_ACK_WAIT_S = 120.0

# Q.850 causes of a call that ended before it was answered: what it means, and whether a later
# attempt can reach the resident. Anything not listed is treated as temporary.
CAUSES: dict[int, tuple[str, bool]] = {
    1: ("unallocated number", False),
    3: ("no route to destination", False),
    16: ("cleared before answer", True),
    17: ("busy", True),
    18: ("no response", True),
    19: ("no answer", True),
    20: ("subscriber absent", True),
    21: ("call rejected", True),
    22: ("number changed", False),
    27: ("destination out of order", True),
    28: ("invalid number format", False),
    34: ("no circuit available", True),
    38: ("network out of order", True),
    41: ("temporary failure", True),
    42: ("congestion", True),
    58: ("bearer capability not available", False),
    88: ("incompatible destination", False),
}


def dial_string(cfg: VoiceConfig, number: str) -> str:
    """The channel to originate: the number at the trunk, sent over the call-out endpoint."""
    scheme, host = cfg.trunk_uri.split(":", 1)
    return f"PJSIP/{cfg.endpoint}/{scheme}:{number}@{host}"


def address_problem(address: str) -> str | None:
    if not E164.match(address):
        return f"not an E.164 number: {address!r}"
    return None


class AckRequest(NamedTuple):
    """Keys that acknowledge a message, and how long to wait for one after it was heard."""

    digits: str
    wait_s: float


class Pressed(NamedTuple):
    digit: str


def ack_request(options: Mapping[str, str]) -> AckRequest | None:
    """The acknowledgement a message's options ask for (None: none); raises ValueError saying what
    is wrong with ``ack_digits`` or ``ack_wait_s``."""
    digits = options.get("ack_digits", "")
    if not digits:
        if "ack_wait_s" in options:
            raise ValueError("ack_wait_s given without ack_digits")
        return None
    if not ACK_DIGITS.match(digits):
        raise ValueError(f"ack_digits: expected 1-16 of 0-9 * # A-D, got {digits!r}")
    raw = options.get("ack_wait_s", "")
    try:
        wait_s = float(raw) if raw else DEFAULT_ACK_WAIT_S
    except ValueError:
        raise ValueError(f"ack_wait_s: expected seconds, got {raw!r}") from None
    if not 1 <= wait_s <= MAX_ACK_WAIT_S:  # also refuses nan
        raise ValueError(f"ack_wait_s: expected 1-{MAX_ACK_WAIT_S:.0f} seconds, got {raw!r}")
    return AckRequest(digits, wait_s)


def acknowledges(digit: str, digits: str) -> bool:
    """Whether one DTMF event's ``digit`` is one of the acknowledging ``digits``."""
    return len(digit) == 1 and digit in digits


def unanswered(cause: int, cause_txt: str, dialstatus: str) -> tuple[str, bool]:
    """(error, retryable) for a call destroyed before it was answered."""
    meaning, retryable = CAUSES.get(cause, (cause_txt or "call failed", True))
    detail = f"cause {cause} {cause_txt}".strip() if cause else (cause_txt or "no cause")
    status = f", {dialstatus}" if dialstatus and dialstatus.lower() not in meaning.lower() else ""
    return f"{meaning} ({detail}{status})", retryable


class VoiceChannel:
    """The "voice" channel. Create with ``open_voice``."""

    name = "voice"

    def __init__(self, cfg: VoiceConfig, synthesizer: Synthesizer, on_update: UpdateCallback | None = None) -> None:
        self.cfg = cfg
        self.max_per_second = cfg.max_calls_per_second
        self.max_batch = cfg.max_concurrent_calls
        self._synth = synthesizer
        self._on_update = on_update
        self._ari: Ari | None = None
        self._problem = "ARI not connected yet"
        self._calls: dict[str, trio.MemorySendChannel[ev.Event]] = {}  # channel id -> the call's events
        self._lines = trio.CapacityLimiter(cfg.max_concurrent_calls)
        self._next_call_at = 0.0  # trunks limit call attempts per second, not only calls at once

    # -- connection ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the app registered until cancelled; ``started()`` after the first attempt, connected or not."""
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        backoff = 0.2
        while True:
            try:
                async with connect_app(self.cfg.ari_port, self.cfg.ari_user, self.cfg.ari_password,
                                       self.cfg.app) as ari:
                    backoff = 0.2
                    await self._session(ari, ready)
                self._problem = "ARI connection lost; reconnecting"
            except* (AriError, OSError) as group:
                self._problem = f"ARI unreachable: {group.exceptions[0]}"
                log.warning("voice call-out: %s; retrying in %.1f s", self._problem, backoff)
            ready()
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _session(self, ari: Ari, ready: Callable[[], None]) -> None:
        try:
            await ari.filter_events(EVENTS)
        except AriError as exc:
            log.warning("voice call-out: Asterisk refused the event filter (%s); receiving every event", exc)
        self._ari, self._problem = ari, ""
        ready()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, ari, nursery.cancel_scope)
                async for event in ari.events():
                    self._route(event)
                nursery.cancel_scope.cancel()
        finally:
            self._ari = None
            for inbox in self._calls.values():
                inbox.close()  # calls in progress learn the connection is gone

    @staticmethod
    async def _watch(ari: Ari, scope: trio.CancelScope, every_s: float = 2.0) -> None:
        # A dead Asterisk does not always close the websocket; a restarted one forgets our app.
        while True:
            await trio.sleep(every_s)
            try:
                with trio.fail_after(every_s * 2):
                    await ari.check_registered()
            except (AriError, trio.TooSlowError) as exc:
                log.warning("voice call-out: ARI check failed (%r); reconnecting", exc)
                scope.cancel()
                return

    def _route(self, event: ev.Event) -> None:
        # An originated channel is the Dial's peer (there is no caller); the rest name it directly.
        cid = event.peer.id if isinstance(event, ev.Dial) else ev.channel_id(event)
        inbox = self._calls.get(cid) if cid is not None else None
        if inbox is None:
            return
        try:
            inbox.send_nowait(event)
        except trio.WouldBlock:
            log.error("voice call-out: dropping %s for %s: the call is not reading its events",
                      type(event).__name__, cid)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the call just ended

    async def health(self) -> ChannelHealth:
        """Up when the app is registered with Asterisk and speech can be synthesised."""
        ari = self._ari
        if ari is None:
            return ChannelHealth(up=False, detail=self._problem)
        try:
            with trio.fail_after(2):
                await ari.check_registered()
        except (AriError, trio.TooSlowError) as exc:
            return ChannelHealth(up=False, detail=f"ARI not answering: {exc!r}")
        if not self._synth.available():
            return ChannelHealth(up=False, detail="espeak-ng or sox is not installed")
        return ChannelHealth(up=True, detail=f"Stasis app {self.cfg.app} registered; {len(self._calls)} calls active")

    # -- delivery --------------------------------------------------------------------------------

    async def deliver(self, messages: Sequence[Message]) -> list[Receipt]:
        """Call every message's number (concurrently, within ``max_concurrent_calls``); one
        receipt each, in order. Returns when every call has ended."""
        receipts: list[Receipt | None] = [None] * len(messages)

        async def one(index: int, message: Message) -> None:
            receipts[index] = await self._deliver_one(message)

        async with trio.open_nursery() as nursery:
            for index, message in enumerate(messages):
                nursery.start_soon(one, index, message)
        return [r for r in receipts if r is not None]

    async def _deliver_one(self, message: Message) -> Receipt:
        problem = address_problem(message.address) or text_problem(message.body, message.language)
        if problem:
            return failed(message, problem, retryable=False)
        try:
            ack = ack_request(message.options)
        except ValueError as exc:
            log.error("voice call-out: %s not dialled: %s", message.idempotency_key, exc)
            return failed(message, str(exc), retryable=False)
        try:
            speech = await self._synth.speech(message.body, message.language)
        except ChannelError as exc:
            return failed(message, f"cannot synthesise the message: {exc}", retryable=True, retry_after_s=60)
        async with self._lines:
            ari = self._ari
            if ari is None:
                return failed(message, self._problem, retryable=True, retry_after_s=5)
            await self._pace()
            try:
                return await self._call(ari, message, speech, ack)
            except AriError as exc:
                return failed(message, f"Asterisk refused the call: {exc}", retryable=True, retry_after_s=5)

    async def _pace(self) -> None:
        """Wait for this call's turn under ``max_calls_per_second`` (turns are taken before sleeping,
        so concurrent callers get distinct ones)."""
        now = trio.current_time()
        at = max(now, self._next_call_at)
        self._next_call_at = at + 1 / self.cfg.max_calls_per_second
        await trio.sleep_until(at)

    async def _call(self, ari: Ari, message: Message, speech: Speech, ack: AckRequest | None) -> Receipt:
        channel_id = f"callout-{uuid.uuid4().hex}"
        send, inbox = trio.open_memory_channel[ev.Event](64)
        self._calls[channel_id] = send
        gone = False  # Asterisk destroyed the channel: nothing to hang up
        try:
            await ari.originate(dial_string(self.cfg, message.address), channel_id,
                                timeout_s=max(1, math.ceil(self.cfg.ring_timeout_s)), caller_id=self.cfg.caller_id)
            outcome: tuple[str, bool] | None = ("no answer within the ring timeout", True)
            with trio.move_on_after(self.cfg.ring_timeout_s + ANSWER_GRACE_S):
                outcome, gone = await _wait_answer(inbox)
            if outcome is not None:
                return failed(message, outcome[0], retryable=outcome[1])
            digits = ack.digits if ack else ""
            reply = ""
            for n in range(self.cfg.repeats):
                if n:
                    await trio.sleep(self.cfg.pause_s)  # keys pressed meanwhile wait in the inbox
                played = await self._play(ari, channel_id, inbox, speech, f"{channel_id}-{n + 1}", digits)
                if isinstance(played, Pressed):
                    reply = played.digit
                    break
                if played:
                    return failed(message, f"{played} (repetition {n + 1} of {self.cfg.repeats})", retryable=True)
            else:
                if ack:
                    reply = await self._wait_ack(ari, channel_id, inbox, speech, ack)
            await quietly(ari.hangup(channel_id))  # heard to the end: a resident hanging up first changes nothing
            gone = True
            return Receipt(idempotency_key=message.idempotency_key, state="delivered", provider_id=channel_id,
                           reply=reply)
        finally:
            del self._calls[channel_id]
            if not gone:
                with trio.CancelScope(shield=True), trio.move_on_after(HANGUP_TIMEOUT_S):
                    await quietly(ari.hangup(channel_id))

    async def _play(self, ari: Ari, channel_id: str, inbox: trio.MemoryReceiveChannel[ev.Event],
                    speech: Speech, playback_id: str, digits: str) -> str | Pressed | None:
        """Play the message once; None when it played to the end, Pressed when one of ``digits``
        was pressed first, else what went wrong."""
        started = trio.current_time()
        try:
            await ari.play(channel_id, speech.media, playback_id)
        except ChannelGone:
            return "hung up before the message"
        outcome: str | Pressed | None = \
            f"the message did not finish playing within {speech.duration_s * 1.5 + 5:.0f} s"
        with trio.move_on_after(speech.duration_s * 1.5 + 5):
            outcome = await _wait_played(inbox, playback_id, digits)
        if isinstance(outcome, str):
            return f"{outcome} after {trio.current_time() - started:.1f} of {speech.duration_s:.1f} s"
        return outcome

    async def _wait_ack(self, ari: Ari, channel_id: str, inbox: trio.MemoryReceiveChannel[ev.Event],
                        speech: Speech, ack: AckRequest) -> str:
        """The acknowledging digit pressed within ``ack.wait_s`` of the message's end ('' for none, or
        when the resident hung up); the message is replayed once after ``pause_s`` meanwhile."""
        with trio.move_on_after(ack.wait_s):
            with trio.move_on_after(self.cfg.pause_s):
                return await _wait_digit(inbox, ack.digits)
            try:
                await ari.play(channel_id, speech.media, f"{channel_id}-ack")
            except AriError as exc:  # hung up meanwhile, or Asterisk refused: the message was heard anyway
                log.info("voice call-out: %s: no replay while waiting for a key: %s", channel_id, exc)
                return ""
            return await _wait_digit(inbox, ack.digits)
        return ""


async def _wait_answer(inbox: trio.MemoryReceiveChannel[ev.Event]) -> tuple[tuple[str, bool] | None, bool]:
    """(None, False) once answered, else ((error, retryable), whether the channel is gone)."""
    dialstatus = ""
    async for event in inbox:
        if isinstance(event, ev.StasisStart):
            return None, False
        if isinstance(event, ev.Dial) and event.dialstatus:
            dialstatus = event.dialstatus
        elif isinstance(event, ev.ChannelDestroyed):
            return unanswered(event.cause, event.cause_txt, dialstatus), True
    return ("ARI connection lost while ringing", True), False


async def _wait_played(inbox: trio.MemoryReceiveChannel[ev.Event], playback_id: str,
                       digits: str = "") -> str | Pressed | None:
    async for event in inbox:
        if isinstance(event, ev.ChannelDtmfReceived):
            if acknowledges(event.digit, digits):
                return Pressed(event.digit)
            if digits:
                _ignored(event)
        elif isinstance(event, ev.PlaybackFinished) and event.playback.id == playback_id:
            # "done" is the only state of a playback that reached its end; a hang-up shows as "failed".
            return None if event.playback.state == "done" else f"playback {event.playback.state} (hung up?)"
        if isinstance(event, ev.StasisEnd | ev.ChannelDestroyed):
            return "hung up during the message"
    return "ARI connection lost during the message"


async def _wait_digit(inbox: trio.MemoryReceiveChannel[ev.Event], digits: str) -> str:
    """The first acknowledging digit, or '' once the call or the connection ends."""
    async for event in inbox:
        if isinstance(event, ev.ChannelDtmfReceived):
            if acknowledges(event.digit, digits):
                return event.digit
            _ignored(event)
        elif isinstance(event, ev.StasisEnd | ev.ChannelDestroyed):
            return ""
    return ""


def _ignored(event: ev.ChannelDtmfReceived) -> None:
    log.info("voice call-out: %s pressed %r, not an acknowledgement; ignored", event.channel.id, event.digit)


@asynccontextmanager
async def open_voice(config: VoiceConfig, *, sounds_dir: Path, asterisk_sounds_dir: str | None = None,
                     on_update: UpdateCallback | None = None) -> AsyncIterator[VoiceChannel]:
    """The voice channel, connected (or reconnecting) to ARI until the block exits.

    Speech files are written below ``sounds_dir`` (the Asterisk instance's sounds directory on this
    machine); ``asterisk_sounds_dir`` is that directory as Asterisk sees it, by default worked out
    from the path (inside its chroot, or the same path for a system Asterisk). Does not fail when Asterisk
    is away: ``health()`` says so and calls fail as retryable until it is back. Raises
    ConfigError for an invalid config.
    """
    problems = voice_problems(config)
    if problems:
        raise ConfigError(problems)
    channel = VoiceChannel(config, Synthesizer(sounds_dir, asterisk_sounds_dir), on_update)
    async with trio.open_nursery() as nursery:
        await nursery.start(channel.run)
        try:
            yield channel
        finally:
            nursery.cancel_scope.cancel()
