"""The caller's menu: language (kk/ru/en) and category by DTMF, with timeouts to a human.

A prompt that cannot be played counts as silence; an unknown digit, silence or 0 sends the
caller to a dispatcher at once. The IVR never holds a caller longer than its timeouts.

The 1402 line has its own category menu (``[ivr.menu_1402]``, prompt ``category_1402``). A 102 caller
hears ``category_102`` instead when ``offer_1402_digit`` is set: that key moves a non-emergency caller to
the 1402 line (the incident's service becomes 1402, a ``transferred_to_1402`` event keeps where it came
from) and the 1402 menu follows, within the same overall limit.
"""

from __future__ import annotations

import itertools
import logging

import trio

from gateway.asterisk.ari import Ari, ChannelGone, quietly
from gateway.errors import AriError
from gateway.incident.recorder import Recorder
from gateway.intake.call import Call
from gateway.protocols import ari_events as ev
from gateway.settings import LINE_1402, Category, IvrConfig

log = logging.getLogger(__name__)
PROMPT_MAX_S = 30.0  # a prompt longer than this is treated as finished


class Ivr:
    def __init__(self, cfg: IvrConfig, recorder: Recorder, prompts_dir: str = "") -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.prompts_dir = cfg.prompts_dir or prompts_dir
        self._seq = itertools.count(1)
        self._categories = {c.digit: c for c in cfg.categories}
        self._categories_1402 = {c.digit: c for c in cfg.menu_1402.categories}

    def media(self, call: Call, name: str) -> str:
        lang = call.incident.language or "ru"
        if self.prompts_dir:
            return f"sound:{self.prompts_dir}/{lang}/{name}"
        return f"sound:ecgw-{name}"

    async def run(self, ari: Ari, call: Call) -> None:
        """Ask language then category within ``max_s``; every answer (or its absence) is a timeline event."""
        if not self.cfg.enabled:
            return
        with trio.move_on_after(self.cfg.max_s) as limit:
            await self._menus(ari, call)
        if limit.cancelled_caught:
            await self.recorder.record(call.held, "ivr_time_limit", max_s=self.cfg.max_s)

    async def _menus(self, ari: Ari, call: Call) -> None:
        if self.cfg.language_prompt:
            digit = await self.ask(ari, call, "language")
            lang = self.cfg.languages.get(digit or "")
            if lang:
                call.incident.language = lang
                await self.recorder.record(call.held, "ivr_language", actor="caller", digit=digit, language=lang)
            else:
                await self._no_choice(call, "language", digit)
        if call.incident.service == LINE_1402:
            await self._category(call, await self.ask(ari, call, "category_1402"), self._categories_1402)
            return
        offer = self.cfg.offer_1402_digit if call.incident.service == "102" else ""
        digit = await self.ask(ari, call, "category_102" if offer else "category")
        if offer and digit == offer:
            await self.recorder.record(call.held, "transferred_to_1402", actor="caller", digit=digit,
                                       service=call.incident.service,
                                       changes={"service": LINE_1402, "ivr_choice": LINE_1402,
                                                "priority": self.cfg.menu_1402.default_priority})
            try:  # should the call fall back to the dialplan (gateway gone, overflow), it rings the 1402 positions
                await ari.set_variable(call.channel_id, "ECGW_SERVICE", LINE_1402)
            except AriError as exc:
                log.warning("incident %s: moved to 1402, but a fallback would ring it as 102: %s", call.id, exc)
            await self._category(call, await self.ask(ari, call, "category_1402"), self._categories_1402)
            return
        await self._category(call, digit, self._categories)

    async def _category(self, call: Call, digit: str | None, categories: dict[str, Category]) -> None:
        category = categories.get(digit or "")
        if category is not None:
            await self.recorder.record(call.held, "ivr_category", actor="caller", digit=digit, category=category.name,
                                       changes={"category": category.name, "priority": category.priority,
                                                "ivr_choice": category.name})
        elif digit == "0":
            await self.recorder.record(call.held, "ivr_dispatcher_now", actor="caller", digit="0",
                                       changes={"ivr_choice": "dispatcher"})
        else:
            await self._no_choice(call, "category", digit)

    async def _no_choice(self, call: Call, menu: str, digit: str | None) -> None:
        if digit is None:
            await self.recorder.record(call.held, "ivr_timeout", actor="caller", menu=menu,
                                       changes={"ivr_choice": "timeout"} if menu == "category" else None)
        else:
            log.info("incident %s: unknown digit %r in %s menu", call.id, digit, menu)
            await self.recorder.record(call.held, "ivr_unknown_digit", actor="caller", menu=menu, digit=digit,
                                       changes={"ivr_choice": "unknown"} if menu == "category" else None)

    async def ask(self, ari: Ari, call: Call, name: str) -> str | None:
        """Play a prompt and return the first digit pressed, or None on timeout.

        The prompt is stopped however this ends (digit, timeout, the IVR's overall limit), so a
        caller never hears a stale menu while waiting for a dispatcher.
        """
        playback = await self._start(ari, call, name)
        deadline = trio.current_time() + (PROMPT_MAX_S if playback else self.cfg.digit_timeout_s)
        try:
            while True:
                with trio.move_on_at(deadline):
                    event = await call.inbox.receive()
                    if isinstance(event, ev.ChannelDtmfReceived):
                        return event.digit[:1]
                    if isinstance(event, ev.PlaybackFinished) and event.playback.id == playback:
                        deadline = trio.current_time() + self.cfg.digit_timeout_s
                    continue
                return None
        finally:
            if playback:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await quietly(ari.stop_playback(playback))

    async def announce(self, ari: Ari, call: Call, name: str) -> None:
        """Play a prompt to its end, ignoring input (hold announcement). Handing the caller to a
        dispatcher takes it out of Stasis, which stops the prompt."""
        playback = await self._start(ari, call, name)
        if playback is None:
            return
        with trio.move_on_after(PROMPT_MAX_S):
            async for event in call.inbox:
                if isinstance(event, ev.PlaybackFinished) and event.playback.id == playback:
                    break

    async def _start(self, ari: Ari, call: Call, name: str) -> str | None:
        """Start a prompt; its playback id, or None if it cannot be played (treated as silence)."""
        playback = f"{call.id}-{name}-{next(self._seq)}"
        try:
            await ari.play(call.channel_id, self.media(call, name), playback)
        except ChannelGone:
            raise
        except AriError as exc:
            log.warning("incident %s: prompt %s not played: %s", call.id, name, exc)
            return None
        return playback
