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
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import msgspec
import trio

from gateway import pidf
from gateway.config import Base, GatewayConfig  # Base: unknown keys are errors, as in the config
from gateway.errors import DrillError, StoreError
from gateway.records import Incident
from gateway.store import SqliteStore
from sim import dtmf, report, scenario, sipp

log = logging.getLogger(__name__)
SETTLE_S = 2.0  # after the last caller: lets the gateway record hang-ups and sipp flush its logs
WITHHELD = "withheld"
NUMBER_RE = re.compile(r"^[0-9A-Za-z+*#.()-]{1,32}$")
SERVICE_RE = re.compile(r"^\+?[0-9*#]{2,15}$")


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


class Drill(Base, frozen=True):
    callers: list[CallerTemplate]
    name: str = ""
    description: str = ""
    arrival: Arrival = Arrival()


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
    if not (math.isfinite(a.rate_per_s) and a.rate_per_s > 0):
        p.append(f"arrival.rate_per_s: expected a positive number of calls per second, got {a.rate_per_s}")
    if a.max_concurrency < 1:
        p.append(f"arrival.max_concurrency: expected at least 1, got {a.max_concurrency}")
    if not a.call_timeout_s > 0:
        p.append(f"arrival.call_timeout_s: expected a positive number of seconds, got {a.call_timeout_s}")
    if not drill.callers:
        p.append("callers: expected at least one [[callers]] template")
    for i, caller in enumerate(drill.callers):
        p.extend(f"callers[{i}].{problem}" for problem in _caller_problems(caller))
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
    missing = sorted({str(scenario.dtmf_pcap(d)) for d in c.dtmf if d not in bad and not scenario.dtmf_pcap(d).exists()})
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
              workdir: Path | None = None) -> report.Report:
    """Place every call of the drill with the phones answering, then report."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="ecgw-drill-"))
    calls = plan(drill)
    started = time.time()
    placed: list[report.PlacedCall] = []
    async with sipp.phones(cfg, workdir / "phones") as phones:
        await _place_all(cfg, drill.arrival, calls, workdir, placed, progress or (lambda _: None))
        await trio.sleep(SETTLE_S)
    ringing = [report.Ringing(wall=line.wall, caller_call_id=line.fields.get("caller", ""))
               for line in phones.lines() if line.kind == "RINGING"]
    notes: list[str] = []
    incidents = await trio.to_thread.run_sync(read_incidents, cfg.store.path, started - 1.0,
                                              len(calls) * 4 + 100, notes)
    return report.compute(placed, incidents, ringing, drill=drill.name or source, started_wall=started,
                          workdir=str(workdir), notes=notes)


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


def read_incidents(path: str, since_wall: float, limit: int, notes: list[str]) -> list[Incident]:
    """Incidents created since ``since_wall`` in the gateway's store (read only)."""
    if not Path(path).exists():
        notes.append(f"store {path} does not exist: is the gateway running with this config?")
        return []
    try:
        store = SqliteStore(path)
        try:
            return [store.get(s.id) for s in store.recent(limit, since_wall)]
        finally:
            store.close()
    except StoreError as exc:
        notes.append(f"cannot read incidents: {exc}")
        return []
