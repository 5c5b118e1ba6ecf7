"""sipp scenario XML for simulated callers (pure: builds strings, runs nothing).

Each caller gets its own scenario so that every drill line (number, service, DTMF, location,
talk time) is exactly what goes on the wire. sipp logs, per call, the wall time the INVITE left,
so the drill can measure INVITE -> incident stored and INVITE -> dispatcher ringing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

DTMF_PCAP_DIR = Path("/usr/share/sip-tester")
BOUNDARY = "ecgw-boundary-7b1f"
DTMF_NAMES = {"*": "star", "#": "pound"}


def dtmf_pcap(digit: str) -> Path:
    """The RFC 2833 pcap shipped with sip-tester for one DTMF digit."""
    return DTMF_PCAP_DIR / f"dtmf_2833_{DTMF_NAMES.get(digit, digit)}.pcap"


def sip_quote(text: str) -> str:
    """A SIP quoted-string (RFC 3261 25.1): backslash-escape quotes and backslashes, drop CR/LF."""
    cleaned = text.replace("\r", " ").replace("\n", " ")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


def _sdp(owner: str, media_port: str = "[media_port]", indent: str = "") -> str:
    """An SDP offer or answer with PCMU and RFC 2833 events (no trailing newline); ``media_port``
    is a sipp keyword or a ``{placeholder}`` the scenario template fills in."""
    lines = (f"o={owner} 53655765 2353687637 IN IP[local_ip_type] [local_ip]", "s=-", "c=IN IP[media_ip_type] [media_ip]",
             "t=0 0", f"m=audio {media_port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16")
    return "\n".join(indent + line for line in ("v=0", *lines))


def _invite(dialled: str, number: str | None, display: str, pidf_lo: str | None) -> str:
    if number is None:
        from_hdr = 'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=[pid]SIPpTag00[call_number]\nPrivacy: id\n'
        contact_user = "anonymous"
    else:
        name = f"{sip_quote(display)} " if display else ""
        from_hdr = f"From: {name}<sip:{number}@[local_ip]>;tag=[pid]SIPpTag00[call_number]\n"
        contact_user = number
    head = (
        f"INVITE sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0\n"
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
        f"{from_hdr}"
        f"To: <sip:{dialled}@[remote_ip]:[remote_port]>\n"
        "Call-ID: [call_id]\n"
        "CSeq: 1 INVITE\n"
        f"Contact: <sip:{contact_user}@[local_ip]:[local_port]>\n"
        "Max-Forwards: 70\n"
        "User-Agent: ecgw-sim caller\n"
    )
    if pidf_lo is None:
        return head + "Content-Type: application/sdp\nContent-Length: [len]\n\n" + _sdp("caller") + "\n"
    cid = "loc-[call_number]@caller.invalid"
    return (
        head
        + f"Geolocation: <cid:{cid}>\nGeolocation-Routing: yes\n"
        + f"Content-Type: multipart/mixed;boundary={BOUNDARY}\nContent-Length: [len]\n\n"
        + f"--{BOUNDARY}\nContent-Type: application/sdp\n\n{_sdp('caller')}\n\n"
        + f"--{BOUNDARY}\nContent-Type: application/pidf+xml\nContent-ID: <{cid}>\n\n"
        + " ".join(pidf_lo.split("\n"))
        + f"\n--{BOUNDARY}--\n"
    )


def _in_dialog(method: str, cseq: int, dialled: str) -> str:
    """A request inside the caller's dialog (ACK, BYE), ending with its blank line."""
    return (
        f"{method} sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0\n"
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
        "[last_From:]\n[last_To:]\nCall-ID: [call_id]\n"
        f"CSeq: {cseq} {method}\n"
        "Contact: <sip:caller@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Length: 0\n"
    )


