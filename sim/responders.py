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

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio

from gateway.errors import ConfigError, DrillError
from gateway.escalation.directory import Directory
from sim import dtmf, sipp
from sim.scenario import _UAS_HEADERS, _number_regexp, _sdp

REPO = Path(__file__).resolve().parent.parent
ACK_DIGIT = "1"
SECOND_CALL_PRESS_MS = 1000  # on the call that is answered, the key comes this long after the answer
CODE_RE = re.compile(r"\((?:код|code) (\d{4})\)")  # the SMS acknowledgement hint (gateway.escalation.texts)
RESPONDERS_BOT = "700000:drill-responders-bot"
REPORTS_BOT = "700001:drill-citizens-102-bot"
SMPP_ACCOUNT = ("drill", "drill")
TWILIO_TOKEN = "drill-twilio-auth-token"
LINE = re.compile(r"^(INVITE|ANSWERED|PRESSED|REJECTED|BYE) (\d+)(?:\.\d+)? (\d+)(?:\.\d+)? number=(\S*)")

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
        enabled=True, scenarios_dir=str(scenarios_dir), responders_file=str(responders_file), answer_sla_s=settings.answer_sla_s,
        unclassified_after_s=settings.unclassified_after_s, voice_ack_wait_s=settings.voice_ack_wait_s,
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
    from gateway import config as gateway_config
    from gateway.escalation import directory as directory_file
    from gateway.warning.service import project_path

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
    voice = [p for p in scripted if p.channel == "voice"]
    tests = "\n".join([f'      <ereg regexp="{_number_regexp([p.address for p in voice])}" search_in="msg" '
                       'check_it="false" assign_to="scripted"/>'] +
                      [f'      <ereg regexp="{_number_regexp([p.address])}" search_in="msg" check_it="false" '
                       f'assign_to="is{i}"/>' for i, p in enumerate(voice) if p.behaviour != "never"])
    second = [i for i, p in enumerate(voice) if p.behaviour == "second_call"]
    globals_ = f'  <Global variables="{",".join(f"seen{i}" for i in second)}"/>' if second else ""
    counting = "\n".join(
        f'  <nop condexec="is{i}">\n    <action>\n      <add assign_to="seen{i}" value="1"/>\n'
        f'      <test assign_to="first{i}" variable="seen{i}" compare="less_than" value="1.5"/>\n'
        f'    </action>\n  </nop>\n  <nop test="first{i}" next="reject"/>' for i in second)
    pressing = [(i, p) for i, p in enumerate(voice) if p.behaviour != "never"]
    branches = "\n".join(f'  <nop test="is{i}" next="keys{i}"/>' for i, _ in pressing)
    blocks = "\n".join(
        f'  <label id="keys{i}"/>\n  <pause milliseconds="{_press_ms(p)}"/>\n'
        f'  <nop>\n    <action>\n      <exec play_pcap_audio="{pcap}"/>\n'
        f'      <gettimeofday assign_to="ps,pus"/>\n'
        f'      <log message="PRESSED [$ps] [$pus] number=[$number] callid=[call_id]"/>\n'
        f'    </action>\n  </nop>\n  <nop next="listen"/>' for i, p in pressing)
    return (PHONES_XML.replace("{globals}", globals_).replace("{tests}", tests).replace("{counting}", counting)
            .replace("{branches}", branches).replace("{blocks}", blocks).replace("{ring_ms}", str(int(ring_ms))))


def _press_ms(plan: Plan) -> int:
    return SECOND_CALL_PRESS_MS if plan.behaviour == "second_call" else int(plan.ack_after_s * 1000)


PHONES_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ecgw drill responders">
{globals}
  <recv request="INVITE" crlf="true">
    <action>
      <gettimeofday assign_to="s,us"/>
      <ereg regexp="^INVITE sip:([^@]*)@" search_in="msg" check_it="true" assign_to="uri,number"/>
{tests}
      <log message="INVITE [$s] [$us] number=[$number] callid=[call_id]"/>
      <log message="# sipp insists every variable is used: [$uri]"/>
    </action>
  </recv>
  <nop test="scripted" next="known"/>
  <nop next="reject"/>
  <label id="known"/>
{counting}
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
""" + _UAS_HEADERS + """
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{ring_ms}"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
""" + _UAS_HEADERS + """
      Content-Type: application/sdp
      Content-Length: [len]

""" + _sdp("responder", indent="      ") + """
    ]]>
  </send>
  <recv request="BYE" optional="global" next="bye"/>
  <recv request="ACK" crlf="true">
    <action>
      <gettimeofday assign_to="as,aus"/>
      <log message="ANSWERED [$as] [$aus] number=[$number] callid=[call_id]"/>
    </action>
  </recv>
{branches}
  <label id="listen"/>
  <recv request="BYE" next="bye"/>
{blocks}
  <label id="reject"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
