"""A simulated school alarm panel: calls Asterisk with sipp and keys a Contact ID message as DTMF audio.

The panel's audio (``sim.contact_id.panel_audio``: silence through the receiver's handshake, then
the 16 digits as real dual tones) is encoded as G.711 mu-law and laid out as an RTP stream in a
pcap, which sipp's ``play_pcap_audio`` sends from the moment the call is answered. A WAV cannot
listen, so the panel waits a fixed time for the handshake: AlarmReceiver answers, waits
``answait`` (1250 ms) and plays 300 ms of handshake, then gives the panel ``fdtimeout`` (2000 ms)
for the first digit; starting at 2000 ms lands in the middle of that window. One message per
call: the panel stays on the line through the kiss-off (200 ms + 900 ms) and hangs up.

Pure apart from ``write_rtp_pcap`` and ``call``.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from gateway import settings as config
from gateway.settings import GatewayConfig
from sim import sipp
from sim import sipp_xml as scenario
from sim.contact_id import KISSOFF_WAIT_MS, SAMPLE_RATE, panel_audio, panel_message

PTIME_MS = 20
SAMPLES_PER_PACKET = SAMPLE_RATE * PTIME_MS // 1000
PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD = struct.Struct("<IIII")
_ETHERNET = bytes(6) + bytes(6) + b"\x08\x00"  # no MACs needed: sipp sends the UDP payload
_ULAW_BIAS, _ULAW_CLIP = 33, 8159  # on 14-bit values
PANEL_DIALS = "alarm"  # the extension of [ecgw-alarm] reached from the operator trunk


def ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte (the reference coder's rounding)."""
    value = sample >> 2  # G.711 works on 14 bits
    mask = 0x7F if value < 0 else 0xFF
    value = min(abs(value), _ULAW_CLIP) + _ULAW_BIAS
    segment = (value >> 6).bit_length()
    if segment > 7:
        return 0x7F ^ mask  # full scale
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def rtp_packets(samples: Sequence[int], *, ssrc: int = 0x0ECA1A4D, payload_type: int = 0) -> list[bytes]:
    """The samples as 20 ms PCMU RTP packets (the last one padded with silence)."""
    out = []
    silence = ulaw(0)
    for number, start in enumerate(range(0, len(samples), SAMPLES_PER_PACKET)):
        chunk = bytes(ulaw(s) for s in samples[start:start + SAMPLES_PER_PACKET])
        chunk += bytes([silence]) * (SAMPLES_PER_PACKET - len(chunk))
        marker = 0x80 if number == 0 else 0
        header = struct.pack("!BBHII", 0x80, marker | payload_type, (1000 + number) & 0xFFFF,
                             (8000 + start) & 0xFFFFFFFF, ssrc)
        out.append(header + chunk)
    return out


def pcap_bytes(packets: Sequence[bytes], *, ptime_ms: int = PTIME_MS) -> bytes:
    """An Ethernet pcap of UDP packets (loopback addresses, zero checksums) one ``ptime_ms`` apart."""
    blob = bytearray(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for number, payload in enumerate(packets):
        udp = struct.pack("!HHHH", 40000, 40000, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), number & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        frame = _ETHERNET + ip
        usec = number * ptime_ms * 1000
        blob += RECORD.pack(usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame
    return bytes(blob)


def write_rtp_pcap(samples: Sequence[int], target: Path) -> Path:
    """Write the samples as a PCMU RTP pcap for sipp's ``play_pcap_audio``."""
    target.write_bytes(pcap_bytes(rtp_packets(samples)))
    return target


def call_length_ms(samples: Sequence[int]) -> int:
    """How long the panel stays on the line: its audio, then the kiss-off and a margin."""
    return len(samples) * 1000 // SAMPLE_RATE + KISSOFF_WAIT_MS + 1000


def panel_scenario(pcap: Path, samples: Sequence[int], number: str, name: str = "") -> str:
    """The sipp caller: dials the alarm receiver, plays the pcap from the answer, hangs up after the kiss-off."""
    return scenario.caller(PANEL_DIALS, number, name, dtmf_pcap_file=pcap, first_dtmf_ms=0,
                           talk_ms=call_length_ms(samples))


async def call(cfg: GatewayConfig, workdir: Path, message: str, *, number: str = "87272920012",
               name: str = "", timeout_s: float = 30.0) -> sipp.CallResult:
    """Place one panel call sending ``message`` (16 DTMF keys, see ``sim.contact_id.panel_message``)
    to the Asterisk of ``cfg``. Never raises for a failed call: look at ``returncode``."""
    workdir.mkdir(parents=True, exist_ok=True)
    samples = panel_audio([message])
    pcap = await trio.to_thread.run_sync(write_rtp_pcap, samples, workdir / "panel.pcap")
    return await sipp.place_call(cfg, panel_scenario(pcap, samples, number, name), workdir, timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.alarm_panel", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.environ.get("ECGW_CONFIG", str(config.DEFAULT_PATH)))
    parser.add_argument("--account", required=True, help="Contact ID account in hex notation, e.g. 1201")
    parser.add_argument("--code", default="120", help="event code (120 panic, 602 periodic test)")
    parser.add_argument("--restore", action="store_true", help="send a restore (qualifier 3)")
    parser.add_argument("--zone", type=int, default=1)
    parser.add_argument("--workdir", default="panel-call")
    args = parser.parse_args(argv)
    message = panel_message(args.account, args.code, "restore" if args.restore else "new", zone=args.zone)
    result = trio.run(call, config.load(args.config), Path(args.workdir), message)
    print(f"sent {message}: sipp exit {result.returncode}, call-id {result.call_id}")
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
