"""The composition root: the gateway service, one nursery owning every long-lived part.

Read top to bottom it is the flow: the incident store and its one writer; call intake on ARI (with
the AMI monitor); the response side (units, response scenarios, alarm panels, the Telegram 102 bot,
SMS to 112), all writing incidents through the desk; public warnings; and one HTTP application
carrying every part's routes. A part of the response side that crashes is restarted on its own
(``isolated``): it must never take 112 intake down with it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
from starlette.routing import BaseRoute

from gateway.asterisk import ami, ari
from gateway.asterisk.dialplan import CEL_LOG, is_loopback
from gateway.asterisk.sandbox import locate
from gateway.errors import AlertError, AriError, ChannelError, GatewayError
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.nodes import PERIOD_S, Nodes, NodeState
from gateway.incident.recorder import Recorder
from gateway.incident.recording_index import RecordingIndex
from gateway.incident.records import Incident
from gateway.incident.remote import RemoteChanges
from gateway.incident.spool import Spooled, replay_forever
from gateway.incident.store import AsyncStore
from gateway.intake.calls import Intake
from gateway.intake.fallback import FallbackCalls
from gateway.intake.lost_calls import LostCalls
from gateway.intake.recordings import Recordings
from gateway.metrics import Metrics
from gateway.protocols.cap import Circle
from gateway.scenario import facts as F
from gateway.scenario.leases import node_name
from gateway.settings import GatewayConfig, project_path
from gateway.stores import open_accounts, open_incident_store, open_units_db, open_warnings_store
from gateway.warning.centre import Warnings
from gateway.warning.workflow import DraftSpec
from gateway.web.app import build_app
from gateway.web.auth import Auth, key_path, local_key
from gateway.web.callbacks import CallbackRoutes
from gateway.web.console import PMTILES_URL, console_routes
from gateway.web.drills import DrillRoutes
from gateway.web.health import Health, health_routes
from gateway.web.incidents import incident_routes
from gateway.web.people import PeopleRoutes
from gateway.web.recordings import RecordingRoutes
from gateway.web.server import run_server
from gateway.web.warnings import WarningsApi
from gateway.web.webhooks import AlarmRoutes, Sms112Routes

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


def _reasons(report: Health) -> list[str]:
    """Everything that keeps the gateway from doing its whole job: a configured channel that is down
    means a warning or a responder's notification would not go out now."""
    reasons = [] if report.ari_connected else ["ARI: not connected (calls ring the dispatchers directly)"]
    if not report.asterisk_fully_booted:
        reasons.append("Asterisk: not fully booted")
    if report.other_nodes.startswith("reconnecting"):
        reasons.append(f"other nodes' incident changes: {report.other_nodes} (this node's consoles miss them)")
    channels = {**report.warning_channels, **report.responder_channels}
    return reasons + [f"channel {name}: {state}" for name, state in sorted(channels.items()) if state != "up"]


