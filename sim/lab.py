"""A lab on loopback: an Asterisk instance of its own on free ports, the gateway as a subprocess.

Used by the real-tier tests and the benchmarks, so both exercise exactly what an operator runs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import trio

from gateway import settings as config
from gateway.asterisk import prompts, sandbox
from gateway.errors import ConfigError, DrillError
from gateway.incident.records import Incident
from sim import responders, sipp
from sim import sipp_xml as scenario
from sim.sipp import free_port

if TYPE_CHECKING:
    from sim.providers import EscalationProviders

REPO = Path(__file__).resolve().parent.parent

CONFIG_TEMPLATE = """
[asterisk]
instance = "{instance}"
sip_port = {sip}
http_port = {ari}
ami_port = {ami}
rtp_start = {rtp}
rtp_end = {rtp_end}
ari_password = "ari-test-secret"
ami_password = "ami-test-secret"

[[services]]
name = "112"
dialled = ["112", "+7112", "8112"]

[[services]]
name = "102"
dialled = ["102", "+7102", "8102"]

[dispatch]
ring_timeout_s = {ring_timeout}
overflow_after_s = {overflow}
announce_every_s = 15
backup = "sip:backup@127.0.0.1:{backup}"
fallback_positions = {fallback}
{positions}

[ivr]
enabled = {ivr}
digit_timeout_s = 2
max_s = 6
categories = [
  {{ digit = "1", name = "crime_in_progress", priority = 8 }},
  {{ digit = "2", name = "fire", priority = 9 }},
  {{ digit = "3", name = "medical", priority = 8 }},
  {{ digit = "4", name = "gas_leak", priority = 8 }},
]

[store]
path = "{store}"

[http]
port = {http}

[warnings]
store_path = "{warnings_store}"

