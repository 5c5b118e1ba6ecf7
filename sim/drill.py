"""Drill files and the drill runner.

A drill file (TOML) has an ``[arrival]`` table and ``[[callers]]`` templates:

    [arrival]
    count = 20            # calls to place (default: one per template)
    rate_per_s = 0.5      # new calls per second
    max_concurrency = 10  # calls in progress at once
    call_timeout_s = 120  # a sipp caller still running after this is stopped

    [[callers]]
    label = "almaty-police"
    number = "+77011234567"      # absent or "withheld": a withheld caller
    display_name = "Иван"
    service = "112"              # what the caller dials: "112", "102", "+7112", ...
    dtmf = "21"                  # keys pressed after the answer (language, then category)
    location = { lat = 43.2389, lon = 76.8897, radius = 30 }   # Circle; Point without radius
    # pidf_lo = '''<presence ...>'''   raw PIDF-LO instead of location
    talk_s = 8                   # caller hangs up this long after the answer
    # hangup_after_s = 1.5       # early hang-up: overrides talk_s
    # silence = true             # no DTMF at all (IVR timeouts)
    weight = 1                   # share of the calls beyond one per template

The runner places the calls with sipp while answering dispatcher phones run, then reads the
incidents the gateway stored and leaves the figures to ``sim.report`` (pure).

Escalation drills add ``[[alarms]]`` (a school panel calling Asterisk's AlarmReceiver),
``[[telegram_reports]]`` (citizens writing to the 102 bot), ``[[sms]]`` (texts to 112), ``[[aml]]``
(a handset's AML SMS after its call) and ``[[responders]]`` (people of the responders directory
acknowledging after N s, never, or on the second call), ``[phones] answer = false`` (nobody answers:
answer-time SLA breaches) and ``[escalation]`` (the settings ``gateway-sim drill-config`` writes into
the gateway config for the drill). ``sim/drills/escalation.toml`` shows every key.

A ``[warning]`` table adds a warning phase: two officers draft and send an Exercise alert during the
drill and its delivery curve per channel goes into the report (``sim.warning_drill``, ``sim/drills/warning.toml``).
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

import msgspec
import trio

from gateway.errors import DrillError
from gateway.protocols import pidf
from gateway.settings import Base, GatewayConfig  # Base: unknown keys are errors, as in the config
from sim import dtmf, lab, report, sipp, warning_drill
from sim import sipp_xml as scenario
from sim.incidents import read_incidents, wait_settled
from sim.warning_drill import WarningPhase

log = logging.getLogger(__name__)
SETTLE_S = 2.0  # after the last caller: lets the gateway record hang-ups and sipp flush its logs
READY_S = 70.0  # the gateway reaching fresh stand-ins: its reconnect back-off is at most 60 s
WITHHELD = "withheld"
NUMBER_RE = re.compile(r"^[0-9A-Za-z+*#.()-]{1,32}$")
SERVICE_RE = re.compile(r"^\+?[0-9*#]{2,15}$")
ACCOUNT_RE = re.compile(r"^[0-9B-F]{4}$")
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


class Arrival(Base, frozen=True):
    count: int | None = None
    rate_per_s: float = 1.0
    max_concurrency: int = 10
    call_timeout_s: float = 120.0


class Coordinates(Base, frozen=True):
    lat: float
    lon: float
    radius: float | None = None


class CallerTemplate(Base, frozen=True):
    label: str = ""
    number: str | None = None
    display_name: str = ""
    service: str = "112"
    dtmf: str = ""
    silence: bool = False
    location: Coordinates | None = None
    pidf_lo: str | None = None
    talk_s: float = 10.0
    hangup_after_s: float | None = None
    weight: int = 1

    @property
    def withheld(self) -> bool:
        return self.number is None or self.number.lower() == WITHHELD


class AlarmSignal(Base, frozen=True):
    account: str
    code: str = "120"
    zone: int = 1
    restore: bool = False
    number: str = "87272920012"  # the line the panel calls from
    at_s: float = 0.0


class TelegramReport(Base, frozen=True):
    chat_id: int
    text: str
    location: Coordinates | None = None
    contact: str = ""
    language: Literal["kk", "ru", "en"] = "ru"
    at_s: float = 0.0


class InboundSms(Base, frozen=True):
    sender: str = msgspec.field(name="from")
    text: str
    via: Literal["smsc", "twilio"] = "smsc"
    at_s: float = 0.0


class AmlSignal(Base, frozen=True):
    number: str
    lat: float
    lon: float
    accuracy: float = 15.0
    at_s: float = 2.0  # after the first call from ``number`` was placed


class Responder(Base, frozen=True):
    person: str
    channel: Literal["voice", "telegram", "sms"]
    behaviour: Literal["ack_after_s", "never", "second_call"]
    ack_after_s: float | None = None


class Phones(Base, frozen=True):
    answer: bool = True


class EscalationSettings(Base, frozen=True):
    scenarios_dir: str = ""  # "": the gateway's own scenarios with step_timeout_s / step_repeat caps
    step_timeout_s: float = 6.0
    step_repeat: int = 2
    answer_sla_s: float = 8.0
    unclassified_after_s: float = 10.0
    voice_ack_wait_s: float = 8.0
    tier_timeout_s: float = 10.0  # escalation tiers' acknowledgement timeout, capped for the drill
    tier_repeat: int = 2
    max_wait_s: float = 120.0


class Drill(Base, frozen=True):
    callers: list[CallerTemplate] = []
    name: str = ""
    description: str = ""
    arrival: Arrival = Arrival()
    phones: Phones = Phones()
    escalation: EscalationSettings = EscalationSettings()
    alarms: list[AlarmSignal] = []
    telegram_reports: list[TelegramReport] = []
    sms: list[InboundSms] = []
    aml: list[AmlSignal] = []
    responders: list[Responder] = []
    warning: WarningPhase | None = None

    @property
    def escalates(self) -> bool:
        """Whether the drill needs the escalation stand-ins (anything beyond calls)."""
        return bool(self.alarms or self.telegram_reports or self.sms or self.aml or self.responders)


# --- loading ----------------------------------------------------------------------------------

def load(path: str | Path) -> Drill:
    """Read and validate a drill file. Raises DrillError naming the file and key of each problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DrillError(f"{path}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DrillError(f"{path}: not valid TOML: {exc}") from exc
    try:
        drill = msgspec.convert(raw, Drill)
    except msgspec.ValidationError as exc:
        raise DrillError(f"{path}: {_where(exc)}") from exc
    found = problems(drill)
    if found:
        raise DrillError("\n".join(f"{path}: {p}" for p in found))
    return drill


def _where(exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.arrival.count`"; lead with the key instead.
    text = str(exc)
    match = re.search(r" - at `\$\.?(.*)`$", text)
    if not match:
        return f"(top level): {text}"
    return f"{match.group(1)}: {text[: match.start()]}"


def problems(drill: Drill) -> list[str]:
    """Checks the schema cannot express, as 'key: what is wrong'."""
    a = drill.arrival
    p = []
    if a.count is not None and a.count < 1:
        p.append(f"arrival.count: expected at least 1, got {a.count}")
    elif a.count is not None and not drill.callers:
        p.append("arrival.count: there are no [[callers]] templates to place calls from")
    if not (math.isfinite(a.rate_per_s) and a.rate_per_s > 0):
        p.append(f"arrival.rate_per_s: expected a positive number of calls per second, got {a.rate_per_s}")
    if a.max_concurrency < 1:
        p.append(f"arrival.max_concurrency: expected at least 1, got {a.max_concurrency}")
    if not a.call_timeout_s > 0:
        p.append(f"arrival.call_timeout_s: expected a positive number of seconds, got {a.call_timeout_s}")
    if not (drill.callers or drill.alarms or drill.telegram_reports or drill.sms or drill.warning):
        p.append("callers: expected at least one [[callers]] template (or [[alarms]], [[telegram_reports]], [[sms]], "
                 "[warning])")
    for i, caller in enumerate(drill.callers):
        p.extend(f"callers[{i}].{problem}" for problem in _caller_problems(caller))
    p.extend(escalation_problems(drill))
    p.extend(warning_drill.problems(drill.warning) if drill.warning is not None else [])
    return p


def _caller_problems(c: CallerTemplate) -> list[str]:
    p = []
    if not c.withheld and not NUMBER_RE.match(c.number or ""):
        p.append(f"number: expected digits with optional + (or \"withheld\"), got {c.number!r}")
    if not SERVICE_RE.match(c.service):
        p.append(f"service: expected the dialled number like 112 or +7112, got {c.service!r}")
    bad = sorted({d for d in c.dtmf if d not in "0123456789*#"})
    if bad:
        p.append(f"dtmf: expected keys 0-9, * and #, got {''.join(bad)!r}")
    missing = sorted({str(scenario.dtmf_pcap(d)) for d in c.dtmf
                      if d not in bad and not scenario.dtmf_pcap(d).exists()})
    if missing:
        p.append(f"dtmf: no RFC 2833 pcap for these keys (is sip-tester installed?): {', '.join(missing)}")
    if c.silence and c.dtmf:
        p.append("silence: a silent caller cannot also key dtmf")
    if c.location is not None and c.pidf_lo is not None:
        p.append("location: give location or pidf_lo, not both")
    if c.location is not None:
        p.extend(f"location.{x}" for x in _coordinate_problems(c.location))
    if c.pidf_lo is not None and not c.pidf_lo.strip():
        p.append("pidf_lo: expected a PIDF-LO document, got an empty string")
    if not (math.isfinite(c.talk_s) and c.talk_s >= 0):
        p.append(f"talk_s: expected seconds >= 0, got {c.talk_s}")
    if c.hangup_after_s is not None and not (math.isfinite(c.hangup_after_s) and c.hangup_after_s > 0):
        p.append(f"hangup_after_s: expected a positive number of seconds, got {c.hangup_after_s}")
    if c.weight < 1:
        p.append(f"weight: expected at least 1, got {c.weight}")
    return p


def _coordinate_problems(loc: Coordinates) -> list[str]:
    p = []
    if not -90 <= loc.lat <= 90:
        p.append(f"lat: expected -90..90, got {loc.lat}")
    if not -180 <= loc.lon <= 180:
        p.append(f"lon: expected -180..180, got {loc.lon}")
    if loc.radius is not None and not 0 < loc.radius <= 1_000_000:
        p.append(f"radius: expected metres in 0..1000000 (omit it for a Point), got {loc.radius}")
    return p


def _when(at_s: float) -> list[str]:
    return [] if math.isfinite(at_s) and 0 <= at_s <= 3600 else [f"at_s: expected 0-3600 seconds, got {at_s}"]


def escalation_problems(drill: Drill) -> list[str]:
    """Checks of the alarm, Telegram, SMS, AML, responder and escalation tables."""
    p: list[str] = []
    for i, a in enumerate(drill.alarms):
        where = f"alarms[{i}]"
        if not ACCOUNT_RE.match(a.account):
            p.append(f"{where}.account: expected 4 hex digits (0-9, B-F) as programmed in the panel, got {a.account!r}")
        if not re.fullmatch(r"[0-9]{3}", a.code):
            p.append(f"{where}.code: expected a 3-digit Contact ID event code like 120, got {a.code!r}")
        if not 0 <= a.zone <= 999:
            p.append(f"{where}.zone: expected 0-999, got {a.zone}")
        if not NUMBER_RE.match(a.number):
            p.append(f"{where}.number: expected digits with optional +, got {a.number!r}")
        p.extend(f"{where}.{x}" for x in _when(a.at_s))
    for i, t in enumerate(drill.telegram_reports):
        where = f"telegram_reports[{i}]"
        if t.chat_id <= 0:
            p.append(f"{where}.chat_id: expected a private chat id (a positive number), got {t.chat_id}")
        if not t.text.strip() or len(t.text) > 4096:
            p.append(f"{where}.text: expected 1-4096 characters")
        if t.contact and not E164_RE.match(t.contact):
            p.append(f"{where}.contact: expected an E.164 number like +77011234567, got {t.contact!r}")
        if t.location is not None:
            p.extend(f"{where}.location.{x}" for x in _coordinate_problems(t.location))
        p.extend(f"{where}.{x}" for x in _when(t.at_s))
    for i, m in enumerate(drill.sms):
        if not NUMBER_RE.match(m.sender):
            p.append(f"sms[{i}].from: expected digits with optional +, got {m.sender!r}")
        if not m.text.strip():
            p.append(f"sms[{i}].text: expected some text")
        p.extend(f"sms[{i}].{x}" for x in _when(m.at_s))
    numbers = {c.number for c in drill.callers if not c.withheld}
    for i, a2 in enumerate(drill.aml):
        if a2.number not in numbers:
            p.append(f"aml[{i}].number: {a2.number!r} places no call in this drill (AML follows a call)")
        p.extend(f"aml[{i}].{x}" for x in _coordinate_problems(Coordinates(lat=a2.lat, lon=a2.lon)))
        if not (math.isfinite(a2.accuracy) and 0 < a2.accuracy <= 100_000):
            p.append(f"aml[{i}].accuracy: expected metres in 0..100000, got {a2.accuracy}")
        p.extend(f"aml[{i}].{x}" for x in _when(a2.at_s))
    p.extend(_responder_problems(drill.responders))
    e = drill.escalation
    for key, low, high in (("answer_sla_s", 1, 600), ("unclassified_after_s", 5, 3600), ("voice_ack_wait_s", 1, 120),
                           ("tier_timeout_s", 1, 600), ("step_timeout_s", 1, 600), ("max_wait_s", 1, 3600)):
        value = getattr(e, key)
        if not (math.isfinite(value) and low <= value <= high):
            p.append(f"escalation.{key}: expected {low}-{high} seconds, got {value}")
    for key in ("tier_repeat", "step_repeat"):
        if not 1 <= getattr(e, key) <= 10:
            p.append(f"escalation.{key}: expected 1-10, got {getattr(e, key)}")
    return p


def _responder_problems(responders: list[Responder]) -> list[str]:
    p: list[str] = []
    names = [r.person for r in responders]
    for i, r in enumerate(responders):
        if names.count(r.person) > 1:
            p.append(f"responders[{i}].person: {r.person!r} is scripted twice")
        if r.behaviour == "ack_after_s":
            if r.ack_after_s is None or not (math.isfinite(r.ack_after_s) and 0 <= r.ack_after_s <= 600):
                p.append(f"responders[{i}].ack_after_s: expected 0-600 seconds with behaviour \"ack_after_s\", "
                         f"got {r.ack_after_s}")
        elif r.ack_after_s is not None:
            p.append(f"responders[{i}].ack_after_s: only for behaviour \"ack_after_s\" (this one is {r.behaviour!r})")
    return p


# --- planning ---------------------------------------------------------------------------------

def plan(drill: Drill) -> list[tuple[int, CallerTemplate]]:
    """(template index, template) for every call: each template once in order, then the rest by
    smooth weighted round-robin, so the mix is deterministic and evenly spread."""
    templates = drill.callers
    count = drill.arrival.count or len(templates)
    calls = list(enumerate(templates))[:count]
    total = sum(t.weight for t in templates)
    current = [0] * len(templates)
    while len(calls) < count:
        for i, t in enumerate(templates):
            current[i] += t.weight
        pick = max(range(len(templates)), key=lambda i: (current[i], -i))
        current[pick] -= total
        calls.append((pick, templates[pick]))
    return calls


def label(index: int, template: CallerTemplate) -> str:
    return template.label or f"caller{index + 1}"


def location_xml(c: CallerTemplate) -> str | None:
    """The PIDF-LO sent with the INVITE, if any."""
    if c.pidf_lo is not None:
        return c.pidf_lo
    if c.location is None:
        return None
    entity = f"sip:{'anonymous' if c.withheld else c.number}@operator.invalid"
    loc = c.location
    if loc.radius is None:
        return pidf.build("point", lat=loc.lat, lon=loc.lon, entity=entity)
    return pidf.build("circle", lat=loc.lat, lon=loc.lon, radius=loc.radius, entity=entity)


def prepare_call(c: CallerTemplate, workdir: Path) -> str:
    """sipp scenario for one call of template ``c``; creates ``workdir`` with the call's DTMF pcap."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = "" if c.silence else c.dtmf
    pcap = dtmf.sequence_pcap(keys, workdir / "dtmf.pcap") if keys else None
    talk_s = c.hangup_after_s if c.hangup_after_s is not None else c.talk_s
    return scenario.caller(c.service, None if c.withheld else c.number, c.display_name,
                           pidf_lo=location_xml(c), dtmf_pcap_file=pcap, talk_ms=int(talk_s * 1000))


# --- running ----------------------------------------------------------------------------------

Progress = Callable[[report.PlacedCall], None]


async def run(cfg: GatewayConfig, drill: Drill, *, source: str = "", progress: Progress | None = None,
              workdir: Path | None = None, on_ready: Callable[[], Awaitable[object]] | None = None) -> report.Report:
    """Place every call of the drill with the phones answering (or only ringing), play its alarms,
    Telegram reports, texts and AML with the scripted responders acting, then report.

    ``on_ready`` is awaited once the stand-ins and phones run, before anything is sent (a test
    starts the gateway there). Raises DrillError when the escalation side cannot be set up."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="ecgw-drill-"))
    calls = plan(drill)
    placed: list[report.PlacedCall] = []
    notes: list[str] = []
    async with AsyncExitStack() as stack:
        esc = await stack.enter_async_context(lab.escalation_lab(cfg, drill, workdir / "escalation", notes)) \
            if drill.escalates else None
        phones = await stack.enter_async_context(
            sipp.phones(cfg, workdir / "phones") if drill.phones.answer
            else lab.ringing_phones(cfg, workdir / "phones"))
        warning = await stack.enter_async_context(warning_drill.warning_phase(cfg, drill.warning, notes)) \
            if drill.warning is not None else None
        if on_ready is not None:
            await on_ready()
        if esc is not None:
            await esc.wait_connected(READY_S)
        started = time.time()
        async with trio.open_nursery() as nursery:
            if esc is not None:
                nursery.start_soon(esc.play, drill, call_offsets(drill.arrival, calls))
            if warning is not None:
                nursery.start_soon(warning.play, trio.current_time())
            await _place_all(cfg, drill.arrival, calls, workdir, placed, progress or (lambda _: None))
        await trio.sleep(SETTLE_S)
        if esc is not None:
            await wait_settled(cfg.store, started, drill.escalation.max_wait_s, notes)
    ringing = [report.Ringing(wall=line.wall, caller_call_id=line.fields.get("caller", ""))
               for line in phones.lines() if line.kind == "RINGING"]
    incidents = await trio.to_thread.run_sync(read_incidents, cfg.store, started - 1.0,
                                              len(calls) * 4 + 100, notes)
    # Scenarios run for every incident the gateway has them for: their figures whenever there are any.
    ran = drill.escalates or any(e.kind in report.RUN_STARTS for inc in incidents for e in inc.timeline)
    escalation = report.escalation_report(incidents, scripted(drill)) if ran else None
    return report.compute(placed, incidents, ringing, drill=drill.name or source, started_wall=started,
                          workdir=str(workdir), notes=notes, escalation=escalation,
                          delivery=warning.result if warning is not None else None)


def scripted(drill: Drill) -> list[report.ScriptedResponder]:
    return [report.ScriptedResponder(person=r.person, behaviour=r.behaviour, channel=r.channel,
                                     ack_after_s=r.ack_after_s) for r in drill.responders]


def call_offsets(arrival: Arrival, calls: list[tuple[int, CallerTemplate]]) -> dict[str, float]:
    """Number -> seconds from the start to its first call (as scheduled; AML follows it)."""
    found: dict[str, float] = {}
    for n, (_, template) in enumerate(calls):
        if not template.withheld and template.number is not None:
            found.setdefault(template.number, n / arrival.rate_per_s)
    return found


async def _place_all(cfg: GatewayConfig, arrival: Arrival, calls: list[tuple[int, CallerTemplate]], workdir: Path,
                     placed: list[report.PlacedCall], progress: Progress) -> None:
    slots = trio.Semaphore(arrival.max_concurrency)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n, (template_index, template) in enumerate(calls):
            await trio.sleep_until(start + n / arrival.rate_per_s)
            await slots.acquire()
            nursery.start_soon(_one_call, cfg, n, label(template_index, template), template,
                               workdir / f"call-{n + 1:04d}", arrival.call_timeout_s, slots, placed, progress)


async def _one_call(cfg: GatewayConfig, n: int, name: str, template: CallerTemplate, workdir: Path,
                    timeout_s: float, slots: trio.Semaphore, placed: list[report.PlacedCall],
                    progress: Progress) -> None:
    try:
        xml = await trio.to_thread.run_sync(prepare_call, template, workdir)
        result = await sipp.place_call(cfg, xml, workdir, timeout_s)
    finally:
        slots.release()
    call = report.PlacedCall(index=n, label=name, service=template.service, call_id=result.call_id,
                             invite_wall=result.invite_wall, answered_wall=result.answered_wall,
                             sipp_rc=result.returncode)
    placed.append(call)
    progress(call)
