"""Residents' phones that answer a call-out and key DTMF (RFC 2833) into it: for voice acknowledgements.

One sipp UAS answers every number dialled at its port. Numbers in ``presses`` key their digits
(sip-tester's RFC 2833 pcaps, spliced by ``sim.dtmf``) that many milliseconds after the ACK and
then listen; every other number answers and listens without pressing anything, until the far end
hangs up. The scenario (``scenario_xml``, a ``sim.sipp_xml.answering`` phone) and its log parsing
(``sim.sipp.parse_events``) are pure; ``dtmf_phones`` runs sipp until the block exits. Each INVITE,
answer, key press and received BYE is logged with the wall time and the dialled number, so a test
can tell when a press happened and when the call ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sim import dtmf, sipp
from sim import sipp_xml as scenario
from sim.sipp import PhoneEvent, free_port


@dataclass(frozen=True)
class Press:
    """``digits`` keyed ``after_ms`` after the call was answered."""

    digits: str
    after_ms: int


def scenario_xml(pcaps: Mapping[str, tuple[Path, int]], ring_ms: int = 200) -> str:
    """The UAS scenario: number -> (pcap to play, ms after the ACK); other numbers only listen."""
    pickups = {number: scenario.Pickup(press=path, press_after_ms=ms) for number, (path, ms) in pcaps.items()}
    return scenario.answering("ecgw residents keying DTMF", "resident", pickups, ring_ms=ring_ms)


@dataclass
class DtmfPhones:
    uri: str  # where the call-out trunk sends calls: sip:127.0.0.1:<port>
    log: Path

    def events(self, number: str, kind: str | None = None) -> list[PhoneEvent]:
        found = sipp.parse_events(sipp.read_log(self.log))
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
    block exits. Raises DrillError if sipp does not start."""
    workdir.mkdir(parents=True, exist_ok=True)
    pcaps = {number: (dtmf.sequence_pcap(press.digits, workdir / f"keys-{i}.pcap"), press.after_ms)
             for i, (number, press) in enumerate(presses.items())}
    port = free_port()
    uas = sipp.Uas("dtmf-phones", scenario_xml(pcaps, ring_ms), port, media_port=free_port())
    async with sipp.answering_sipp(workdir, [uas], "the DTMF phones") as [log]:
        yield DtmfPhones(f"sip:127.0.0.1:{port}", log)