""" + _UAS_HEADERS + """
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK">
    <action>
      <gettimeofday assign_to="rs,rus"/>
      <log message="REJECTED [$rs] [$rus] number=[$number] callid=[call_id]"/>
    </action>
  </recv>
  <nop next="end"/>
  <label id="bye"/>
  <nop>
    <action>
      <gettimeofday assign_to="bs,bus"/>
      <log message="BYE [$bs] [$bus] number=[$number] callid=[call_id]"/>
    </action>
  </nop>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""


@dataclass(frozen=True)
class PhoneEvent:
    kind: str  # INVITE, ANSWERED, PRESSED, REJECTED or BYE
    wall: float
    number: str


def parse_log(text: str) -> list[PhoneEvent]:
    out = []
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if match:
            kind, sec, usec, number = match.groups()
            out.append(PhoneEvent(kind, int(sec) + int(usec) / 1e6, number))
    return out


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

    def events(self) -> list[PhoneEvent]:
        return parse_log(self.log.read_text(errors="replace")) if self.log.exists() else []


@asynccontextmanager
async def responder_phones(workdir: Path, port: int, scripted: list[Plan]) -> AsyncIterator[ResponderPhones]:
    """The voice responders' sipp UAS on ``127.0.0.1:port`` until the block exits. Raises DrillError
    if sipp does not start (the port taken, a broken scenario)."""
    from sim.lab import free_port

    workdir.mkdir(parents=True, exist_ok=True)
    pcap = dtmf.sequence_pcap(ACK_DIGIT, workdir / "ack-key.pcap")
    xml = workdir / "responders.xml"
    xml.write_text(phones_xml(scripted, pcap))
    found = ResponderPhones(f"sip:127.0.0.1:{port}", workdir / "responders.log")
    proc = await trio.lowlevel.open_process(
        [sipp.sipp_binary(), "-sf", str(xml), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()),
         "-trace_logs", "-log_file", str(found.log), "-trace_err", "-error_file", str(workdir / "responders.err"),
         "-nostdin"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        await trio.sleep(0.3)
        if proc.poll() is not None:
            raise DrillError(f"the responders' sipp exited at start ({proc.returncode}); see {workdir}")
        yield found
    finally:
        proc.terminate()
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await proc.wait()
        if proc.poll() is None:
            proc.kill()


async def telegram_responder(bot: Any, plan: Plan, poll_s: float = 0.1) -> None:
    """Press the acknowledge button of the messages the bot (a ``sim.telegram.TelegramSim``) sends to
    ``plan``'s chat, as scripted; runs until cancelled."""
    chat_id = int(plan.address)
    seen: dict[str, int] = {}
    handled = 0
    async with trio.open_nursery() as nursery:
        while True:
            messages = bot.messages_to(chat_id)
            for message in messages[handled:]:
                for data in _ack_buttons(message.reply_markup):
                    if should_ack(plan.behaviour, data, seen):
                        nursery.start_soon(_press, bot, chat_id, data, plan.ack_after_s)
            handled = len(messages)
            await trio.sleep(poll_s)


def _ack_buttons(markup: dict[str, Any] | None) -> list[str]:
    rows = (markup or {}).get("inline_keyboard", [])
    return [b["callback_data"] for row in rows for b in row if str(b.get("callback_data", "")).startswith("ack:")]


async def _press(bot: Any, chat_id: int, data: str, after_s: float) -> None:
    await trio.sleep(after_s)
    try:
        bot.resident_press(chat_id, data)
    except LookupError:
        pass  # the keyboard is gone: someone else acknowledged first


async def sms_responder(smsc: Any, plan: Plan, poll_s: float = 0.1) -> None:
    """Reply "1" from ``plan``'s number to the texts the SMSC stand-in accepted for it that ask for an
    acknowledgement, as scripted; runs until cancelled."""
    destination = plan.address.lstrip("+")
    seen: dict[str, int] = {}
    handled = 0
    async with trio.open_nursery() as nursery:
        while True:
            texts = smsc.texts(destination)
            for text in texts[handled:]:
                code = ack_code(text)
                if code and should_ack(plan.behaviour, code, seen):
                    nursery.start_soon(_reply, smsc, destination, f"{ACK_DIGIT} {code}", plan.ack_after_s)
            handled = len(texts)
            await trio.sleep(poll_s)


async def _reply(smsc: Any, source: str, text: str, after_s: float) -> None:
    await trio.sleep(after_s)
    try:
        await smsc.send_mo(source, "112", text)
    except (LookupError, trio.TooSlowError):
        pass  # the gateway is not bound or did not answer: the report shows the missing acknowledgement


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.responders DRILL --config BASE --out PATH``: write the gateway config an
    escalation drill runs against."""
    from gateway import config as gateway_config
    from sim.cli import write_drill_config

    parser = argparse.ArgumentParser(prog="python -m sim.responders", description=main.__doc__)
    parser.add_argument("drill")
    parser.add_argument("--config", default=str(gateway_config.DEFAULT_PATH), help="the base gateway config")
    parser.add_argument("--out", required=True, help="where to write the drill's gateway config")
    args = parser.parse_args(argv)
    try:
        return write_drill_config(Path(args.config), Path(args.drill), Path(args.out))
    except DrillError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
