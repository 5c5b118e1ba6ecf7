"""Scripted responders for escalation drills, and the gateway config such a drill runs against.

A drill's ``[[responders]]`` name people of the responders directory and say what they do when a
scenario reaches them: acknowledge ``ack_after_s`` seconds after the notification arrives, never
acknowledge, or let the first notification go (a voice call rejected busy, a Telegram message or
an SMS left unanswered) and acknowledge the second. Each acts on one channel:

- voice: one sipp UAS on the call-out trunk takes every call Asterisk makes there. A scripted
  number presses 1 (RFC 2833) after its delay; "never" answers and listens; "second_call" answers
  its first INVITE with 486 Busy Here (a sipp global counter per number) and every later one by
  pressing 1 (an INVITE says nothing of the notification it carries, so this counts per number).
  Numbers nobody scripted are busy (486), so their notification falls back to their next channel
  at once instead of holding a call open for the whole acknowledgement wait.
- telegram: a task watching the responders' Bot API stand-in presses the acknowledge button of each
  message sent to the person's chat (for "second_call": only when a button comes a second time).
- sms: a task watching the SMSC stand-in replies "1 <code>" from the person's number (an MO text) to
  each text that asks for an acknowledgement (for "second_call": a code seen before). Quoting the
  code makes the reply answer that notification even when the person has several outstanding.

``drill_config`` writes what the gateway must run with for this: its config with
``[escalation.channels]`` aimed at these stand-ins and Asterisk, the 102 bot and SMS 112 switched
on, a copy of its scenarios with acknowledgement timeouts and repeats capped (the same steps, so a
drill plays whole scenarios in a minute) and a copy of the responders directory in which each
scripted person is reached on their scripted channel only and the tiers' timeouts are capped too.
Pure apart from the file writing and the drivers at the end.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio

from gateway.errors import ConfigError, DrillError
from gateway.scenario.people import Directory
from sim import dtmf, sipp
from sim import sipp_xml as scenario

REPO = Path(__file__).resolve().parent.parent
ACK_DIGIT = "1"
SECOND_CALL_PRESS_MS = 1000  # on the call that is answered, the key comes this long after the answer
CODE_RE = re.compile(r"\((?:код|code) (\d{4})\)")  # the SMS acknowledgement hint (gateway.scenario.texts)
RESPONDERS_BOT = "700000:drill-responders-bot"
REPORTS_BOT = "700001:drill-citizens-102-bot"
SMPP_ACCOUNT = ("drill", "drill")
TWILIO_TOKEN = "drill-twilio-auth-token"

Behaviour = Literal["ack_after_s", "never", "second_call"]


@dataclass(frozen=True)
class Plan:
    """What one scripted person does on their channel."""

    person: str
    address: str  # phone number or Telegram chat id
    channel: str
    behaviour: Behaviour
    ack_after_s: float = 0.0


# --- the responders directory the drill runs with -----------------------------------------------

def plans(responders: list[Any], directory: Directory) -> tuple[list[Plan], list[str]]:
    """Plans for the drill's ``[[responders]]`` and, as 'responders[i].key: problem', what is wrong."""
    found: list[Plan] = []
    problems: list[str] = []
    for i, r in enumerate(responders):
        person = directory.people.get(r.person)
        if person is None:
            problems.append(f"responders[{i}].person: {r.person!r} is not in the responders directory")
            continue
        address = person.address(r.channel)
        if not address:
            problems.append(f"responders[{i}].channel: {r.person} has no {r.channel} address in the directory")
            continue
        found.append(Plan(r.person, address, r.channel, r.behaviour, r.ack_after_s or 0.0))
    return found, problems


def directory_doc(raw: dict[str, Any], scripted: list[Plan], *, tier_timeout_s: float,
                  tier_repeat: int) -> dict[str, Any]:
    """The directory with each scripted person reached on their scripted channel only (so the step's
    channel order cannot send their notification somewhere the script does not act) and the
    escalation tiers' acknowledgement timeouts and repeats capped for a drill."""
    channel = {p.person: p.channel for p in scripted}
    people = [dict(p, channels=[channel[p["name"]]]) if p.get("name") in channel else p
              for p in raw.get("people", [])]
    tiers = [dict(t, timeout_s=min(float(t.get("timeout_s", 60.0)), tier_timeout_s),
                  repeat=min(int(t.get("repeat", 3)), tier_repeat)) for t in raw.get("tiers", [])]
    return dict(raw, people=people, tiers=tiers)


def toml_text(doc: Mapping[str, Any], prefix: str = "") -> str:
    """A TOML document from plain data (str, bool, int, float, lists, tables, arrays of tables)."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in doc.items():
        name = prefix + _key(key)
        if isinstance(value, dict):
            tables += [f"\n[{name}]", toml_text(value, name + ".")]
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for item in value:
                tables += [f"\n[[{name}]]", toml_text(item, name + ".")]
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    return "\n".join(lines + tables).strip("\n")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def scenario_doc(raw: dict[str, Any], *, step_timeout_s: float, step_repeat: int) -> dict[str, Any]:
    """A scenario with its steps' acknowledgement timeouts and repeats capped for a drill."""
    steps = [dict(step, **({"timeout_s": min(float(step["timeout_s"]), step_timeout_s)} if "timeout_s" in step else {}),
                  **({"repeat": min(int(step["repeat"]), step_repeat)} if "repeat" in step else {}))
             for step in raw.get("steps", [])]
    return dict(raw, steps=steps)