def caller(dialled: str, number: str | None, display: str = "", *, pidf_lo: str | None = None,
           dtmf_pcap_file: Path | None = None, first_dtmf_ms: int = 800, talk_ms: int = 5000) -> str:
    """A caller who dials, waits for the answer, keys the DTMF in ``dtmf_pcap_file`` (see
    ``sim.dtmf``) ``first_dtmf_ms`` after the answer, and hangs up ``talk_ms`` after the answer.

    If the far end hangs up first, the call still ends cleanly (a BYE is accepted at any point).
    """
    dtmf_steps = ""
    if dtmf_pcap_file is not None:
        talk_ms = max(0, talk_ms - first_dtmf_ms)
        dtmf_steps = (f'  <pause milliseconds="{first_dtmf_ms}"/>\n'
                      f'  <nop><action><exec play_pcap_audio="{dtmf_pcap_file}"/></action></nop>')
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<scenario name="ecgw caller">
  <nop>
    <action>
      <gettimeofday assign_to="s,us"/>
      <log message="INVITE [$s] [$us] callid=[call_id]"/>
    </action>
  </nop>
  <send retrans="500"><![CDATA[
{_cdata(_invite(dialled, number, display, pidf_lo))}
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv request="BYE" optional="global" next="remote_bye"/>
  <recv response="200" rtd="true">
    <action>
      <gettimeofday assign_to="as,aus"/>
      <log message="ANSWERED [$as] [$aus] callid=[call_id]"/>
    </action>
  </recv>
  <send><![CDATA[
{_in_dialog("ACK", 1, dialled)}
  ]]></send>
{dtmf_steps}
  <pause milliseconds="{talk_ms}"/>
  <send retrans="500"><![CDATA[
{_in_dialog("BYE", 2, dialled)}
  ]]></send>
  <recv response="200" crlf="true" next="done"/>
  <label id="remote_bye"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

  ]]></send>
  <label id="done"/>
</scenario>
"""


def phone(name: str, ring_ms: int = 300) -> str:
    """A dispatcher phone: rings ``ring_ms``, answers, talks until the far end hangs up.

    It logs the wall time each INVITE arrived with the caller's Call-ID and incident id that the
    gateway puts in X-ECGW headers, so drills can measure INVITE -> dispatcher ringing.
    """
    return PHONE_XML.replace("{ring_ms}", str(int(ring_ms))).replace("{name}", name)


# The answering side's headers and SDP, shared by the dispatcher phone and the resident phone.
_UAS_HEADERS = """      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>"""


PHONE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- A dispatcher phone: rings for {ring_ms} ms, answers, talks until the far end hangs up.
     Logs when each INVITE arrived, so drills can measure INVITE -> dispatcher ringing. -->
<scenario name="ecgw dispatcher phone">
  <recv request="INVITE" crlf="true">
    <action>
      <gettimeofday assign_to="s,us"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="X-ECGW-Caller-Call-ID:" check_it="false" assign_to="caller"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="X-ECGW-Incident:" check_it="false" assign_to="incident"/>
    </action>
  </recv>

  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
""" + _UAS_HEADERS + """
      Content-Length: 0

    ]]>
  </send>

  <nop>
    <action>
      <log message="RINGING [$s] [$us] {name} caller=[$caller] incident=[$incident] callid=[call_id]"/>
    </action>
  </nop>

  <pause milliseconds="{ring_ms}"/>

  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
""" + _UAS_HEADERS + """
      Content-Type: application/sdp
      Content-Length: [len]

""" + _sdp("phone", indent="      ") + """
    ]]>
  </send>

  <recv request="ACK" optional="true" rtd="true" crlf="true"/>

  <recv request="BYE"/>

  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>

  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500, 1000"/>
</scenario>
"""


def _number_regexp(numbers: Sequence[str]) -> str:
    """A POSIX ERE matching an INVITE whose Request-URI user is one of ``numbers``."""
    alternatives = "|".join(n.replace("+", "\\+") for n in numbers) or "-no-number-"
    return f"^INVITE sip:({alternatives})@"


