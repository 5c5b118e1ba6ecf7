"""A drill's warning phase: the ``[warning]`` table of a drill file.

    [warning]
    event = "flood"                       # alert_templates/<event>.toml
    zones = ["medeu", "almaly"]
    channels = ["sms", "email", "telegram"]
    status = "Exercise"                   # the only status a drill sends: anything else is refused
    recipients = 60                       # generate this many drill recipients (refs drill-00001...) into the
                                          # gateway's list for the phase (taken out again after it; an
                                          # Actual alert must never reach them); 0: whoever the list has
    at_s = 5                              # seconds into the drill
    # drafted_by = "aigerim"              # default: the first civil-defence officer of [warnings] users
    # approved_by = "daniyar"             # default: the next one (a second, different officer)
    timeout_s = 60                        # progress is sampled until the alert is sent, at most this long

During the drill one officer drafts the Exercise alert through the gateway's API, a second approves and
sends it (the host's local key names them, as the gateway CLI does), and the alert's progress stream is
sampled into a per-channel delivery curve (``sim.delivery``). Exercises go to the ``[warnings.drill]``
channels only; their stand-ins (``sim.providers``) are started here unless something already serves
their ports (``gateway-sim providers`` under ``make run``, or the escalation lab's SMSC).
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from gateway.errors import DrillError
from gateway.settings import Base, GatewayConfig
from gateway.settings.warnings import ChannelSet
from sim.delivery import DeliveryReport, Sample, channel_curves

KINDS = ("sms", "email", "telegram")  # what the drill's stand-ins receive
LANGUAGES = ("kk", "ru", "en")
FINAL_STATES = ("sent", "cancelled", "superseded")
REF_PREFIX = "drill-"  # the generated recipients' refs
CLEAN_UP = 8  # deletions of generated recipients at once
READY_S = 70.0  # the gateway re-opens a channel whose provider was down with a back-off of at most 60 s


class WarningPhase(Base, frozen=True):
    event: str
    zones: list[str] = []
    channels: list[str] = msgspec.field(default_factory=lambda: list(KINDS))
    status: str = "Exercise"
    recipients: int = 0
    at_s: float = 0.0
    drafted_by: str = ""
    approved_by: str = ""
    timeout_s: float = 60.0


def problems(w: WarningPhase) -> list[str]:
    """Checks of the ``[warning]`` table, as 'warning.key: what is wrong'."""
    p = []
    if w.status != "Exercise":
        p.append(f'warning.status: a drill sends "Exercise" alerts only, got {w.status!r} (an Actual alert would '
                 "warn the public, a Test one would go out on the real channels' behalf)")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", w.event):
        p.append(f"warning.event: expected an event name like \"flood\" (alert_templates/<event>.toml), "
                 f"got {w.event!r}")
    if not w.zones:
        p.append("warning.zones: expected at least one zone of config/zones.toml")
    bad = [c for c in w.channels if c not in KINDS]
    if bad or not w.channels:
        p.append(f"warning.channels: expected some of {', '.join(KINDS)} (what the drill's stand-ins receive), "
                 f"got {bad or 'none'}")
    if not 0 <= w.recipients <= 100_000:
        p.append(f"warning.recipients: expected 0-100000 recipients to generate, got {w.recipients}")
    if not (math.isfinite(w.at_s) and 0 <= w.at_s <= 3600):
        p.append(f"warning.at_s: expected 0-3600 seconds, got {w.at_s}")
    if not (math.isfinite(w.timeout_s) and 1 <= w.timeout_s <= 3600):
        p.append(f"warning.timeout_s: expected 1-3600 seconds, got {w.timeout_s}")
    if w.drafted_by and w.drafted_by == w.approved_by:
        p.append("warning.approved_by: a second, different officer approves what another drafted")
    return p


def officers(cfg: GatewayConfig, w: WarningPhase) -> tuple[str, str]:
    """Who drafts and who approves. Raises DrillError when there are not two."""
    civil = [u.name for u in cfg.warnings.users if "civil-defence" in u.roles]
    drafter = w.drafted_by or (civil[0] if civil else "")
    approver = w.approved_by or next((name for name in civil if name != drafter), "")
    if not drafter or not approver:
        raise DrillError("warning: needs two civil-defence officers: name them as drafted_by and approved_by, or "
                         "list two in the gateway config's [[warnings.users]]")
    return drafter, approver


def recipients_csv(w: WarningPhase) -> str:
    """``w.recipients`` drill recipients in the phase's zones, their first channel taking turns."""
    rows = ["ref,name,phone,email,telegram,language,zones,channels"]
    for i in range(w.recipients):
        first = w.channels[i % len(w.channels)]
        order = [first, *(c for c in w.channels if c != first)]
        rows.append(f"{REF_PREFIX}{i + 1:05d},Drill {i + 1},+7700{i:07d},drill{i + 1}@example.kz,{800_000_000 + i},"
                    f"{LANGUAGES[i % 3]},{';'.join(w.zones)},{';'.join(order)}")
    return "\n".join(rows) + "\n"