[location]
dereference = ["http://127.0.0.1:"]  # the drills' own location server on loopback
"""


def write_config(workdir: Path, *, positions: int = 2, ivr: bool = True, ring_timeout: float = 10,
                 overflow: float = 60, fallback_positions: int | None = None, rtp_ports: int = 2000) -> Path:
    """A config on free ports with its own Asterisk instance name and store."""
    rtp = 20000 + (free_port() % 10) * 2000
    names = [f"pos{i}" for i in range(1, positions + 1)]
    phone_port = free_port()
    blocks = "\n".join(f'[[dispatch.positions]]\nname = "{n}"\ncontact = "sip:{n}@127.0.0.1:{phone_port}"'
                       for n in names)
    fallback = names[:fallback_positions] if fallback_positions else []
    text = CONFIG_TEMPLATE.format(
        instance=f"t{os.getpid()}-{workdir.name[-6:]}".replace("_", "-"), sip=free_port(),
        ari=free_port(socket.SOCK_STREAM), ami=free_port(socket.SOCK_STREAM), rtp=rtp, rtp_end=rtp + rtp_ports,
        ring_timeout=ring_timeout, overflow=overflow, backup=free_port(), positions=blocks,
        fallback="[" + ", ".join(f'"{n}"' for n in fallback) + "]", ivr="true" if ivr else "false",
        store=workdir / "gateway.sqlite3", http=free_port(socket.SOCK_STREAM),
        warnings_store=workdir / "warnings.sqlite3",
    )
    path = workdir / "gateway.toml"
    path.write_text(text)
    config.load(path)  # fail here, loudly, rather than in a subprocess
    return path


def shipped_config(workdir: Path) -> Path:
    """config/gateway.toml with its stores in ``workdir`` and free loopback ports (Asterisk absent)."""
    text = config.project_path("config/gateway.toml").read_text()
    text = text.replace('path = "var/gateway.sqlite3"', f'path = "{workdir / "gateway.sqlite3"}"')
    text = text.replace('store_path = "var/warnings.sqlite3"', f'store_path = "{workdir / "warnings.sqlite3"}"')
    text = re.sub(r"(?m)^port = 8080$", f"port = {free_port(socket.SOCK_STREAM)}", text)
    text = re.sub(r"(?m)^(http_port|ari_port) = 8088$", rf"\1 = {free_port(socket.SOCK_STREAM)}", text)
    text = re.sub(r"(?m)^ami_port = 5038$", f"ami_port = {free_port(socket.SOCK_STREAM)}", text)
    path = workdir / "gateway.toml"
    path.write_text(text)
    return path



@dataclass
class AsteriskInstance:
    cfg: config.GatewayConfig
    path: Path

    def cli(self, command: str) -> str:
        return sandbox.cli(sandbox.locate(self.cfg), command)


def start_asterisk(path: Path) -> AsteriskInstance:
    cfg = config.load(path)
    box = sandbox.up(cfg)
    prompts.generate(box.host_dir / "sounds", offer_1402_digit=cfg.ivr.offer_1402_digit)
    return AsteriskInstance(cfg, path)


def stop_asterisk(instance: AsteriskInstance) -> None:
    sandbox.remove_instance(instance.cfg)


class GatewayProcess:
    """``gateway run`` as a child process, as an operator would run it."""

    def __init__(self, path: Path, log: Path, *, need_ari: bool = True) -> None:
        self.path = path
        self.cfg = config.load(path)
        self.log = log
        self.need_ari = need_ari  # False: ready once the API answers (warnings-only tests)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.cfg.http.certfile else 'http'}://127.0.0.1:{self.cfg.http.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What a client checks the gateway's certificate against (its own, in the tests)."""
        return ssl.create_default_context(cafile=self.cfg.http.certfile) if self.cfg.http.certfile else True

    async def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(self.path), "run"],
                                         stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            with trio.fail_after(timeout):
                while not await self.ready():
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"gateway exited ({self.proc.returncode}); see {self.log}")
                    await trio.sleep(0.1)
        except BaseException:
            self.kill()  # a gateway that never became ready must not outlive the test that started it
            raise

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=1, verify=self.verify) as client:
                reply = await client.get(self.url + "/health")
            return bool(reply.json().get("ari_connected")) or not self.need_ari
        except (httpx.HTTPError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with trio.move_on_after(5):
                while self.proc.poll() is None:
                    await trio.sleep(0.05)
            self.kill()

    def host_headers(self) -> dict[str, str]:
        """Read as the host's operator: the local key the gateway wrote beside its warnings store."""
        from gateway.web.auth import key_path

        return {"X-ECGW-Local-Key": key_path(self.cfg.warnings.store_path).read_text().strip()}

    async def incidents(self) -> list[dict[str, object]]:
        """The newest 1,000 incidents' summaries. Raises DrillError with the gateway's refusal (e.g. its store
        unreachable for the moment)."""
        async with httpx.AsyncClient(timeout=5, headers=self.host_headers()) as client:
            reply = await client.get(self.url + "/incidents?limit=1000")
        if reply.status_code != 200:
            raise DrillError(f"GET /incidents: {reply.status_code} {reply.text[:300]}")
        return reply.json()  # type: ignore[no-any-return]

    async def incident(self, incident_id: str) -> Incident:
        import msgspec

        async with httpx.AsyncClient(timeout=5, headers=self.host_headers()) as client:
            reply = await client.get(f"{self.url}/incidents/{incident_id}")
        reply.raise_for_status()
        return msgspec.json.decode(reply.content, type=Incident)

    async def wait_incident(self, call_id: str, until: str | None = None, timeout: float = 20.0) -> Incident:
        """The incident for a caller's SIP Call-ID, once it has a timeline event ``until``."""
        refused = ""
        try:
            with trio.fail_after(timeout):
                while True:
                    try:
                        for row in await self.incidents():
                            found = await self.incident(str(row["id"]))
                            if found.call_id == call_id and (until is None or any(e.kind == until
                                                                                   for e in found.timeline)):
                                return found
                    except (DrillError, httpx.HTTPStatusError) as exc:
                        refused = str(exc)  # the store away for a moment (a failover): asked again
                    await trio.sleep(0.2)
        except trio.TooSlowError:
            raise DrillError(f"no incident of call {call_id} with {until or 'any event'} within {timeout:g} s"
                             + (f"; last refusal: {refused}" if refused else "")) from None


@dataclass
class RtpStream:
    """RTP that arrived from one sender (one Asterisk channel): G.711, so one byte per sample."""

    packets: int = 0
    payload_bytes: int = 0
    first: float = 0.0
    last: float = 0.0

    @property
    def audio_s(self) -> float:
        return self.payload_bytes / 8000


def rtp_payload_len(packet: bytes) -> int:
    """Payload bytes of an RTP packet (0 for anything that is not RTP version 2)."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return 0
    header = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10 and len(packet) >= header + 4:  # header extension
        header += 4 + 4 * int.from_bytes(packet[header + 2:header + 4], "big")
    padding = packet[-1] if packet[0] & 0x20 else 0
    return max(0, len(packet) - header - padding)


@dataclass
class Residents:
    """The residents' phones behind the call-out trunk (see ``scenario.resident``)."""

    uri: str  # where the trunk sends calls: sip:127.0.0.1:<port>
    log: Path
    streams: dict[int, RtpStream] = field(default_factory=dict)  # by Asterisk's RTP source port

    def lines(self) -> list[sipp.LogLine]:
        return sipp.parse_log(sipp.read_log(self.log))

    def invites(self, number: str) -> list[sipp.LogLine]:
        return [line for line in self.lines() if line.kind == "INVITE" and line.fields.get("number") == number]

    def audio(self, number: str) -> RtpStream:
        """The audio the last call to ``number`` received (empty if none)."""
        calls = self.invites(number)
        port = calls[-1].fields.get("rtp", "") if calls else ""
        return self.streams.get(int(port), RtpStream()) if port.isdigit() else RtpStream()


async def _count_rtp(sock: trio.socket.SocketType, streams: dict[int, RtpStream]) -> None:
    while True:
        packet, (_host, port) = await sock.recvfrom(2048)
        stream = streams.setdefault(port, RtpStream(first=trio.current_time()))
        stream.packets += 1
        stream.payload_bytes += rtp_payload_len(packet)
        stream.last = trio.current_time()


@asynccontextmanager
async def residents(workdir: Path, *, reject: Mapping[str, int] | None = None, silent: Sequence[str] = (),
                    hang_up_after_ms: Mapping[str, int] | None = None, ring_ms: int = 300) -> AsyncIterator[Residents]:
    """A sipp UAS answering the call-out trunk on a free loopback port (behaviour by number, see
    ``scenario.resident``) and an RTP listener counting the audio each call received, until the
    block exits."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    port = free_port()
    xml = scenario.resident(reject=reject, silent=silent, hang_up_after_ms=hang_up_after_ms, ring_ms=ring_ms,
                            rtp_port=sock.getsockname()[1])
    uas = sipp.Uas("residents", xml, port, media_port=free_port())
    streams: dict[int, RtpStream] = {}
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_count_rtp, sock, streams)
            try:
                async with sipp.answering_sipp(workdir, [uas], "the residents' phones") as [log]:
                    yield Residents(f"sip:127.0.0.1:{port}", log, streams)
            finally:
                nursery.cancel_scope.cancel()


# --- escalation drills ------------------------------------------------------------------------------

@asynccontextmanager
async def ringing_phones(cfg: config.GatewayConfig, workdir: Path) -> AsyncIterator[sipp.Phones]:
    """Dispatcher phones (and the backup) that ring until the call is cancelled and never answer."""
    names = [p.name for p in cfg.dispatch.positions] + ["backup"]
    found = [sipp.Uas(f"ringing-{port}", scenario.resident(silent=names), port, host, media_port=free_port())
             for (host, port), _name in sipp.phone_endpoints(cfg).items()]
    async with sipp.answering_sipp(workdir, found, "a ringing dispatcher phone") as logs:
        yield sipp.Phones(workdir, logs)


class EscalationLab:
    """What an escalation drill runs beside the gateway: the stand-ins, the responders' phones and
    scripted responders (``sim.responders``), and the reports that do not come by phone."""

    def __init__(self, cfg: config.GatewayConfig, providers: EscalationProviders, scripted: list[responders.Plan],
                 workdir: Path, notes: list[str]) -> None:
        self.cfg = cfg
        self.providers = providers
        self.scripted = scripted
        self.workdir = workdir
        self.notes = notes
        self.phones: responders.ResponderPhones | None = None

    async def wait_connected(self, timeout_s: float) -> None:
        """Until the gateway has bound to the SMSC and polls both bots (noted if it does not)."""
        with trio.move_on_after(timeout_s):
            while not all(self.providers.connected().values()):
                await trio.sleep(0.1)
        missing = [name for name, ok in self.providers.connected().items() if not ok]
        if missing:
            self.notes.append(f"the gateway never reached these stand-ins within {timeout_s:g} s: "
                              f"{', '.join(missing)} (is it running with the drill's config?)")

    async def play(self, drill: Any, call_offsets: dict[str, float]) -> None:
        """Alarms, Telegram reports, SMS and AML, each at its time (seconds since this call)."""
        start = trio.current_time()
        jobs: list[tuple[float, str, Any]] = [(a.at_s, "alarm", a) for a in drill.alarms]
        jobs += [(t.at_s, "telegram", t) for t in drill.telegram_reports]
        jobs += [(m.at_s, "sms", m) for m in drill.sms]
        jobs += [(call_offsets.get(a.number, 0.0) + a.at_s, "aml", a) for a in drill.aml]
        async with trio.open_nursery() as nursery:
            for n, (at_s, kind, item) in enumerate(sorted(jobs, key=lambda j: j[0])):
                await trio.sleep_until(start + at_s)
                nursery.start_soon(self._one, n, kind, item)

    async def _one(self, n: int, kind: str, item: Any) -> None:
        try:
            if kind == "alarm":
                await self._alarm(n, item)
            elif kind == "telegram":
                await self._telegram(item)
            elif kind == "sms":
                await self._sms(item.sender, item.text, item.via)
            else:
                from sim.sms_citizen import aml_sms

                await self._sms(item.number, aml_sms(item.lat, item.lon, item.accuracy), "smsc")
        except (DrillError, LookupError, OSError, httpx.HTTPError, trio.TooSlowError) as exc:
            self.notes.append(f"{kind} #{n + 1} not delivered to the gateway: {type(exc).__name__}: {exc}")

    async def _alarm(self, n: int, a: Any) -> None:
        from sim import alarm_panel
        from sim.contact_id import panel_message

        message = panel_message(a.account, a.code, "restore" if a.restore else "new", zone=a.zone)
        result = await alarm_panel.call(self.cfg, self.workdir / f"alarm-{n + 1}", message, number=a.number)
        if result.returncode != 0:
            raise DrillError(f"panel {a.account}: sipp exit {result.returncode}, see {result.workdir}")

    async def _telegram(self, t: Any) -> None:
        from sim.telegram_citizen import Step, play

        bot = self.providers.reports_bot
        if bot is None:
            raise DrillError("[reports.telegram102] is not enabled in the gateway config")
        steps = [Step(chat_id=t.chat_id, kind="start", language_code=t.language)]
        if t.contact:
            steps.append(Step(chat_id=t.chat_id, kind="own_contact", phone=t.contact, language_code=t.language,
                              after_s=0.2))
        steps.append(Step(chat_id=t.chat_id, kind="text", text=t.text, language_code=t.language, after_s=0.2))
        if t.location is not None:
            steps.append(Step(chat_id=t.chat_id, kind="location", lat=t.location.lat, lon=t.location.lon,
                              language_code=t.language, after_s=0.2))
        await play(steps, bot.inject)

    async def _sms(self, sender: str, text: str, via: str) -> None:
        if via == "twilio":
            from sim.sms_citizen import text_via_twilio

            sms = self.cfg.reports.sms112
            url = sms.twilio_public_url or f"http://127.0.0.1:{self.cfg.http.port}{sms.twilio_path}"
            reply = await text_via_twilio(url, sms.twilio_auth_token, sender, text)
            if reply.status_code >= 300:
                raise DrillError(f"the gateway's Twilio webhook answered {reply.status_code}")
            return
        if self.providers.smsc is None:
            raise DrillError("[escalation.channels.smpp] is not configured: no SMSC to send the text through")
        statuses = await self.providers.smsc.send_mo(sender.lstrip("+"), "112", text)
        if any(statuses):
            raise DrillError(f"the gateway answered the text with SMPP status {statuses}")


@asynccontextmanager
async def escalation_lab(cfg: config.GatewayConfig, drill: Any, workdir: Path,
                         notes: list[str]) -> AsyncIterator[EscalationLab]:
    """Start the stand-ins the config points at, the responders' phones on the call-out trunk and the
    scripted responders, until the block exits. Raises DrillError for scripted people the gateway's
    directory does not have or cannot reach on their channel."""
    from gateway.scenario import people as directory_file
    from gateway.settings import project_path
    from sim.providers import open_escalation_providers

    try:
        directory = directory_file.load(project_path(cfg.escalation.responders_file))
    except ConfigError as exc:
        raise DrillError("; ".join(exc.problems)) from exc
    scripted, problems = responders.plans(drill.responders, directory)
    if problems:
        raise DrillError("; ".join(problems))
    for plan in scripted:
        first = directory.people[plan.person].channels[:1]
        if first != [plan.channel]:
            notes.append(f"{plan.person} is scripted on {plan.channel} but the gateway's directory reaches them on "
                         f"{','.join(directory.people[plan.person].channels)} first (write the config with "
                         "`gateway-sim drill-config`)")
    async with open_escalation_providers(cfg) as providers, AsyncExitStack() as stack:
        lab = EscalationLab(cfg, providers, scripted, workdir, notes)
        voice = cfg.escalation.channels.voice
        if voice is not None:
            trunk = urlsplit(voice.trunk_uri.replace("sip:", "sip://", 1))
            if trunk.hostname not in ("127.0.0.1", "localhost") or not trunk.port:
                raise DrillError(f"escalation.channels.voice.trunk_uri {voice.trunk_uri}: responders' phones "
                                 "run on 127.0.0.1 with an explicit port only")
            lab.phones = await stack.enter_async_context(
                responders.responder_phones(workdir / "voice", trunk.port, scripted))
        async with trio.open_nursery() as nursery:
            for plan in scripted:
                if plan.channel == "telegram" and providers.responders_bot is not None:
                    nursery.start_soon(responders.telegram_responder, providers.responders_bot, plan)
                elif plan.channel == "sms" and providers.smsc is not None:
                    nursery.start_soon(responders.sms_responder, providers.smsc, plan)
                elif plan.channel != "voice" or voice is None:
                    notes.append(f"{plan.person}: the gateway config has no responders' {plan.channel} channel")
            yield lab
            nursery.cancel_scope.cancel()
