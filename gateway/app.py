"""The gateway service: one nursery owning the store writer, ARI intake, AMI monitor and HTTP API."""

from __future__ import annotations

import logging

import trio
from starlette.routing import BaseRoute

from gateway.asterisk import ami, ari
from gateway.asterisk.sandbox import locate
from gateway.cli.alerts import key_path
from gateway.errors import AriError
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.recorder import Recorder
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.calls import Intake
from gateway.metrics import Metrics
from gateway.operations import Operations
from gateway.settings import GatewayConfig
from gateway.warning.centre import Warnings
from gateway.web.app import Health, build_app, run_server
from gateway.web.warnings import WarningsApi

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.bus = Bus()
        self.store = AsyncStore(SqliteStore(cfg.store.path))
        self.recorder = Recorder(self.store, self.bus)
        self.intake = Intake(cfg, self.store, self.recorder, self.metrics,
                             prompts_dir=f"{locate(cfg).inside_dir}/sounds")
        self.asterisk = ami.AsteriskHealth()
        self.ari_connected = False
        self.http_addresses: list[str] = []
        self.warnings = Warnings(cfg.warnings, sounds_dir=locate(cfg).host_dir / "sounds") \
            if cfg.warnings.enabled else None
        self.desk = Desk(self.store, self.recorder)
        self.operations = Operations(cfg, self.desk, self.warnings, sounds_dir=locate(cfg).host_dir / "sounds",
                                 spool_dir=locate(cfg).host_dir / "spool")

    def health(self) -> Health:
        ok = self.ari_connected and self.asterisk.fully_booted
        return Health(
            status="ok" if ok else "degraded", ari_connected=self.ari_connected,
            ami_connected=self.asterisk.connected, asterisk_fully_booted=self.asterisk.fully_booted,
            asterisk_channels=self.asterisk.channels, queue_length=len(self.intake.dispatcher.queue),
            active_calls=len(self.intake.calls), positions=dict(self.intake.dispatcher.board.snapshot()), store="ok",
            warning_channels=self.warnings.channel_states() if self.warnings else {},
            **self.operations.health(),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. ``started()`` once the HTTP API listens and ARI is registered."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.store.run)
            routes: list[BaseRoute] = []
            if self.warnings is not None:
                await nursery.start(self.warnings.run)
                routes += WarningsApi(self.warnings, key_path(self.cfg.warnings.store_path)).routes()
            routes += await self.operations.start(nursery)
            app = build_app(self.store, self.bus, self.metrics, self.health, routes)
            self.http_addresses = await nursery.start(run_server, app, self.cfg.http.host, self.cfg.http.port)
            await nursery.start(ami.monitor, self.cfg.asterisk, self.asterisk, self.metrics)
            await nursery.start(self._ari_forever)
            log.info("gateway ready: HTTP %s, Stasis app %r", ", ".join(self.http_addresses), self.cfg.asterisk.app)
            task_status.started()

    async def _ari_forever(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the Stasis app registered; reconnect with backoff whenever Asterisk goes away."""
        backoff, started = 0.2, False
        while True:
            try:
                async with ari.connect(self.cfg.asterisk) as connection:
                    self.ari_connected, backoff = True, 0.2
                    self.metrics.ari_connected.set(1)
                    await self._session(connection, task_status=task_status if not started else
                                        trio.TASK_STATUS_IGNORED)
                    started = True
                log.warning("ARI connection lost; reconnecting")
            except* AriError as group:
                log.warning("ARI unavailable: %s; retrying in %.1f s", group.exceptions[0], backoff)
            finally:
                self.ari_connected = False
                self.metrics.ari_connected.set(0)
            if not started:  # report readiness even while Asterisk is away: the API is up
                task_status.started()
                started = True
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

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