def needed(channels: ChannelSet, w: WarningPhase) -> dict[str, tuple[str | None, int | None]]:
    """The drill channels the phase sends through: name -> (host, port). Raises DrillError for a missing one."""
    found: dict[str, tuple[str | None, int | None]] = {}
    if "sms" in w.channels and channels.smpp:
        found["smpp"] = (channels.smpp.host, channels.smpp.port)
    if "sms" in w.channels and channels.twilio:
        url = urlsplit(channels.twilio.api_base_url)
        found["twilio"] = (url.hostname, url.port)
    if "email" in w.channels and channels.email:
        found["email"] = (channels.email.host, channels.email.port)
    if "telegram" in w.channels and channels.telegram:
        url = urlsplit(channels.telegram.api_base_url)
        found["telegram"] = (url.hostname, url.port)
    kinds = {"smpp": "sms", "twilio": "sms", "email": "email", "telegram": "telegram"}
    missing = sorted(set(w.channels) - {kinds[name] for name in found})
    if missing:
        raise DrillError(f"warning.channels: the gateway config has no drill channel for {', '.join(missing)} "
                         "([warnings.drill.smpp] / .twilio for sms, .email, .telegram): exercises go nowhere else")
    return found


async def served(host: str | None, port: int | None) -> bool:
    """Whether something already listens there (a stand-in someone else runs)."""
    if not port:
        return False
    with trio.move_on_after(2):
        try:
            stream = await trio.open_tcp_stream(host or "127.0.0.1", port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


class WarningRun:
    """Drafts, approves and sends the phase's alert and samples its delivery; ``result`` once played."""

    def __init__(self, cfg: GatewayConfig, w: WarningPhase, drafter: str, approver: str, keys: list[str],
                 notes: list[str]) -> None:
        self.cfg, self.w, self.notes = cfg, w, notes
        self.drafter, self.approver = drafter, approver
        self.keys = keys  # the gateway's drill channel keys to wait for ("drill:smpp", ...)
        self.result: DeliveryReport | None = None

    def client(self) -> httpx.AsyncClient:
        from gateway.web.auth import key_path

        http = self.cfg.http
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=http.certfile) if http.certfile else True
        key = key_path(self.cfg.warnings.store_path).read_text().strip()
        return httpx.AsyncClient(base_url=f"{'https' if http.certfile else 'http'}://127.0.0.1:{http.port}",
                                 verify=verify, headers={"X-ECGW-Local-Key": key},
                                 timeout=httpx.Timeout(10.0, read=30.0))

    async def play(self, start: float) -> None:
        """At ``at_s`` after ``start`` (Trio's clock): the alert, sampled until sent. Problems become notes."""
        try:
            async with self.client() as http:
                await self.wait_channels(http)
                await trio.sleep_until(start + self.w.at_s)
                try:
                    if self.w.recipients:
                        await self.import_recipients(http)
                    self.result = await self.send_and_sample(http, start)
                finally:
                    if self.w.recipients:
                        with trio.CancelScope(shield=True):
                            await self.remove_recipients(http)
        except (OSError, httpx.HTTPError, DrillError, ValueError, KeyError) as exc:
            self.notes.append(f"warning phase: {type(exc).__name__}: {exc}")

    async def wait_channels(self, http: httpx.AsyncClient) -> None:
        states: dict[str, str] = {}
        with trio.move_on_after(READY_S):
            while True:
                states = (await http.get("/health")).json().get("warning_channels", {})
                if all(states.get(key) == "up" for key in self.keys):
                    return
                await trio.sleep(0.5)
        self.notes.append(f"warning phase: the gateway's drill channels were not all up after {READY_S:g} s: "
                          f"{states}")

    async def import_recipients(self, http: httpx.AsyncClient) -> None:
        reply = await http.post("/recipients", content=recipients_csv(self.w).encode(), headers=self.acting(False))
        answer = _checked(reply, "import the drill recipients")
        if answer.get("errors"):
            raise DrillError(f"the gateway refused drill recipients: {answer['errors'][:3]}")

    async def remove_recipients(self, http: httpx.AsyncClient, timeout_s: float = 60.0) -> None:
        """Take the generated recipients out of the gateway's list again (noted if some stay)."""
        refs = [f"{REF_PREFIX}{i + 1:05d}" for i in range(self.w.recipients)]
        removed: set[str] = set()
        slots = trio.Semaphore(CLEAN_UP)

        async def remove(ref: str) -> None:
            async with slots:
                try:
                    reply = await http.delete(f"/recipients/{ref}", headers=self.acting(False))
                except httpx.HTTPError:
                    return
                if reply.status_code in (204, 404):
                    removed.add(ref)
        with trio.move_on_after(timeout_s):
            async with trio.open_nursery() as nursery:
                for ref in refs:
                    nursery.start_soon(remove, ref)
        left = [ref for ref in refs if ref not in removed]
        if left:
            self.notes.append(f"warning phase: {len(left)} generated recipients are still in the gateway's list "
                              f"(refs {REF_PREFIX}*, e.g. {left[0]}): delete them before an Actual alert")

    def acting(self, approver: bool) -> dict[str, str]:
        return {"X-ECGW-User": self.approver if approver else self.drafter}

    async def send_and_sample(self, http: httpx.AsyncClient, start: float) -> DeliveryReport:
        w = self.w
        body = {"event": w.event, "status": w.status, "zones": w.zones, "channels": w.channels,
                "note": "drill warning phase"}
        alert_id = str(_checked(await http.post("/alerts", json=body, headers=self.acting(False)), "draft")["id"])
        samples: list[Sample] = []
        last: Mapping[str, Any] = {}
        sent_at = trio.current_time()
        async with http.stream("GET", f"/alerts/{alert_id}/progress") as stream:
            lines = stream.aiter_lines()
            await _next_event(lines)  # subscribed (the draft as it stands): no tick is missed from here on
            sent_at = trio.current_time()
            await self.approve(http, alert_id)
            with trio.move_on_after(w.timeout_s) as scope:
                while (event := await _next_event(lines)) is not None:
                    last = event
                    samples.append((trio.current_time() - sent_at, event.get("channels") or {}))
                    if event.get("state") in FINAL_STATES:
                        break
            if scope.cancelled_caught:
                self.notes.append(f"warning phase: alert {alert_id} not sent after {w.timeout_s:g} s")
        final = _checked(await http.get(f"/alerts/{alert_id}/status"), "read the alert's status")
        samples.append((trio.current_time() - sent_at, final.get("channels") or {}))
        return DeliveryReport(
            alert_id=alert_id, event=w.event, status=w.status, zones=list(w.zones), drafted_by=self.drafter,
            approved_by=self.approver, recipients_generated=w.recipients,
            targeted=int(final.get("targeted") or last.get("targeted") or 0), state=str(final.get("state", "")),
            sent_after_s=round(sent_at - start, 3), channels=channel_curves(samples))

    async def approve(self, http: httpx.AsyncClient, alert_id: str) -> None:
        reply = await http.post(f"/alerts/{alert_id}/approve", json={"send": True}, headers=self.acting(True))
        _checked(reply, "approve and send")


