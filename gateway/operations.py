"""The response side of the gateway, composed: units, response scenarios, alarm panels and the
text intake paths (Telegram 102, SMS to 112 with AML), all writing incidents through one desk."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from starlette.routing import BaseRoute

from gateway.cli.alerts import key_path
from gateway.errors import AlertError, GatewayError
from gateway.incident.desk import Desk
from gateway.incident.records import Incident
from gateway.scenario import facts as F
from gateway.settings import GatewayConfig
from gateway.warning.centre import Warnings
from gateway.web.auth import Auth
from gateway.web.warnings import local_key

log = logging.getLogger(__name__)
WARNING_RADIUS_KM = 2.0  # a scenario's draft warning around an incident outside every zone


async def isolated(name: str, run: Callable[..., Awaitable[None]], *,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one part, restarting it after a crash: a bug in alarm handling or a scenario must never
    take the call intake down with it. Ready as soon as the part is (or once it first failed)."""
    backoff, ready = 1.0, False

    def started(value: object = None) -> None:
        nonlocal ready
        if not ready:
            ready = True
            task_status.started()

    while True:
        try:
            await run(task_status=_Started(started))
            return
        except Exception:
            log.exception("%s crashed; restarting it in %.0f s", name, backoff)
        started()
        await trio.sleep(backoff)
        backoff = min(backoff * 2, 60.0)


class _Started:
    """A task_status whose ``started`` we can forward once across restarts."""

    def __init__(self, callback: Callable[..., None]) -> None:
        self.started = callback


class Operations:
    def __init__(self, cfg: GatewayConfig, desk: Desk, warnings: Warnings | None, *, sounds_dir: Path,
                 spool_dir: Path) -> None:
        self.cfg = cfg
        self.desk = desk
        self.warnings = warnings
        self.sounds_dir = sounds_dir
        self.spool_dir = spool_dir
        self.board: Any = None
        self.escalation: Any = None
        self.alarms: Any = None
        self.telegram102: Any = None
        self.sms112: Any = None

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.escalation is not None:
            out["responder_channels"] = self.escalation.channel_states()
            out["scenario_runs"] = sum(1 for r in self.escalation.engine.runs.values() if r.phase != "done")
            out["sla_breaches"] = self.escalation.triggers.breaches
        if self.alarms is not None:
            out["alarm_sites"] = {k: v.last_test_wall for k, v in self.alarms.site_health().items()}
        return out

    async def start(self, nursery: trio.Nursery) -> list[BaseRoute]:
        """Build and start every enabled part; return their HTTP routes."""
        cfg = self.cfg
        auth = Auth([(u.name, [str(r) for r in u.roles], u.token_sha256) for u in cfg.warnings.users],
                    local_key(key_path(cfg.warnings.store_path)))
        routes: list[BaseRoute] = []
        if cfg.units.enabled:
            from gateway.units.board import UnitBoard

            self.board = UnitBoard(cfg.units, self.desk, Path(cfg.store.path).with_name("units.db"))
            await nursery.start(isolated, "units", self.board.run)
            routes += self.board.routes(auth)
        if cfg.escalation.enabled:
            routes += await self._start_escalation(nursery, auth)
        if cfg.alarm.enabled:
            from gateway.intake.alarm.panels import AlarmIntake

            self.alarms = AlarmIntake(cfg.alarm, self.desk, self.spool_dir / cfg.alarm.spool_subdir)
            await nursery.start(isolated, "alarm panels", self.alarms.run)
            routes += self.alarms.routes()
            if self.escalation is not None:
                self.escalation.engine.dynamic_people["site_contacts"] = self._site_contacts
        if cfg.reports.telegram102.enabled:
            from gateway.intake.text.telegram102 import Telegram102

            self.telegram102 = Telegram102(cfg.reports.telegram102, self.desk, self.desk.recorder)
            await nursery.start(isolated, "Telegram 102", self.telegram102.run)
        if cfg.reports.sms112.enabled:
            from gateway.intake.text.sms112 import Sms112

            self.sms112 = Sms112(cfg.reports.sms112, self.desk, self._send_sms,
                                 self.escalation.sms_reply if self.escalation is not None else None)
            await nursery.start(isolated, "SMS 112", self.sms112.run)
            routes += self.sms112.routes()
        if self.escalation is not None:
            routes += self._escalation_api(auth)
        return routes

    async def _start_escalation(self, nursery: trio.Nursery, auth: Auth) -> list[BaseRoute]:
        from gateway.scenario.escalation import Escalation

        events = frozenset(self.warnings.renderer.catalogue.events()) if self.warnings else frozenset()
        kinds = frozenset(self.board.kinds) if self.board is not None else frozenset()
        self.escalation = Escalation(self.cfg.escalation, self.desk.recorder, unit_kinds=kinds,
                                     warning_events=events, sounds_dir=self.sounds_dir)
        self.escalation.on_inbound_sms = self._inbound_sms
        self.escalation.use(zone_of=self.warnings.zones.zone_of if self.warnings else None, board=self.board,
                            drafter=self._draft_warning if self.warnings else None)
        await nursery.start(isolated, "escalation", self.escalation.run)
        return []

    def _escalation_api(self, auth: Auth) -> list[BaseRoute]:
        from gateway.web.scenario import EscalationApi

        replies: dict[str, Any] = {}
        if self.telegram102 is not None:
            replies["tg"] = self.telegram102.reply
        if self.sms112 is not None:
            replies["sms"] = self._sms_reply
        return list(EscalationApi(self.escalation.engine, self.desk, auth, replies).routes())

    async def _sms_reply(self, incident_id: str, text: str, actor: str) -> object:
        outcome = await self.sms112.reply(incident_id, text, actor)
        if not outcome.ok:
            raise AlertError(f"the SMS was not sent: {outcome.error}")
        return outcome

    async def _inbound_sms(self, sender: str, text: str) -> None:
        """A text to our SMPP number: a report to 112, or a responder's acknowledgement."""
        if self.sms112 is not None:
            await self.sms112.handle_text(sender, text, "smpp")
        elif self.escalation is not None:
            await self.escalation.sms_reply(sender, text, "smpp")

    async def _send_sms(self, number: str, text: str) -> bool:
        return await self.escalation.send_sms(number, text) if self.escalation is not None else False

    def _site_contacts(self, incident: Incident) -> list[Any]:
        from gateway.scenario.people import Person

        site = self.alarms.sites.get(incident.reporter) if self.alarms is not None else None
        if site is None:
            return []
        return [Person(name=f"site:{site.account}:{i}", display=c.name, phone=c.phone,
                       telegram=c.telegram_chat_id, email=c.email, channels=["sms", "voice", "telegram", "email"])
                for i, c in enumerate(site.contacts)]

    async def _draft_warning(self, incident: Incident, event: str) -> str:
        """The public warning a scenario drafts: the incident's zone, or a circle around it."""
        from gateway.protocols import cap
        from gateway.warning.workflow import DraftSpec

        assert self.warnings is not None
        loc = F.best(incident)
        if loc is None or loc.lat is None or loc.lon is None:
            raise AlertError("the incident has no location to warn around")
        zone = self.warnings.zones.zone_of(loc.lat, loc.lon)
        spec = DraftSpec(event=event, zones=[zone] if zone else [],
                         circles=[] if zone else [cap.Circle(lat=loc.lat, lon=loc.lon, radius_km=WARNING_RADIUS_KM)])
        try:
            record = await self.warnings.workflow.draft_for_incident(spec, incident.id)
        except GatewayError as exc:
            raise AlertError(f"draft refused: {exc}") from exc
        return str(record.id)
