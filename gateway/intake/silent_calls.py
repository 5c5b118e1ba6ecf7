"""Silent callers: the driver of ``intake.silence`` (the rule) for the calls the intake serves.

Asterisk's talk detection reports a caller's speech (ChannelTalkingStarted, routed here by the
intake); while a caller holds in the queue, ``next_announcement`` says whether the next prompt is
the usual hold announcement or, when the rule says the caller is silent, the "press a key if you
cannot speak" prompt. What the rule decides becomes timeline events and the incident's ``silent``
flag. Nothing here ends, dequeues or delays a call: a silent caller waits for a dispatcher as anyone.
"""

from __future__ import annotations

import logging

import trio

from gateway.errors import StoreError
from gateway.incident.recorder import Recorder
from gateway.intake import silence as si
from gateway.intake.call import Call
from gateway.settings import SilenceConfig

log = logging.getLogger(__name__)


class SilentCalls:
    def __init__(self, cfg: SilenceConfig, recorder: Recorder) -> None:
        self.cfg = cfg
        self.recorder = recorder

    def watch(self, call: Call) -> None:
        """The gateway answered ``call``: its silence counts from now."""
        if self.cfg.enabled:
            call.silence = si.Silence(self.cfg.after_s, self.cfg.repeat_s)
            call.silence.answered(trio.current_time())

    def talking(self, nursery: trio.Nursery, call: Call) -> None:
        """Asterisk heard the caller speak."""
        if call.silence is not None:
            self._soon(nursery, call, call.silence.talking(trio.current_time()))

    def key(self, nursery: trio.Nursery, call: Call, digit: str) -> None:
        """A key from the caller (it also goes to the call's inbox, for the menu)."""
        if call.silence is not None:
            self._soon(nursery, call, call.silence.key(digit))

    async def next_announcement(self, call: Call, every_s: float) -> str:
        """Wait for the next prompt while the caller holds: ``"silent"`` as soon as the rule says the caller
        is silent (marking the incident the first time), else ``"hold"`` after ``every_s``."""
        hold_at = trio.current_time() + every_s
        while True:
            due = call.silence.due() if call.silence is not None else None
            if due is None or due >= hold_at:
                await trio.sleep_until(hold_at)
                return "hold"
            await trio.sleep_until(due)
            assert call.silence is not None
            decisions = call.silence.check(trio.current_time())
            if any(isinstance(d, si.Prompt) for d in decisions):
                await self._apply(call, decisions)
                return "silent"

    def _soon(self, nursery: trio.Nursery, call: Call, decisions: list[si.Decision]) -> None:
        if decisions:
            nursery.start_soon(self._apply, call, decisions)

    async def _apply(self, call: Call, decisions: list[si.Decision]) -> None:
        """Each decision as the incident's record; a store failure is logged, the call goes on."""
        try:
            for decision in decisions:
                match decision:
                    case si.Mark(after_s=after_s):
                        await self.recorder.record(call.held, "silent", actor="caller", changes={"silent": True},
                                                   after_s=after_s)
                    case si.Prompt():
                        self.recorder.note(call.held, "silent_prompt", language=call.incident.language or "ru")
                    case si.KeyPressed(digit=digit):
                        await self.recorder.record(call.held, "silent_key", actor="caller", digit=digit)
                    case si.SpeechAfterSilence(silent_for_s=silent_for_s):
                        await self.recorder.record(call.held, "silent_speech", actor="caller",
                                                   silent_for_s=silent_for_s)
        except StoreError as exc:
            log.error("incident %s: silence not recorded yet: %s", call.id, exc)
