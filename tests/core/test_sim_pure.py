"""The simulator's pure parts: sipp scenario XML, DTMF pcap splicing and sipp log parsing."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway.protocols import pidf
from sim import dtmf, sipp
from sim import sipp_xml as scenario

# --- scenario XML ------------------------------------------------------------------------------


def invite(xml: str) -> str:
    """The INVITE the caller scenario sends, as sipp will see it (CDATA already unwrapped)."""
    root = ET.fromstring(xml)
    assert root.tag == "scenario"
    return root.find("send").text  # type: ignore[union-attr,return-value]


def headers(message: str) -> dict[str, str]:
    head = message.strip("\n ").split("\n\n", 1)[0]
    return dict(line.split(": ", 1) for line in head.splitlines()[1:])


def test_caller_is_well_formed_xml_with_the_expected_flow() -> None:
    root = ET.fromstring(scenario.caller("112", "+77012345678", "Айгерім"))
    steps = [child.tag for child in root]
    assert steps[:2] == ["nop", "send"]
    assert "recv" in steps and steps.count("send") == 4  # INVITE, ACK, BYE, 200 to a remote BYE
    assert [el.get("id") for el in root.iter("label")] == ["remote_bye", "done"]
    logs = [el.get("message") for el in root.iter("log")]
    assert logs[0].startswith("INVITE [$s] [$us] callid=")
    assert any(m.startswith("ANSWERED") for m in logs)


def test_caller_invite_headers() -> None:
    msg = invite(scenario.caller("+7102", "+77012345678", "Айгерім"))
    assert msg.strip().startswith("INVITE sip:+7102@[remote_ip]:[remote_port] SIP/2.0")
    hdr = headers(msg)
    assert hdr["From"].startswith('"Айгерім" <sip:+77012345678@[local_ip]>;tag=')
    assert hdr["To"] == "<sip:+7102@[remote_ip]:[remote_port]>"
    assert hdr["Content-Type"] == "application/sdp"
    assert "Geolocation" not in hdr and "Privacy" not in hdr
    assert "telephone-event/8000" in msg


def test_caller_without_display_name_has_bare_from() -> None:
    hdr = headers(invite(scenario.caller("112", "87272123456")))
    assert hdr["From"].startswith("<sip:87272123456@[local_ip]>")


def test_withheld_caller_is_anonymous_with_privacy_id() -> None:
    msg = invite(scenario.caller("112", None, "Secret Name"))
    hdr = headers(msg)
    assert hdr["From"].startswith('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=')
    assert hdr["Privacy"] == "id"
    assert hdr["Contact"].startswith("<sip:anonymous@")
    assert "Secret Name" not in msg


def test_caller_with_pidf_lo_sends_multipart_with_matching_content_id() -> None:
    location = pidf.build("circle", lat=43.2381, lon=76.9456, radius=25)
    msg = invite(scenario.caller("112", "+77012345678", pidf_lo=location))
    hdr = headers(msg)
    cid = hdr["Geolocation"].removeprefix("<cid:").removesuffix(">")
    assert hdr["Geolocation"] == f"<cid:{cid}>"
    assert hdr["Geolocation-Routing"] == "yes"
    boundary = hdr["Content-Type"].split("boundary=", 1)[1]
    assert hdr["Content-Type"] == f"multipart/mixed;boundary={boundary}"
    body = msg.split("\n\n", 1)[1]
    parts = body.split(f"--{boundary}")
    assert parts[-1].strip() == "--"  # closing delimiter
    sdp, xml_part = parts[1], parts[2]
    assert "Content-Type: application/sdp" in sdp and "m=audio" in sdp
    part_head, part_body = xml_part.strip("\n").split("\n\n", 1)
    assert "Content-Type: application/pidf+xml" in part_head
    assert f"Content-ID: <{cid}>" in part_head
    [loc] = pidf.parse(part_body.strip())  # the body is still a valid PIDF-LO on one line
    assert (loc.shape, loc.lat, loc.lon, loc.radius_m) == ("circle", 43.2381, 76.9456, 25.0)
    assert "\n" not in part_body.strip()


def test_cdata_terminator_in_display_name_cannot_break_the_xml() -> None:
    msg = invite(scenario.caller("112", "+77012345678", "evil ]]> <send/>"))
    assert 'From: "evil ]]> <send/>" <sip:' in msg


def test_caller_with_dtmf_plays_the_pcap_and_keeps_total_talk_time(tmp_path: Path) -> None:
    pcap = tmp_path / "keys.pcap"
    root = ET.fromstring(scenario.caller("112", "+77012345678", dtmf_pcap_file=pcap, first_dtmf_ms=800,
                                         talk_ms=5000))
    [play] = [el for el in root.iter("exec")]
    assert play.get("play_pcap_audio") == str(pcap)
    pauses = [int(el.get("milliseconds")) for el in root.iter("pause")]  # type: ignore[arg-type]
    assert pauses == [800, 4200]


def test_caller_without_dtmf_pauses_for_talk_time() -> None:
    root = ET.fromstring(scenario.caller("112", "+77012345678", talk_ms=1234))
    assert [el.get("milliseconds") for el in root.iter("pause")] == ["1234"]
    assert not list(root.iter("exec"))


def test_phone_is_well_formed_xml_and_logs_ringing() -> None:
    root = ET.fromstring(scenario.phone("pos1", ring_ms=250))
    assert root.get("name") == "ecgw dispatcher phone"
    assert [el.get("milliseconds") for el in root.iter("pause")] == ["250"]
    [log] = [el.get("message") for el in root.iter("log")]
    assert log == "RINGING [$s] [$us] pos1 caller=[$caller] incident=[$incident] callid=[call_id]"
    assert {el.get("assign_to") for el in root.iter("ereg")} == {"caller", "incident"}
    sends = [el.text or "" for el in root.iter("send")]
    assert "SIP/2.0 180 Ringing" in sends[0] and "SIP/2.0 200 OK" in sends[1]


def test_phone_ring_time_is_an_integer() -> None:
    root = ET.fromstring(scenario.phone("backup", ring_ms=12.9))  # type: ignore[arg-type]
    assert [el.get("milliseconds") for el in root.iter("pause")] == ["12"]


def labels_and_jumps(xml: str) -> tuple[set[str], set[str]]:
    root = ET.fromstring(xml)
    return ({e.attrib["id"] for e in root.iter("label")},
            {e.attrib["next"] for e in root.iter() if "next" in e.attrib})


def test_answering_phone_rejects_answers_and_presses_per_number() -> None:
    xml = scenario.answering("lab", "tester", {
        "+7701404": scenario.Pickup(reject=404),
        "+7701486": scenario.Pickup(reject=486, first_only=True, press=Path("/k.pcap"), press_after_ms=700),
        "+7701000": scenario.Pickup()}, others=603)
    labels, jumps = labels_and_jumps(xml)
    assert jumps <= labels and {"reject404", "reject486", "reject603", "keys1", "end"} <= labels
    assert '<nop test="is0" next="reject404"/>' in xml and '<nop test="first1" next="reject486"/>' in xml
    assert '<Global variables="seen1"/>' in xml and 'assign_to="is2"' not in xml  # only answers: no test
    assert "SIP/2.0 404 Not Found" in xml and "SIP/2.0 603 Decline" in xml and "o=tester " in xml
    assert '<pause milliseconds="700"/>' in xml and 'play_pcap_audio="/k.pcap"' in xml
    assert "\\+7701404|\\+7701486|\\+7701000" in xml  # the listed numbers escape the 603 for others


def test_answering_phone_that_only_listens_has_no_rejection() -> None:
    xml = scenario.answering("lab", "tester", {}, ring_ms=12.7)  # type: ignore[arg-type]
    labels, jumps = labels_and_jumps(xml)
    assert jumps <= labels and labels == {"listen", "bye"}
    assert "<Global" not in xml and "REJECTED" not in xml and '<pause milliseconds="12"/>' in xml
    assert xml.endswith("</scenario>\n")


def test_parse_events_reads_what_answering_phones_log() -> None:
    text = ("INVITE 1700000000.000000 500000.000000 number=+7701 callid=x\nnoise\n"
            "PRESSED 1700000001 0 number=+7701 callid=x\nRINGING 1 0 pos1 callid=y\nBYE 2.0 0.0 number= callid=z\n")
    assert [(e.kind, e.wall, e.number) for e in sipp.parse_events(text)] == [
        ("INVITE", 1700000000.5, "+7701"), ("PRESSED", 1700000001.0, "+7701"), ("BYE", 2.0, "")]


def test_read_log_of_a_log_not_written_yet(tmp_path: Path) -> None:
    assert sipp.read_log(tmp_path / "nothing.log") == ""
    (tmp_path / "x.log").write_bytes(b"INVITE \xff")
    assert sipp.read_log(tmp_path / "x.log") == "INVITE \ufffd"


@pytest.mark.parametrize("text, quoted", [
    ("Ivan", '"Ivan"'),
    ('Ivan "Big" Petrov', '"Ivan \\"Big\\" Petrov"'),
    ("back\\slash", '"back\\\\slash"'),
    ('\\"', '"\\\\\\""'),
    ("two\r\nlines\nX-Evil: 1", '"two  lines X-Evil: 1"'),
    ("", '""'),
])
def test_sip_quote(text: str, quoted: str) -> None:
    assert scenario.sip_quote(text) == quoted
    assert "\r" not in quoted and "\n" not in quoted


def test_dtmf_pcap_names() -> None:
    assert scenario.dtmf_pcap("5").name == "dtmf_2833_5.pcap"
    assert scenario.dtmf_pcap("*").name == "dtmf_2833_star.pcap"
    assert scenario.dtmf_pcap("#").name == "dtmf_2833_pound.pcap"


# --- DTMF pcap ---------------------------------------------------------------------------------

def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    magic, major, minor, _zone, _sig, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 65535, 1)
    out, off = [], 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        assert incl == orig and usec < 1_000_000
        out.append((sec + usec / 1e6, data[off + 16: off + 16 + incl]))
        off += 16 + incl
    assert off == len(data)
    return out


def rtp(frame: bytes) -> tuple[int, int, int, int, bool]:
    """(payload type, sequence, timestamp, DTMF event, end bit) of an RFC 2833 frame."""
    start = 14 + (frame[14] & 0x0F) * 4 + 8
    _vpxcc, mpt, seq, ts = struct.unpack_from("!BBHI", frame, start)
    event, flags = frame[start + 12], frame[start + 13]
    return mpt & 0x7F, seq, ts, event, bool(flags & 0x80)


needs_pcaps = pytest.mark.skipif(not scenario.DTMF_PCAP_DIR.is_dir(), reason="sip-tester pcaps not installed")


@needs_pcaps
def test_sequence_pcap_for_21_is_one_monotonic_rtp_stream(tmp_path: Path) -> None:
    target = dtmf.sequence_pcap("21", tmp_path / "keys.pcap", gap_ms=600)
    assert target == tmp_path / "keys.pcap"
    packets = read_pcap(target)
    per_digit = [len(dtmf._packets(scenario.dtmf_pcap(d))) for d in "21"]
    assert len(packets) == sum(per_digit)
    fields = [rtp(frame) for _, frame in packets]
    assert {pt for pt, *_ in fields} == {101}
    seqs = [seq for _, seq, *_ in fields]
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:], strict=False)), seqs  # strictly increasing, no gaps
    first, second = fields[: per_digit[0]], fields[per_digit[0]:]
    assert {ev for *_, ev, _end in first} == {2}
    assert {ev for *_, ev, _end in second} == {1}
    ts1, ts2 = {f[2] for f in first}, {f[2] for f in second}
    assert len(ts1) == len(ts2) == 1  # one event, one timestamp
    assert ts2.pop() - ts1.pop() == 600 * 8  # 600 ms at 8 kHz later
    assert first[-1][4] and second[-1][4]  # each digit ends with the end bit


@needs_pcaps
def test_sequence_pcap_timing_and_frames(tmp_path: Path) -> None:
    packets = read_pcap(dtmf.sequence_pcap("21", tmp_path / "k.pcap", gap_ms=600))
    times = [t for t, _ in packets]
    assert times[0] == 0.0
    assert times == sorted(times)
    n = len(dtmf._packets(scenario.dtmf_pcap("2")))
    assert times[n] == pytest.approx(0.6, abs=1e-6)  # the second digit starts one gap later
    original = dtmf._packets(scenario.dtmf_pcap("2"))
    for (_, frame), (_, orig) in zip(packets[:n], original, strict=True):
        assert len(frame) == len(orig)
        udp = 14 + (frame[14] & 0x0F) * 4
        assert frame[:udp] == orig[:udp]  # Ethernet and IP headers untouched
        assert frame[udp + 6: udp + 8] == b"\x00\x00"  # UDP checksum "not computed"
        assert frame[udp + 8: udp + 10] == orig[udp + 8: udp + 10]  # RTP version, marker, payload type
        assert frame[udp + 16:] == orig[udp + 16:]  # SSRC and the DTMF payload itself are unchanged


@needs_pcaps
@pytest.mark.parametrize("digits, events", [("0", [0]), ("*#", [10, 11]), ("911", [9, 1, 1])])
def test_sequence_pcap_event_codes(tmp_path: Path, digits: str, events: list[int]) -> None:
    fields = [rtp(frame) for _, frame in read_pcap(dtmf.sequence_pcap(digits, tmp_path / "k.pcap"))]
    seen = []
    for _pt, _seq, ts, ev, _end in fields:
        if not seen or seen[-1] != (ts, ev):
            seen.append((ts, ev))
    assert [ev for _, ev in seen] == events
    assert [ts for ts, _ in seen] == sorted({ts for ts, _ in seen})


def test_packets_rejects_non_ethernet_pcap(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113))
    with pytest.raises(ValueError, match="Ethernet"):
        dtmf._packets(bad)


# --- sipp log ----------------------------------------------------------------------------------

def test_parse_log_invite_and_ringing_lines() -> None:
    text = (
        "INVITE 1795255979.000000 604066.000000 callid=1-8638@127.0.0.1\n"
        "some sipp noise\n"
        "RINGING 1795255981.000000 845424.000000 pos1 caller=1-8638@127.0.0.1 incident=X callid=Y\n"
        "  ANSWERED 1795255982 4066 callid=1-8638@127.0.0.1  \n"
    )
    invite_line, ringing, answered = sipp.parse_log(text)
    assert invite_line.kind == "INVITE"
    assert invite_line.wall == pytest.approx(1795255979.604066, abs=1e-6)
    assert invite_line.fields == {"callid": "1-8638@127.0.0.1"}
    assert ringing.kind == "RINGING"
    assert ringing.wall == pytest.approx(1795255981.845424, abs=1e-6)
    assert ringing.fields == {"caller": "1-8638@127.0.0.1", "incident": "X", "callid": "Y"}
    assert answered.kind == "ANSWERED"
    assert answered.wall == pytest.approx(1795255982.004066, abs=1e-6)


@pytest.mark.parametrize("line", [
    "",
    "BYE 1795255979.000000 1.000000 callid=x",
    "INVITE now 604066.000000 callid=x",
    "INVITE 1795255979.000000 callid=x",
    "invite 1795255979.000000 604066.000000 callid=x",
    "2025-01-01 INVITE 1795255979.000000 604066.000000 callid=x",
])
def test_parse_log_ignores_other_lines(line: str) -> None:
    assert sipp.parse_log(line) == []


def test_parse_log_keeps_empty_values_and_values_with_equals() -> None:
    [line] = sipp.parse_log("RINGING 1.000000 0.000000 pos2 caller= incident=a=b callid=c")
    assert line.fields == {"caller": "", "incident": "a=b", "callid": "c"}


def test_call_result_properties() -> None:
    lines = sipp.parse_log("INVITE 10.0 500000.0 callid=abc\nANSWERED 11.0 0.0 callid=abc\n")
    result = sipp.CallResult(0, lines, Path("."))
    assert (result.invite_wall, result.answered_wall, result.call_id) == (10.5, 11.0, "abc")
    empty = sipp.CallResult(-1, [], Path("."))
    assert (empty.invite_wall, empty.answered_wall, empty.call_id) == (None, None, "")