def _checked(reply: httpx.Response, what: str) -> dict[str, Any]:
    if reply.status_code >= 300:
        raise DrillError(f"could not {what}: the gateway answered {reply.status_code}: {reply.text[:300]}")
    found = reply.json()
    if not isinstance(found, dict):
        raise DrillError(f"could not {what}: unexpected answer {reply.text[:300]}")
    return found


async def _next_event(lines: AsyncIterator[str]) -> dict[str, Any] | None:
    """The next ``data:`` of a server-sent event stream (None at its end)."""
    async for line in lines:
        if line.startswith("data: "):
            found = msgspec.json.decode(line[6:])
            return found if isinstance(found, dict) else {}
    return None


@asynccontextmanager
async def warning_phase(cfg: GatewayConfig, w: WarningPhase, notes: list[str]) -> AsyncIterator[WarningRun]:
    """The stand-ins of the drill channels the phase needs (those nobody serves yet) until the block exits.
    Raises DrillError when the config cannot run the phase (no officers, no drill channel, not loopback)."""
    from sim.providers import open_providers

    if not cfg.warnings.enabled:
        raise DrillError("warning: [warnings] is disabled in the gateway config")
    drafter, approver = officers(cfg, w)
    drill = cfg.warnings.drill
    channels = needed(drill, w)
    running = [name for name, (host, port) in channels.items() if await served(host, port)]
    ours = msgspec.structs.replace(drill, voice=None, siren_lines=[],
                                   **{name: None for name in ("smpp", "twilio", "email", "telegram")
                                      if name in running or name not in channels})
    async with open_providers(ours):
        yield WarningRun(cfg, w, drafter, approver, [f"drill:{name}" for name in channels], notes)
