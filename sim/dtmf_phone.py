"""Residents' phones that answer a call-out and key DTMF (RFC 2833) into it: for voice acknowledgements.

One sipp UAS answers every number dialled at its port. Numbers in ``presses`` key their digits
(sip-tester's RFC 2833 pcaps, spliced by ``sim.dtmf``) that many milliseconds after the ACK and
then listen; every other number answers and listens without pressing anything, until the far end
hangs up. The scenario (``scenario_xml``) and its log parsing (``parse_log``) are pure; ``dtmf_phones``
runs sipp until the block exits. Each INVITE, answer, key press and received BYE is logged with the
wall time and the dialled number, so a test can tell when a press happened and when the call ended.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from sim import dtmf, sipp
from sim.lab import free_port
from sim.scenario import _UAS_HEADERS, _number_regexp, _sdp

LINE = re.compile(r"^(INVITE|ANSWERED|PRESSED|BYE) (\d+)(?:\.\d+)? (\d+)(?:\.\d+)? number=(\S*)")


@dataclass(frozen=True)
class Press:
    """``digits`` keyed ``after_ms`` after the call was answered."""

    digits: str
    after_ms: int


@dataclass(frozen=True)
class PhoneEvent:
    kind: str  # INVITE, ANSWERED, PRESSED or BYE (the far end hung up)
    wall: float
    number: str


def parse_log(text: str) -> list[PhoneEvent]:
    """The events our scenario logged, in order (sipp prints the time fields as floats)."""
    out = []
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if match:
            kind, sec, usec, number = match.groups()
            out.append(PhoneEvent(kind, int(sec) + int(usec) / 1e6, number))
    return out


def scenario_xml(pcaps: Mapping[str, tuple[Path, int]], ring_ms: int = 200) -> str:
    """The UAS scenario: number -> (pcap to play, ms after the ACK); other numbers only listen."""
    tests = "\n".join(
        f'      <ereg regexp="{_number_regexp([n])}" search_in="msg" check_it="false" assign_to="press{i}"/>'
        for i, n in enumerate(pcaps))
    branches = "\n".join(f'  <nop test="press{i}" next="keys{i}"/>' for i in range(len(pcaps)))
    blocks = "\n".join(
        f'  <label id="keys{i}"/>\n  <pause milliseconds="{int(ms)}"/>\n'
        f'  <nop>\n    <action>\n      <exec play_pcap_audio="{path}"/>\n'
        f'      <gettimeofday assign_to="ps,pus"/>\n'
        f'      <log message="PRESSED [$ps] [$pus] number=[$number] callid=[call_id]"/>\n'
        f'    </action>\n  </nop>\n  <nop next="listen"/>'
        for i, (path, ms) in enumerate(pcaps.values()))
    return (PHONE_XML.replace("{tests}", tests).replace("{branches}", branches).replace("{blocks}", blocks)
            .replace("{ring_ms}", str(int(ring_ms))))


PHONE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ecgw residents keying DTMF">
  <recv request="INVITE" crlf="true">
    <action>
      <gettimeofday assign_to="s,us"/>
      <ereg regexp="^INVITE sip:([^@]*)@" search_in="msg" check_it="true" assign_to="uri,number"/>
{tests}
      <log message="INVITE [$s] [$us] number=[$number] callid=[call_id]"/>
      <log message="# sipp insists every variable is used: [$uri]"/>
    </action>
  </recv>
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

""" + _sdp("resident", indent="      ") + """
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
</scenario>
"""


@dataclass
class DtmfPhones:
    uri: str  # where the call-out trunk sends calls: sip:127.0.0.1:<port>
    log: Path

    def events(self, number: str, kind: str | None = None) -> list[PhoneEvent]:
        found = parse_log(self.log.read_text(errors="replace")) if self.log.exists() else []
        return [e for e in found if e.number == number and (kind is None or e.kind == kind)]

    def when(self, number: str, kind: str) -> float:
        """Wall time of the last ``kind`` event for ``number``; raises LookupError if none."""
        found = self.events(number, kind)
        if not found:
            raise LookupError(f"no {kind} logged for {number}")
        return found[-1].wall


@asynccontextmanager
async def dtmf_phones(workdir: Path, presses: Mapping[str, Press], *, ring_ms: int = 200) -> AsyncIterator[DtmfPhones]:
    """A sipp UAS on a free loopback port answering every number (see the module doc) until the
    block exits. Raises RuntimeError if sipp does not start."""
    workdir.mkdir(parents=True, exist_ok=True)
    pcaps = {number: (dtmf.sequence_pcap(press.digits, workdir / f"keys-{i}.pcap"), press.after_ms)
             for i, (number, press) in enumerate(presses.items())}
    xml = workdir / "dtmf-phones.xml"
    xml.write_text(scenario_xml(pcaps, ring_ms))
    port = free_port()
    found = DtmfPhones(f"sip:127.0.0.1:{port}", workdir / "dtmf-phones.log")
    proc = await trio.lowlevel.open_process(
        [sipp.sipp_binary(), "-sf", str(xml), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()),
         "-trace_logs", "-log_file", str(found.log), "-trace_err", "-error_file", str(workdir / "dtmf-phones.err"),
         "-nostdin"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        await trio.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError(f"the DTMF phones' sipp exited at start ({proc.returncode}); see {workdir}")
        yield found
    finally:
        proc.terminate()
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await proc.wait()
        if proc.poll() is None:
            proc.kill()