def write_scenarios(source: Path, target: Path, *, step_timeout_s: float, step_repeat: int) -> Path:
    """Copy every scenario file of ``source`` to ``target`` with capped timeouts (see ``scenario_doc``)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.toml")):
        doc = scenario_doc(tomllib.loads(path.read_text(encoding="utf-8")), step_timeout_s=step_timeout_s,
                           step_repeat=step_repeat)
        (target / path.name).write_text(f"# {path} with timeouts capped for a drill\n" + toml_text(doc) + "\n",
                                        encoding="utf-8")
    return target


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the drill's stand-ins."""

    smsc: int
    responders_bot: int
    reports_bot: int
    trunk: int


def config_doc(base: dict[str, Any], settings: Any, responders_file: Path, scenarios_dir: Path,
               ports: Ports) -> dict[str, Any]:
    """The gateway config for an escalation drill: ``base`` with escalation aimed at the stand-ins.
    ``settings`` is the drill's ``[escalation]`` table (``sim.drill.EscalationSettings``)."""
    asterisk = base.get("asterisk", {})
    http_port = base.get("http", {}).get("port", 8080)
    escalation = dict(base.get("escalation", {}))
    escalation.update(
        enabled=True, scenarios_dir=str(scenarios_dir), responders_file=str(responders_file),
        answer_sla_s=settings.answer_sla_s, unclassified_after_s=settings.unclassified_after_s,
        voice_ack_wait_s=settings.voice_ack_wait_s,
        channels={
            "smpp": {"system_id": SMPP_ACCOUNT[0], "password": SMPP_ACCOUNT[1], "host": "127.0.0.1",
                     "port": ports.smsc, "source_addr": "112", "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
            "telegram": {"bot_token": RESPONDERS_BOT, "api_base_url": f"http://127.0.0.1:{ports.responders_bot}/bot",
                         "per_chat_interval_s": 0.0},
            "voice": {"ari_port": asterisk.get("http_port", 8088), "ari_user": asterisk.get("ari_user", "ecgw"),
                      "ari_password": asterisk.get("ari_password", "change-me-ari"),
                      "trunk_uri": f"sip:127.0.0.1:{ports.trunk}", "ring_timeout_s": 5.0, "repeats": 1,
                      "pause_s": 0.3, "max_calls_per_second": 20.0},
        })
    reports = dict(base.get("reports", {}))
    reports["telegram102"] = dict(reports.get("telegram102", {}), enabled=True, bot_token=REPORTS_BOT,
                                  base_url=f"http://127.0.0.1:{ports.reports_bot}/bot", poll_timeout_s=1.0)
    reports["sms112"] = dict(reports.get("sms112", {}), enabled=True, twilio_auth_token=TWILIO_TOKEN,
                             twilio_public_url=f"http://127.0.0.1:{http_port}/webhooks/twilio/sms112")
    return dict(base, escalation=escalation, reports=reports)


def drill_config(base_path: Path, drill: Any, out: Path, ports: Ports) -> Path:
    """Write the drill's gateway config to ``out`` (and its responders file beside it); returns ``out``.
    Raises DrillError for a scripted person the directory does not have or cannot reach."""
    from gateway import settings as gateway_config
    from gateway.scenario import people as directory_file
    from gateway.settings import project_path

    base = tomllib.loads(base_path.read_text(encoding="utf-8"))
    cfg = gateway_config.parse(base, str(base_path))
    source = project_path(cfg.escalation.responders_file)
    try:
        directory = directory_file.load(source)
    except ConfigError as exc:
        raise DrillError("; ".join(exc.problems)) from exc
    scripted, problems = plans(drill.responders, directory)
    if problems:
        raise DrillError("; ".join(problems))
    responders_file = out.with_name(out.stem + "-responders.toml")
    raw = tomllib.loads(source.read_text(encoding="utf-8"))
    doc = directory_doc(raw, scripted, tier_timeout_s=drill.escalation.tier_timeout_s,
                        tier_repeat=drill.escalation.tier_repeat)
    responders_file.write_text(toml_text(doc) + "\n", encoding="utf-8")
    settings = drill.escalation
    scenarios = project_path(settings.scenarios_dir) if settings.scenarios_dir else write_scenarios(
        project_path(cfg.escalation.scenarios_dir), out.with_name(out.stem + "-scenarios"),
        step_timeout_s=settings.step_timeout_s, step_repeat=settings.step_repeat)
    out.write_text(toml_text(config_doc(base, settings, responders_file, scenarios.resolve(), ports)) + "\n",
                   encoding="utf-8")
    try:
        gateway_config.load(out)
    except ConfigError as exc:
        raise DrillError(f"{out}: the drill config does not load: " + "; ".join(exc.problems)) from exc
    return out


# --- voice: the phones behind the call-out trunk --------------------------------------------------

def phones_xml(scripted: list[Plan], pcap: Path, ring_ms: int = 200) -> str:
    """The UAS scenario for the voice plans (see the module doc); ``pcap`` keys the digit 1."""
    pickups = {p.address: _pickup(p, pcap) for p in scripted if p.channel == "voice"}
    return scenario.answering("ecgw drill responders", "responder", pickups, others=486, ring_ms=ring_ms)


def _pickup(plan: Plan, pcap: Path) -> scenario.Pickup:
    if plan.behaviour == "never":
        return scenario.Pickup()
    if plan.behaviour == "second_call":
        return scenario.Pickup(reject=486, first_only=True, press=pcap, press_after_ms=SECOND_CALL_PRESS_MS)
    return scenario.Pickup(press=pcap, press_after_ms=int(plan.ack_after_s * 1000))


def ack_code(text: str) -> str:
    """The code an SMS notification asks to be quoted, "" when it asks for no acknowledgement."""
    match = CODE_RE.search(text)
    return match.group(1) if match else ""


def should_ack(behaviour: Behaviour, key: str, seen: dict[str, int]) -> bool:
    """Count one notification carrying ``key`` (a button's data, an SMS code) and say whether the
    scripted person acknowledges it."""
    seen[key] = seen.get(key, 0) + 1
    if behaviour == "never":
        return False
    if behaviour == "second_call":
        return seen[key] == 2
    return True


# --- drivers ------------------------------------------------------------------------------------

@dataclass
class ResponderPhones:
    uri: str
    log: Path

    def events(self) -> list[sipp.PhoneEvent]:
        return sipp.parse_events(sipp.read_log(self.log))


@asynccontextmanager
async def responder_phones(workdir: Path, port: int, scripted: list[Plan]) -> AsyncIterator[ResponderPhones]:
    """The voice responders' sipp UAS on ``127.0.0.1:port`` until the block exits. Raises DrillError
    if sipp does not start (the port taken, a broken scenario)."""
    workdir.mkdir(parents=True, exist_ok=True)
    pcap = dtmf.sequence_pcap(ACK_DIGIT, workdir / "ack-key.pcap")
    uas = sipp.Uas("responders", phones_xml(scripted, pcap), port, media_port=sipp.free_port())
    async with sipp.answering_sipp(workdir, [uas], "the responders' phones") as [log]:
        yield ResponderPhones(f"sip:127.0.0.1:{port}", log)


async def telegram_responder(bot: Any, plan: Plan, poll_s: float = 0.1) -> None:
    """Press the acknowledge button of the messages the bot (a ``sim.telegram.TelegramSim``) sends to
    ``plan``'s chat, as scripted; runs until cancelled."""
    chat_id = int(plan.address)

    async def press(data: str) -> None:
        await trio.sleep(plan.ack_after_s)
        try:
            bot.resident_press(chat_id, data)
        except LookupError:
            pass  # the keyboard is gone: someone else acknowledged first

    await _respond(plan, lambda: bot.messages_to(chat_id), lambda m: _ack_buttons(m.reply_markup), press, poll_s)


async def _respond(plan: Plan, arrived: Callable[[], Sequence[Any]], keys: Callable[[Any], list[str]],
                   act: Callable[[str], Awaitable[None]], poll_s: float) -> None:
    """Poll ``arrived`` (everything sent to the person so far) and ``act`` on each acknowledgement
    key of each new item that the script acknowledges, each in its own task; runs until cancelled."""
    seen: dict[str, int] = {}
    handled = 0
    async with trio.open_nursery() as nursery:
        while True:
            items = arrived()
            for item in items[handled:]:
                for key in keys(item):
                    if should_ack(plan.behaviour, key, seen):
                        nursery.start_soon(act, key)
            handled = len(items)
            await trio.sleep(poll_s)


def _ack_buttons(markup: dict[str, Any] | None) -> list[str]:
    rows = (markup or {}).get("inline_keyboard", [])
    return [b["callback_data"] for row in rows for b in row if str(b.get("callback_data", "")).startswith("ack:")]


async def sms_responder(smsc: Any, plan: Plan, poll_s: float = 0.1) -> None:
    """Reply "1" from ``plan``'s number to the texts the SMSC stand-in accepted for it that ask for an
    acknowledgement, as scripted; runs until cancelled."""
    destination = plan.address.lstrip("+")

    async def reply(code: str) -> None:
        await trio.sleep(plan.ack_after_s)
        try:
            await smsc.send_mo(destination, "112", f"{ACK_DIGIT} {code}")
        except (LookupError, trio.TooSlowError):
            pass  # the gateway is not bound or did not answer: the report shows the missing acknowledgement

    await _respond(plan, lambda: smsc.texts(destination), lambda text: [c for c in [ack_code(text)] if c], reply,
                   poll_s)
