"""Real tier: a 112 call through our own Asterisk is recorded (MixMonitor, wav49), indexed on its incident,
plays (sox reads it) and is served through the API with Range, each read audited."""

from __future__ import annotations

import hashlib
import math
import struct
import subprocess
from pathlib import Path

import httpx

from gateway.asterisk import sandbox
from sim import dtmf, sipp
from sim import sipp_xml as scenario
from sim.lab import AsteriskInstance, GatewayProcess

TALK_S = 8.0


def speech_pcap(seconds: float, target: Path) -> Path:
    """A caller talking: G.711 u-law RTP (a 440 Hz tone), one 20 ms packet after another, for ``seconds``
    (the frame around each packet copied from sip-tester's DTMF pcap, lengths fixed)."""
    _, template = dtmf._packets(scenario.dtmf_pcap("1"))[0]
    ihl = (template[dtmf.ETH] & 0x0F) * 4
    head = bytearray(template[:dtmf.ETH + ihl + dtmf.UDP])
    samples = bytes(_ulaw(int(8000 * math.sin(2 * math.pi * 440 * n / 8000))) for n in range(160 * 50))
    blob = bytearray(dtmf.PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(int(seconds * 50)):
        rtp = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, i * 160, 0x1234) + samples[(i % 50) * 160:][:160]
        struct.pack_into("!H", head, dtmf.ETH + 2, ihl + dtmf.UDP + len(rtp))
        struct.pack_into("!HH", head, dtmf.ETH + ihl + 4, dtmf.UDP + len(rtp), 0)
        frame = bytes(head) + rtp
        blob += dtmf.RECORD.pack(i // 50, (i % 50) * 20_000, len(frame), len(frame)) + frame
    target.write_bytes(bytes(blob))
    return target


def _ulaw(sample: int) -> int:
    sign, sample = (0x80, -sample) if sample < 0 else (0, sample)
    sample = min(sample, 32635) + 132
    exponent = max(0, sample.bit_length() - 8)
    return ~(sign | (exponent << 4) | ((sample >> (exponent + 3)) & 0x0F)) & 0xFF


async def place(asterisk: AsteriskInstance, workdir: Path) -> sipp.CallResult:
    """A 112 caller who talks from the answer until hanging up ``TALK_S`` later (the IVR times out to the queue)."""
    workdir.mkdir(parents=True, exist_ok=True)
    audio = speech_pcap(TALK_S, workdir / "speech.pcap")
    xml = scenario.caller("112", "+77011234567", "Recorded", dtmf_pcap_file=audio, first_dtmf_ms=0,
                          talk_ms=int(TALK_S * 1000))
    return await sipp.place_call(asterisk.cfg, xml, workdir / "caller", 40)


async def _indexed(gateway: GatewayProcess, call_id: str) -> dict[str, object]:
    """The incident's recordings list once its recording is indexed."""
    incident = await gateway.wait_incident(call_id, until="recording_indexed", timeout=60)
    async with httpx.AsyncClient(timeout=5, headers=gateway.host_headers()) as client:
        reply = await client.get(f"{gateway.url}/incidents/{incident.id}/recordings")
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def test_a_112_call_is_recorded_indexed_and_served(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    result = await place(asterisk, tmp_path)
    assert result.returncode == 0, result.workdir
    listing = await _indexed(gateway, result.call_id)
    [view] = listing["recordings"]  # type: ignore[misc]
    rec = view["recording"]
    assert view["state"] == "ok" and rec["codec"] == "gsm"
    path = sandbox.locate(asterisk.cfg).host_dir / asterisk.cfg.recordings.dir / rec["file"]
    data = path.read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (rec["size"], rec["sha256"])
    info = subprocess.run(["sox", "--i", str(path)], capture_output=True, text=True, check=True).stdout
    assert "GSM" in info and "8000" in info, info
    played = float(subprocess.run(["sox", "--i", "-D", str(path)], capture_output=True, text=True,
                                  check=True).stdout)
    assert abs(played - rec["duration_s"]) < 0.1
    assert TALK_S - 1.5 <= rec["duration_s"] <= TALK_S + 1.5, rec
    async with httpx.AsyncClient(timeout=5, headers=gateway.host_headers()) as client:
        whole = await client.get(f"{gateway.url}/recordings/{rec['id']}")
        part = await client.get(f"{gateway.url}/recordings/{rec['id']}", headers={"Range": "bytes=0-99"})
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("audio/wav")
    assert whole.content == data
    assert part.status_code == 206 and part.content == data[:100]
    print(f"recording: {rec['duration_s']} s, {rec['size']} bytes, {rec['size'] / rec['duration_s'] * 60 / 1000:.1f}"
          " kB per minute")


async def test_an_unwritable_recordings_directory_still_reaches_a_human_and_the_incident_says_so(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    directory = sandbox.locate(asterisk.cfg).host_dir / asterisk.cfg.recordings.dir
    mode = directory.stat().st_mode & 0o777
    directory.chmod(0o550)  # Asterisk (not root) can no longer create files there
    try:
        result = await place(asterisk, tmp_path)
    finally:
        directory.chmod(mode)
    assert result.returncode == 0, "the call did not reach a dispatcher"
    incident = await gateway.wait_incident(result.call_id, until="recording_failed", timeout=40)
    kinds = [e.kind for e in incident.timeline]
    assert "answered" in kinds and "recording_indexed" not in kinds
    failed = next(e for e in incident.timeline if e.kind == "recording_failed")
    assert "no recording file" in str(failed.data["reason"])
