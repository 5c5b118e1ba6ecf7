"""The simulated panel's wire audio (pure): G.711 mu-law, the RTP pcap sipp plays, and its sipp scenario."""

from __future__ import annotations

import struct
from pathlib import Path

from sim import alarm_panel
from sim.alarm_panel import PCAP_HEADER, RECORD, call_length_ms, panel_scenario, pcap_bytes, rtp_packets, ulaw
from sim.contact_id import panel_audio, panel_message
from tests.core.test_contact_id import _decode_dtmf


def _unulaw(byte: int) -> int:
    """The G.711 decoder (the reference's table, as arithmetic)."""
    u = ~byte & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return -magnitude if u & 0x80 else magnitude


def test_ulaw_matches_the_reference_values() -> None:
    assert [ulaw(s) for s in (0, 1, -1, 32767, -32768, 1000, -1000)] == [0xFF, 0xFF, 0x7E, 0x80, 0x00, 0xCE, 0x4E]


def test_ulaw_round_trip_stays_within_one_step() -> None:
    for sample in range(-32000, 32000, 37):
        decoded = _unulaw(ulaw(sample))
        assert abs(decoded - sample) <= max(16, abs(sample) // 16), sample


def _read_pcap(blob: bytes) -> list[tuple[float, bytes]]:
    magic, major, minor, _zone, _sigfigs, _snaplen, linktype = PCAP_HEADER.unpack_from(blob)
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    out, offset = [], PCAP_HEADER.size
    while offset < len(blob):
        sec, usec, incl, orig = RECORD.unpack_from(blob, offset)
        frame = blob[offset + RECORD.size:offset + RECORD.size + incl]
        assert incl == orig == len(frame)
        ip = frame[14:]
        total, proto = struct.unpack_from("!H", ip, 2)[0], ip[9]
        udp_len = struct.unpack_from("!H", ip, 24)[0]
        assert (frame[12:14], ip[0], proto, total, udp_len) == (b"\x08\x00", 0x45, 17, len(ip), len(ip) - 20)
        out.append((sec + usec / 1e6, ip[28:]))
        offset += RECORD.size + incl
    return out


def test_pcap_carries_the_message_as_real_dtmf_in_pcmu_rtp() -> None:
    message = panel_message("4B09", "120", zone=5)
    samples = panel_audio([message])
    records = _read_pcap(pcap_bytes(rtp_packets(samples)))
    assert len(records) == -(-len(samples) // 160)
    times = [t for t, _ in records]
    assert all(abs(b - a - 0.020) < 1e-6 for a, b in zip(times, times[1:], strict=False))
    heads = [struct.unpack("!BBHII", rtp[:12]) for _, rtp in records]
    assert heads[0][1] == 0x80 and all(h[1] == 0 for h in heads[1:])  # marker, then PCMU (type 0)
    assert all(h[0] == 0x80 and len(rtp) == 12 + 160 for h, (_, rtp) in zip(heads, records, strict=True))
    assert [h[2] - heads[0][2] for h in heads] == list(range(len(heads)))
    assert [h[3] - heads[0][3] for h in heads] == [160 * i for i in range(len(heads))]
    audio = [_unulaw(b) for _, rtp in records for b in rtp[12:]]
    assert audio[:16000] == [0] * 16000  # two seconds for AlarmReceiver's answait and handshake
    assert _decode_dtmf(audio) == message


def test_scenario_dials_the_alarm_receiver_and_stays_through_the_kissoff(tmp_path: Path) -> None:
    samples = panel_audio([panel_message("1201", "120")])
    pcap = alarm_panel.write_rtp_pcap(samples, tmp_path / "panel.pcap")
    xml = panel_scenario(pcap, samples, "87272920012")
    assert "INVITE sip:alarm@[remote_ip]" in xml and f'play_pcap_audio="{pcap}"' in xml
    assert "sip:87272920012@" in xml
    length = call_length_ms(samples)
    assert length >= len(samples) // 8 + 200 + 900  # the kiss-off: 200 ms wait, 900 ms tone
    assert f'<pause milliseconds="{length}"/>' in xml