class Gateway:
    def __init__(self, cfg: GatewayConfig, config_path: str = "") -> None:
        """``config_path``: the file ``cfg`` came from (drills run the simulator against it); none: no drills."""
        self.cfg = cfg
        self.config_path = config_path
        box = locate(cfg)
        self.sounds_dir, self.spool_dir = box.host_dir / "sounds", box.host_dir / "spool"
        self.metrics = Metrics()
        self.bus = Bus()
        # [store] backend: SQLite or PostgreSQL
        self.store = AsyncStore(open_incident_store(cfg.store), cfg.store.commit_window_s)
        self.recorder = Recorder(self.store, self.bus)
        self.desk = Desk(self.store, self.recorder)
        # Two nodes on one PostgreSQL: the other's incident changes reach this node's consoles (LISTEN/NOTIFY).
        self.remote = RemoteChanges(cfg.store.dsn, self.store, self.bus, recorder=self.recorder) \
            if cfg.store.backend == "postgresql" else None
        # What each node holds (calls, queue, scenario runs), for /health and the supervisors' board.
        # This node's name in its row, the scenario runs' leases and the warnings outbox's claims.
        self.node_id = node_name(cfg.cluster.node_id, shared=cfg.store.backend == "postgresql")
        self.nodes = Nodes(self.store, self.node_id, period_s=min(PERIOD_S, cfg.cluster.lease_s / 2))
        self.intake = Intake(cfg, self.store, self.recorder, self.metrics, prompts_dir=f"{box.inside_dir}/sounds")
        self.asterisk = ami.AsteriskHealth()
        self.ari_connected = False
        self.http_addresses: list[str] = []
        self.accounts = open_accounts(cfg.store, idle_s=cfg.people.idle_timeout_s,
                                      lock_after=cfg.people.lockout_after, lock_for_s=cfg.people.lockout_s)
        officers = [(u.name, [str(r) for r in u.roles], u.token_sha256) for u in cfg.warnings.users]
        for name in self.accounts.adopt(officers):
            log.info("officer %r from [[warnings.users]] is now an account (gateway users reset %s to log in)",
                     name, name)
        self.auth = Auth(self.accounts, local_key(key_path(cfg.warnings.store_path)))
        self.warnings = Warnings(cfg.warnings, sounds_dir=self.sounds_dir, users=self.accounts.roles(),
                                 store=open_warnings_store(cfg.store, cfg.warnings.store_path, self.node_id),
                                 lease_s=cfg.cluster.lease_s) if cfg.warnings.enabled else None
        # Asterisk records (MixMonitor in the dialplan); the gateway indexes, serves and purges.
        self.recordings = Recordings(cfg.recordings, box.host_dir / cfg.recordings.dir, RecordingIndex(self.store),
                                     self.recorder, self.accounts.audit) if cfg.recordings.enabled else None
        # Calls the fallback dialplan served while the gateway was down: registered from Asterisk's CEL log.
        self.fallback = FallbackCalls(cfg, box.host_dir / CEL_LOG, self.store, self.recorder, self.metrics,
                                      instance_dir=box.host_dir)
        self.board: Any = None
        self.escalation: Any = None
        self.alarms: Any = None
        self.telegram102: Any = None
        self.sms112: Any = None

    def health(self) -> Health:
        report = Health(
            status="ok", ari_connected=self.ari_connected,
            ami_connected=self.asterisk.connected, asterisk_fully_booted=self.asterisk.fully_booted,
            asterisk_channels=self.asterisk.channels, queue_length=len(self.intake.dispatcher.queue),
            active_calls=len(self.intake.calls), positions=dict(self.intake.dispatcher.board.snapshot()), store="ok",
            warning_channels=self.warnings.channel_states() if self.warnings else {})
        if self.escalation is not None:
            report.responder_channels = self.escalation.channel_states()
            report.scenario_runs = sum(1 for r in self.escalation.engine.runs.values() if r.phase != "done")
            report.sla_breaches = self.escalation.triggers.breaches
        if self.remote is not None:
            report.other_nodes = self.remote.health()
        report.nodes = self.nodes.known()
        if self.alarms is not None:
            report.alarm_sites = {k: v.last_test_wall for k, v in self.alarms.site_health().items()}
        spooled = self.store.sync.problems() if isinstance(self.store.sync, Spooled) else []
        recordings = self.recordings.problems if self.recordings is not None else []
        report.reasons = _reasons(report) + spooled + recordings + self.fallback.problems
        report.status = "degraded" if report.reasons else "ok"
        return report

    def _node_state(self) -> NodeState:
        """This node as its row in ``cluster_nodes`` says it (``incident.nodes``)."""
        report = self.health()
        return NodeState(node=self.nodes.node_id, started_wall=self.nodes.started_wall, seen_wall=time.time(),
                         status=report.status, active_calls=report.active_calls, queue_length=report.queue_length,
                         scenario_runs=report.scenario_runs)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. ``started()`` once the HTTP API listens and ARI is registered."""
        async with trio.open_nursery() as nursery:
            if isinstance(spool := self.store.sync, Spooled):  # PostgreSQL away: this node's spool, replayed later
                await nursery.start(isolated, "store spool", functools.partial(replay_forever, self.store, spool))
            if self.remote is not None:
                await nursery.start(isolated, "other nodes' incident changes", self.remote.run)
            await nursery.start(isolated, "node state", functools.partial(self.nodes.run, self._node_state))
            if self.remote is not None:  # several nodes: the calls a dead one had are closed and called back
                lost = LostCalls(self.store, self.recorder, self.nodes, callbacks=self.cfg.callback.enabled)
                await nursery.start(isolated, "lost nodes' calls", lost.run)
            routes: list[BaseRoute] = [
                *incident_routes(self.store, self.bus, self.auth),
                *health_routes(self.store, self.metrics, self.health, self.auth,
                               open_to_all=is_loopback(self.cfg.http.host),
                               answer_sla_s=self.cfg.escalation.answer_sla_s),
                *PeopleRoutes(self.accounts, self.auth, secure_cookies=bool(self.cfg.http.certfile),
                              tile_url=self.cfg.http.tile_url,
                              pmtiles_url=PMTILES_URL if self.cfg.http.pmtiles else "").routes(),
                *console_routes(project_path(self.cfg.http.pmtiles) if self.cfg.http.pmtiles else None),
                *CallbackRoutes(self.intake.callbacks, self.auth).routes()]
            if self.recordings is not None:
                await nursery.start(isolated, "recordings", self.recordings.run)
                await nursery.start(isolated, "recordings purge", self.recordings.purge_daily)  # daily, audited
                routes += RecordingRoutes(self.recordings, self.auth).routes()
            if self.warnings is not None:  # restarted if its store fails (PostgreSQL away): never the intake with it
                await nursery.start(isolated, "warnings", self.warnings.run)
                routes += WarningsApi(self.warnings, self.auth).routes()
            routes += await self._start_response_side(nursery)
            # After the listeners (recordings, scenario triggers) are in place: on start, then every 10 s.
            await nursery.start(isolated, "fallback calls", self.fallback.run)
            if self.config_path:
                drills = Path(self.cfg.store.path).parent / "drills"
                routes += DrillRoutes(self.auth, self.config_path, drills, nursery).routes()
            tiles = urlsplit(self.cfg.http.tile_url)
            app = build_app(routes, images_from=f"{tiles.scheme}://{tiles.netloc}" if tiles.netloc else "")
            self.http_addresses = await nursery.start(run_server, app, self.cfg.http.host, self.cfg.http.port,
                                                      self.cfg.http.certfile, self.cfg.http.keyfile)
            # Only /health and /metrics read AMI: a bug there (panoramisk's callbacks raise out of trio-asyncio's
            # loop) restarts the monitor, never takes the intake down.
            await nursery.start(isolated, "AMI monitor",
                                functools.partial(ami.monitor, self.cfg.asterisk, self.asterisk, self.metrics))
            await nursery.start(self._ari_forever)
            log.info("gateway ready: HTTP %s, Stasis app %r", ", ".join(self.http_addresses), self.cfg.asterisk.app)
            task_status.started()

    # --- call intake --------------------------------------------------------------------------

    async def _ari_forever(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the Stasis app registered; reconnect with backoff whenever Asterisk goes away (0.2 s doubling to
        5 s: calls meanwhile go to the fallback dialplan), saying so once, not at every try."""
        retries, started = ami.Retries(0.2, 5.0, what="ARI", logger=log), False
        while True:
            try:
                async with ari.connect(self.cfg.asterisk) as connection:
                    self.ari_connected = True
                    retries.up(trio.current_time())
                    self.metrics.ari_connected.set(1)
                    await self._session(connection, task_status=task_status if not started else
                                        trio.TASK_STATUS_IGNORED)
                    started = True
                log.warning("ARI connection lost; reconnecting")
                wait = retries.first_s
            except* AriError as group:
                wait = retries.failed(group.exceptions[0], trio.current_time())
            finally:
                self.ari_connected = False
                self.metrics.ari_connected.set(0)
            if not started:  # report readiness even while Asterisk is away: the API is up
                task_status.started()
                started = True
            await trio.sleep(wait)

    async def _session(self, connection: ari.Ari,
                       *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One ARI connection: the intake plus a watchdog. Returns when either ends."""
        async with trio.open_nursery() as nursery:

            async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                await self.intake.serve(connection, task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(serve)
            task_status.started()
            await self._watch(connection)
            nursery.cancel_scope.cancel()

    @staticmethod
    async def _watch(connection: ari.Ari, every_s: float = 1.0) -> None:
        """Return when ARI stops answering or no longer knows our app.

        A dead Asterisk does not always close the websocket, and one restarted within a second
        answers pings while our app is no longer registered there.
        """
        while True:
            await trio.sleep(every_s)
            try:
                with trio.fail_after(every_s * 3):
                    await connection.check_registered()
            except (AriError, trio.TooSlowError) as exc:
                log.warning("ARI ping failed (%r): dropping the connection", exc)
                return

    # --- the response side ----------------------------------------------------------------------

    async def _start_response_side(self, nursery: trio.Nursery) -> list[BaseRoute]:
        """Build and start every enabled part of the response side; return their HTTP routes."""
        cfg = self.cfg
        routes: list[BaseRoute] = []
        if cfg.units.enabled:
            routes += await self._start_units(nursery)
        if cfg.escalation.enabled:
            await self._start_escalation(nursery)
        if cfg.alarm.enabled:
            routes += await self._start_alarms(nursery)
        if cfg.reports.telegram102.enabled:
            from gateway.intake.text.telegram102 import Telegram102

            self.telegram102 = Telegram102(cfg.reports.telegram102, self.desk, self.recorder)
            await nursery.start(isolated, "Telegram 102", self.telegram102.run)
        if cfg.reports.sms112.enabled:
            from gateway.intake.text.sms112 import Sms112

            self.sms112 = Sms112(cfg.reports.sms112, self.desk, self._send_sms,
                                 self.escalation.sms_reply if self.escalation is not None else None)
            await nursery.start(isolated, "SMS 112", self.sms112.run)
            routes += Sms112Routes(self.sms112).routes()
        if self.escalation is not None:
            routes += self._escalation_routes()
        return routes

    async def _start_units(self, nursery: trio.Nursery) -> list[BaseRoute]:
        from gateway.units.board import UnitBoard
        from gateway.web.units import UnitRoutes

        self.board = UnitBoard(self.cfg.units, self.desk, open_units_db(self.cfg.store))
        await nursery.start(isolated, "units", self.board.run)
        return list(UnitRoutes(self.board, self.auth).routes())

    async def _start_escalation(self, nursery: trio.Nursery) -> None:
        from gateway.scenario.escalation import Escalation

        events = frozenset(self.warnings.renderer.catalogue.events()) if self.warnings else frozenset()
        kinds = frozenset(self.board.kinds) if self.board is not None else frozenset()
        node = self.node_id
        self.escalation = Escalation(self.cfg.escalation, self.recorder, unit_kinds=kinds,
                                     warning_events=events, sounds_dir=self.sounds_dir, node_id=node,
                                     lease_s=self.cfg.cluster.lease_s)
        self.escalation.on_inbound_sms = self._inbound_sms
        self.escalation.use(zone_of=self.warnings.zones.zone_of if self.warnings else None, board=self.board,
                            drafter=self._draft_warning if self.warnings else None)
        await nursery.start(isolated, "escalation", self.escalation.run)

    async def _start_alarms(self, nursery: trio.Nursery) -> list[BaseRoute]:
        from gateway.intake.alarm.panels import AlarmIntake

        self.alarms = AlarmIntake(self.cfg.alarm, self.desk, self.spool_dir / self.cfg.alarm.spool_subdir)
        await nursery.start(isolated, "alarm panels", self.alarms.run)
        if self.escalation is not None:
            self.escalation.engine.dynamic_people["site_contacts"] = self._site_contacts
        return list(AlarmRoutes(self.alarms).routes())

    def _escalation_routes(self) -> list[BaseRoute]:
        from gateway.web.scenario import EscalationApi

        replies: dict[str, Any] = {}
        if self.telegram102 is not None:
            replies["tg"] = self.telegram102.reply
        if self.sms112 is not None:
            replies["sms"] = self._sms_reply
        return list(EscalationApi(self.escalation.engine, self.desk, self.auth, replies, self.cfg.ani).routes())

    async def _sms_reply(self, incident_id: str, text: str, actor: str) -> object:
        outcome = await self.sms112.reply(incident_id, text, actor)
        if not outcome.ok:
            raise ChannelError(f"the SMS was not sent: {outcome.error}")
        return outcome

    async def _inbound_sms(self, sender: str, text: str, seen_key: str = "") -> None:
        """A text to our SMPP number: a report to 112, or a responder's acknowledgement."""
        if self.sms112 is not None:
            await self.sms112.handle_text(sender, text, "smpp", seen_key)
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
        assert self.warnings is not None
        loc = F.best(incident)
        if loc is None or loc.lat is None or loc.lon is None:
            raise AlertError("the incident has no location to warn around")
        zone = self.warnings.zones.zone_of(loc.lat, loc.lon)
        spec = DraftSpec(event=event, zones=[zone] if zone else [],
                         circles=[] if zone else [Circle(lat=loc.lat, lon=loc.lon, radius_km=WARNING_RADIUS_KM)])
        try:
            record = await self.warnings.workflow.draft_for_incident(spec, incident.id)
        except GatewayError as exc:
            raise AlertError(f"draft refused: {exc}") from exc
        return str(record.id)
