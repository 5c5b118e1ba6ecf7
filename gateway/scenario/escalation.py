"""The escalation service: loads the catalogue, directory and texts, opens the responders' channels
and runs the engine, its triggers and the Telegram acknowledgement poller."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from channels.base import Channel
from gateway.errors import GatewayError
from gateway.incident.recorder import Recorder
from gateway.scenario import people as directory_file
from gateway.scenario import texts as texts_file
from gateway.scenario.catalogue import known_for, load_catalogue
from gateway.scenario.engine import Drafter, Engine
from gateway.scenario.leases import LEASE_S, LOCAL
from gateway.scenario.notifier import Notifier
from gateway.scenario.triggers import Triggers, TriggerSettings
from gateway.settings import project_path
from gateway.settings.escalation import EscalationConfig

log = logging.getLogger(__name__)
Opener = Callable[[], AbstractAsyncContextManager[Any]]
ACK_WORDS = frozenset({"1", "ok", "ок", "да", "иә", "ия", "yes", "+", "принял", "принято", "қабылдадым"})
PROBE_S = 5.0
CODE_RE = re.compile(r"\b(\d{4})\b")


class Escalation:
    def __init__(self, cfg: EscalationConfig, recorder: Recorder, *, unit_kinds: frozenset[str] = frozenset(),
                 warning_events: frozenset[str] = frozenset(), sounds_dir: Any = None, node_id: str = LOCAL,
                 lease_s: float = LEASE_S) -> None:
        """``node_id``, ``lease_s``: this node's leases on the scenario runs it executes (``scenario.leases``)."""
        self.cfg = cfg
        self.directory = directory_file.load(project_path(cfg.responders_file))
        self.texts = texts_file.load(project_path(cfg.templates_dir))
        known = known_for(self.directory, self.texts, unit_kinds=unit_kinds, warning_events=warning_events)
        self.catalogue = load_catalogue(cfg, known)
        self.channels: dict[str, Channel] = {}
        self.channel_errors: dict[str, str] = {}
        self.health: dict[str, str] = {}
        self.sounds_dir = sounds_dir
        self.on_inbound_sms: Callable[[str, str, str], Awaitable[None]] | None = None  # texts to our SMPP number
        self.notifier = Notifier(self.channels, self.texts, ack_url=cfg.ack_url,
                                 voice_ack_wait_s=cfg.voice_ack_wait_s)
        self.engine = Engine(recorder=recorder, catalogue=self.catalogue, directory=self.directory,
                             notifier=self.notifier, tz=cfg.timezone, node_id=node_id, lease_s=lease_s)
        self.triggers = Triggers(self.engine, self.notifier, TriggerSettings(
            answer_sla_s=cfg.answer_sla_s, unclassified_after_s=cfg.unclassified_after_s,
            sla_scenario=cfg.sla_scenario, start_on_ivr_category=cfg.start_on_ivr_category))

    def use(self, *, zone_of: Any = None, board: Any = None, drafter: Drafter | None = None) -> None:
        """Connect the optional parts the gateway has: zones, the units board, public warnings."""
        self.engine.zone_of = zone_of
        self.engine.board = board
        self.engine.drafter = drafter

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for name, opener in self._openers().items():
                nursery.start_soon(self._keep_open, name, opener)
            nursery.start_soon(self._probe)
            await nursery.start(self.engine.run)
            await nursery.start(self.triggers.run)
            telegram = self.cfg.channels.telegram
            if telegram is not None:
                from channels.telegram_callbacks import poll_callbacks

                nursery.start_soon(self._poll_acks, poll_callbacks, telegram)
            log.info("escalation ready: %d categories, %d scenarios, %d people", len(self.catalogue.categories),
                     len(self.catalogue.scenarios), len(self.directory.people))
            task_status.started()

    def channel_states(self) -> dict[str, str]:
        """Each responders' channel: "up", "down: why" (its last health probe) or "not open: why"."""
        states = {f"responders:{k}": f"not open: {v}" for k, v in self.channel_errors.items()}
        states.update({f"responders:{k}": self.health.get(k, "opening") for k in self.channels})
        return states

    async def _probe(self, every_s: float = PROBE_S) -> None:
        """Ask each open channel how it is, so /health tells an officer which ones would fail now."""
        while True:
            for name, channel in list(self.channels.items()):
                try:
                    with trio.fail_after(5):
                        found = await channel.health()
                    self.health[name] = "up" if found.up else f"down: {found.detail}"
                except (trio.TooSlowError, GatewayError) as exc:
                    self.health[name] = f"down: no health answer ({type(exc).__name__})"
            await trio.sleep(every_s)

    async def _keep_open(self, name: str, opener: Opener) -> None:
        """Open a channel and keep it open; a provider down at start is retried with backoff."""
        wait = 1.0
        while True:
            try:
                async with opener() as channel:
                    self.channels[name] = channel
                    self.channel_errors.pop(name, None)
                    wait = 1.0
                    await trio.sleep_forever()
            except GatewayError as exc:
                self.channel_errors[name] = str(exc) or type(exc).__name__
                log.error("responders' channel %s not open: %s; retrying in %.0f s", name, exc, wait)
            finally:
                self.channels.pop(name, None)
            await trio.sleep(wait)
            wait = min(wait * 2, 60.0)

    def _openers(self) -> dict[str, Opener]:
        from channels.email import open_email
        from channels.smpp import open_smpp
        from channels.telegram import open_telegram
        from channels.twilio_sms import open_twilio
        from channels.voice import open_voice

        cs = self.cfg.channels
        out: dict[str, Opener] = {}
        if cs.smpp:
            out["sms"] = lambda: open_smpp(cs.smpp, on_inbound=self._inbound)  # type: ignore[arg-type]
        elif cs.twilio:
            out["sms"] = lambda: open_twilio(cs.twilio)  # type: ignore[arg-type]
        if cs.email:
            out["email"] = lambda: open_email(cs.email)  # type: ignore[arg-type]
        if cs.telegram:
            out["telegram"] = lambda: open_telegram(cs.telegram)  # type: ignore[arg-type]
        if cs.voice and self.sounds_dir is not None:
            out["voice"] = lambda: open_voice(cs.voice, sounds_dir=self.sounds_dir)  # type: ignore[arg-type]
        return out

    async def _inbound(self, sender: str, text: str, seen_key: str = "") -> None:
        if self.on_inbound_sms is not None:
            await self.on_inbound_sms(sender, text, seen_key)
        else:
            await self.sms_reply(sender, text, "smpp")

    async def send_sms(self, number: str, text: str) -> bool:
        """One SMS over the responders' SMS channel (replies to people who texted 112)."""
        from channels.base import Message

        channel = self.channels.get("sms")
        if channel is None:
            return False
        message = Message(idempotency_key=f"reply:{secrets.token_hex(8)}", alert_id="", address=number,
                          language="ru", body=text)
        error, _ = await self.notifier.deliver(channel, message)
        if error:
            log.warning("SMS to %s not sent: %s", number, error)
        return not error

    async def _poll_acks(self, poll: Any, telegram: Any) -> None:
        try:
            await poll(telegram, self.telegram_press)
        except GatewayError as exc:
            log.error("responders' Telegram acknowledgements stopped: %s", exc)

    # --- acknowledgements from outside a delivery --------------------------------------------------

    async def telegram_press(self, data: str, user_id: int, username: str) -> str:
        from channels.telegram_callbacks import AckRejected

        if not data.startswith("ack:"):
            raise AckRejected(f"unknown button {data[:40]!r}")
        token = data[4:]
        target = self.engine.target(token)
        person = self.directory.people.get(target.person) if target is not None else None
        if person is not None and person.telegram is not None and person.telegram != user_id:
            # a forwarded message: only the person it was sent to may acknowledge it
            log.warning("acknowledge button for %s pressed by Telegram user %d: refused", person.name, user_id)
            return "Это подтверждение не для вас / Бұл растау сізге арналмаған"
        by = person.name if person is not None else f"tg:{user_id}"
        result = await self.engine.acknowledge(token, by=by, via="telegram")
        return {"acknowledged": "✔ Принято / Қабылданды", "already": "Уже подтверждено / Расталған",
                "unknown": "Больше не требуется / Енді қажет емес",
                "unit_busy": "Ваш наряд занят другим происшествием / Экипажыңыз басқа оқиғада"}[result]

    async def sms_reply(self, sender: str, text: str, via: str) -> bool:
        """An inbound SMS: True if it acknowledged a responder's notification (then it is no report)."""
        people = {p.name for p in self.directory.by_phone(sender)}
        if not people:
            return False
        waiting = self.engine.outstanding(people)
        if not waiting:
            return False
        words = text.strip().lower()
        code = CODE_RE.search(words)
        chosen = next((t for t in waiting if code and t.code == code.group(1)), None)
        if chosen is None and words.strip(" .!") in ACK_WORDS:
            if len(waiting) > 1:  # which one? a guess could skip another incident's escalation
                codes = ", ".join(t.code for t in waiting[:5])
                await self.send_sms(sender, f"Ожидают подтверждения {len(waiting)} вызова: ответьте кодом ({codes}). "
                                            f"{len(waiting)} хабарлама күтуде: кодпен жауап беріңіз.")
                return True
            chosen = waiting[0]
        if chosen is None:
            return False
        await self.engine.acknowledge(chosen.token, by=chosen.person, via=via)
        return True