def resident(*, reject: Mapping[str, int] | None = None, silent: Sequence[str] = (),
             hang_up_after_ms: Mapping[str, int] | None = None, ring_ms: int = 300, rtp_port: int | None = None) -> str:
    """Residents' phones behind the call-out trunk, one sipp UAS answering every number dialled.

    By number: ``reject`` ones answer with that final status (486 Busy Here, 404 Not Found, ...),
    ``silent`` ones ring until cancelled (487), ``hang_up_after_ms`` ones answer and hang up that
    long after the ACK; every other number rings ``ring_ms`` and answers, then listens until the
    far end hangs up. The answer's SDP points RTP at ``rtp_port`` (a listener that counts the
    audio) when given. Each INVITE is logged with the dialled number and the port Asterisk sends
    RTP from, and each answer too.
    """
    rejects, early = dict(reject or {}), dict(hang_up_after_ms or {})
    tests = [(f"is_reject{i}", n) for i, n in enumerate(rejects)] + [(f"is_early{i}", n) for i, n in enumerate(early)]
    reject_branches = "\n".join(f'  <nop test="is_reject{i}" next="reject{i}"/>' for i in range(len(rejects)))
    early_branches = "\n".join(f'  <nop test="is_early{i}" next="hangup{i}"/>' for i in range(len(early)))
    reject_blocks = "\n".join(
        f'  <label id="reject{i}"/>\n  <send>\n    <![CDATA[\n      SIP/2.0 {int(code)} {REASONS.get(code, "Rejected")}\n'
        f'{_UAS_HEADERS}\n      Content-Length: 0\n\n    ]]>\n  </send>\n  <recv request="ACK" next="end"/>'
        for i, code in enumerate(rejects.values()))
    early_blocks = "\n".join(
        f'  <label id="hangup{i}"/>\n  <pause milliseconds="{int(ms)}"/>\n  <nop next="uas_bye"/>'
        for i, ms in enumerate(early.values()))
    return (RESIDENT_XML
            .replace("{silent_re}", _number_regexp(silent))
            .replace("{tests}", "\n".join(
                f'      <ereg regexp="{_number_regexp([n])}" search_in="msg" check_it="false" assign_to="{var}"/>'
                for var, n in tests))
            .replace("{reject_branches}", reject_branches)
            .replace("{early_branches}", early_branches)
            .replace("{reject_blocks}", reject_blocks)
            .replace("{early_blocks}", early_blocks)
            .replace("{ring_ms}", str(int(ring_ms)))
            .replace("{rtp_port}", str(rtp_port) if rtp_port else "[media_port]"))


REASONS = {404: "Not Found", 410: "Gone", 480: "Temporarily Unavailable", 484: "Address Incomplete",
           486: "Busy Here", 503: "Service Unavailable", 603: "Decline"}

RESIDENT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ecgw residents">
  <recv request="INVITE" crlf="true">
    <action>
      <gettimeofday assign_to="s,us"/>
      <ereg regexp="^INVITE sip:([^@]*)@" search_in="msg" check_it="true" assign_to="uri,number"/>
      <ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="false" assign_to="m,rtp"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseq"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" check_it="true" assign_to="from"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" check_it="true" assign_to="to"/>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
      <ereg regexp="{silent_re}" search_in="msg" check_it="false" assign_to="is_silent"/>
{tests}
      <log message="INVITE [$s] [$us] number=[$number] rtp=[$rtp] callid=[call_id]"/>
      <log message="# sipp insists every variable is used: [$uri] [$m]"/>
    </action>
  </recv>
{reject_branches}

  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
""" + _UAS_HEADERS + """
      Content-Length: 0

    ]]>
  </send>
  <nop test="is_silent" next="silent"/>
  <pause milliseconds="{ring_ms}"/>

  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
""" + _UAS_HEADERS + """
      Content-Type: application/sdp
      Content-Length: [len]

""" + _sdp("resident", "{rtp_port}", indent="      ") + """
    ]]>
  </send>
  <recv request="ACK" crlf="true">
    <action>
      <gettimeofday assign_to="as,aus"/>
      <log message="ANSWERED [$as] [$aus] number=[$number] callid=[call_id]"/>
    </action>
  </recv>
{early_branches}
  <recv request="BYE"/>
  <send next="end">
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

{early_blocks}
  <label id="uas_bye"/>
  <send retrans="500">
    <![CDATA[
      BYE [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to];tag=[pid]SIPpTag01[call_number]
      To: [$from]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="end"/>

{reject_blocks}

  <label id="silent"/>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
""" + _UAS_HEADERS + """
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseq] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>

  <label id="end"/>
</scenario>
"""
