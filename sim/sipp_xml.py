"""sipp scenario XML for simulated callers and phones (pure: builds strings, runs nothing).

Each caller gets its own scenario so that every drill line (number, service, DTMF, location,
talk time) is exactly what goes on the wire. sipp logs, per call, the wall time the INVITE left,
so the drill can measure INVITE -> incident stored and INVITE -> dispatcher ringing.

Every answering phone is built here from the same pieces (the answering side's headers, SDP,
responses): the dispatcher phone (``phone``), the residents behind the call-out trunk
(``resident``) and the phones that answer, reject or key DTMF per number (``answering``, used by
``sim.dtmf_phone`` and ``sim.responders``). ``sim.sipp.answering_sipp`` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


def sdp(owner: str, media_port: str = "[media_port]", indent: str = "") -> str:
    """An SDP offer or answer with PCMU and RFC 2833 events (no trailing newline); ``media_port``
    is a sipp keyword or a ``{placeholder}`` the scenario template fills in."""
    lines = (f"o={owner} 53655765 2353687637 IN IP[local_ip_type] [local_ip]", "s=-",
             "c=IN IP[media_ip_type] [media_ip]", "t=0 0", f"m=audio {media_port} RTP/AVP 0 101",
             "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16")
    return "\n".join(indent + line for line in ("v=0", *lines))


def _invite(dialled: str, number: str | None, display: str, pidf_lo: str | None, location_uri: str = "") -> str:
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
    if location_uri:  # by reference (RFC 6442): the location server has the document
        head += f"Geolocation: <{location_uri}>\nGeolocation-Routing: yes\n"
    if pidf_lo is None:
        return head + "Content-Type: application/sdp\nContent-Length: [len]\n\n" + sdp("caller") + "\n"
    cid = "loc-[call_number]@caller.invalid"
    return (
        head
        + f"Geolocation: <cid:{cid}>\nGeolocation-Routing: yes\n"
        + f"Content-Type: multipart/mixed;boundary={BOUNDARY}\nContent-Length: [len]\n\n"
        + f"--{BOUNDARY}\nContent-Type: application/sdp\n\n{sdp('caller')}\n\n"
        + f"--{BOUNDARY}\nContent-Type: application/pidf+xml\nContent-ID: <{cid}>\n\n"
        + " ".join(pidf_lo.split("\n"))
        + f"\n--{BOUNDARY}--\n"
    )


def _in_dialog(method: str, cseq: int, dialled: str, routed: bool = False) -> str:
    """A request inside the caller's dialog (ACK, BYE), ending with its blank line. ``routed``: to the far
    end's Contact through the proxies that record-routed the INVITE (RFC 3261 12.2.1.1)."""
    target, routes = ("[next_url]", "[routes]\n") if routed else (f"sip:{dialled}@[remote_ip]:[remote_port]", "")
    return (
        f"{method} {target} SIP/2.0\n"
        f"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n{routes}"
        "[last_From:]\n[last_To:]\nCall-ID: [call_id]\n"
        f"CSeq: {cseq} {method}\n"
        "Contact: <sip:caller@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Length: 0\n"
    )


def caller(dialled: str, number: str | None, display: str = "", *, pidf_lo: str | None = None,
           location_uri: str = "", dtmf_pcap_file: Path | None = None, first_dtmf_ms: int = 800,
           talk_ms: int = 5000, routed: bool = False) -> str:
    """A caller who dials, waits for the answer, keys the DTMF in ``dtmf_pcap_file`` (see
    ``sim.dtmf``) ``first_dtmf_ms`` after the answer, and hangs up ``talk_ms`` after the answer. If the far
    end hangs up first, the call still ends cleanly (a BYE is accepted at any point). ``routed``: the ACK
    and BYE follow the Record-Route of the answer (Kamailio in front of the nodes).
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
{_cdata(_invite(dialled, number, display, pidf_lo, location_uri))}
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv request="BYE" optional="global" next="remote_bye"/>
  <recv response="200" rtd="true"{' rrs="true"' if routed else ''}>
    <action>
      <gettimeofday assign_to="as,aus"/>
      <log message="ANSWERED [$as] [$aus] callid=[call_id]"/>
    </action>
  </recv>
  <send><![CDATA[
{_in_dialog("ACK", 1, dialled, routed)}
  ]]></send>
{dtmf_steps}
  <pause milliseconds="{talk_ms}"/>
  <send retrans="500"><![CDATA[
{_in_dialog("BYE", 2, dialled, routed)}
  ]]></send>
  <recv response="200" crlf="true" next="done"/>
  <label id="remote_bye"/>
  <send><![CDATA[
{_ok_to_bye()}
  ]]></send>
  <label id="done"/>
</scenario>
"""


# The answering side's headers and SDP, shared by every phone below.
UAS_HEADERS = """      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>"""

REASONS = {404: "Not Found", 410: "Gone", 480: "Temporarily Unavailable", 484: "Address Incomplete",
           486: "Busy Here", 503: "Service Unavailable", 603: "Decline"}


def number_regexp(numbers: Sequence[str]) -> str:
    """A POSIX ERE matching an INVITE whose Request-URI user is one of ``numbers``."""
    alternatives = "|".join(n.replace("+", "\\+") for n in numbers) or "-no-number-"
    return f"^INVITE sip:({alternatives})@"


def _status(code: int) -> str:
    return f"{int(code)} {REASONS.get(code, 'Rejected')}"


def _response(status: str) -> str:
    """The answering side's bodiless response to the INVITE (180 Ringing, a rejection, 200 to CANCEL)."""
    return f"""  <send>
    <![CDATA[
      SIP/2.0 {status}
{UAS_HEADERS}
      Content-Length: 0

    ]]>
  </send>"""


def _answer(owner: str, media_port: str = "[media_port]") -> str:
    """The 200 OK with the SDP answer, retransmitted until the ACK."""
    return f"""  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
{UAS_HEADERS}
      Content-Type: application/sdp
      Content-Length: [len]

{sdp(owner, media_port, indent="      ")}
    ]]>
  </send>"""


def _ok_to_bye(indent: str = "", contact: str = "") -> str:
    """The 200 OK to the far end's BYE, echoing its headers (``contact``: extra header lines)."""
    echoed = ("SIP/2.0 200 OK", "[last_Via:]", "[last_From:]", "[last_To:]", "[last_Call-ID:]", "[last_CSeq:]")
    return "".join(f"{indent}{line}\n" for line in echoed) + contact + f"{indent}Content-Length: 0\n"


def _bye_ok(attrs: str = "", contact: str = "") -> str:
    """The answering side's send of the 200 OK to the far end's BYE."""
    return f"""  <send{attrs}>
    <![CDATA[
{_ok_to_bye("      ", contact)}
    ]]>
  </send>"""


def _logged(kind: str, time_vars: str, element: str = "<nop>", close: str = "</nop>") -> str:
    """``element`` logging ``KIND <sec> <usec> number=... callid=...`` (``sim.sipp.parse_events``)."""
    sec, usec = time_vars.split(",")
    return (f'  {element}\n    <action>\n      <gettimeofday assign_to="{time_vars}"/>\n'
            f'      <log message="{kind} [${sec}] [${usec}] number=[$number] callid=[call_id]"/>\n'
            f'    </action>\n  {close}')


def phone(name: str, ring_ms: int = 300) -> str:
    """A dispatcher phone: rings ``ring_ms``, answers, talks until the far end hangs up.

    It logs the wall time each INVITE arrived with the caller's Call-ID and incident id that the
    gateway puts in X-ECGW headers, so drills can measure INVITE -> dispatcher ringing.
    """
    return PHONE_XML.replace("{ring_ms}", str(int(ring_ms))).replace("{name}", name)


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

""" + _response("180 Ringing") + """

  <nop>
    <action>
      <log message="RINGING [$s] [$us] {name} caller=[$caller] incident=[$incident] callid=[call_id]"/>
    </action>
  </nop>

  <pause milliseconds="{ring_ms}"/>

""" + _answer("phone") + """

  <recv request="ACK" optional="true" rtd="true" crlf="true"/>

  <recv request="BYE"/>

""" + _bye_ok(contact="      Contact: <sip:[local_ip]:[local_port];transport=[transport]>\n") + """

  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500, 1000"/>
</scenario>
"""


@dataclass(frozen=True)
class Pickup:
    """What an answering phone (``answering``) does with a call to one number.

    With ``reject`` it answers the INVITE with that final status (486 Busy Here, ...): every call,
    or with ``first_only`` only the first call to the number (a sipp global counter), later ones
    are answered. An answered call with ``press`` plays that RFC 2833 pcap (``sim.dtmf``)
    ``press_after_ms`` after the ACK; either way it then lasts until the far end hangs up.
    """

    reject: int | None = None
    first_only: bool = False
    press: Path | None = None
    press_after_ms: int = 0


def answering(name: str, owner: str, numbers: Mapping[str, Pickup], *, others: int | None = None,
              ring_ms: int = 200) -> str:
    """One sipp UAS taking every number dialled at its port: each of ``numbers`` as its Pickup says,
    any other number rejected with the final status ``others`` or, when None, answered until the
    far end hangs up. ``owner`` names the SDP's origin. Logs INVITE, ANSWERED, PRESSED, REJECTED
    and BYE (the far end hung up) with the wall time and the dialled number.
    """
    tests, counting, branches, blocks, codes = _per_number(numbers, others)
    first_only = [i for i, pick in enumerate(numbers.values()) if pick.reject is not None and pick.first_only]
    rejects = [_reject(code) for code in dict.fromkeys(codes)]
    sections = [
        *_invite_received(name, first_only, tests),
        f'  <nop test="listed" next="known"/>\n  <nop next="reject{others}"/>\n  <label id="known"/>'
        if others is not None else "",
        "\n".join(counting),
        _response("180 Ringing"),
        f'  <pause milliseconds="{int(ring_ms)}"/>',
        _answer(owner),
        '  <recv request="BYE" optional="global" next="bye"/>',
        _logged("ANSWERED", "as,aus", '<recv request="ACK" crlf="true">', "</recv>"),
        "\n".join(branches) or "\n",
        '  <label id="listen"/>\n  <recv request="BYE" next="bye"/>',
        "\n".join(blocks) or "\n",
        "\n".join(rejects),
        '  <label id="bye"/>\n' + _logged("BYE", "bs,bus"),
        _bye_ok(),
        '  <label id="end"/>' if rejects else "",
        "</scenario>",
    ]
    # Empty optional sections vanish; the per-number lists leave an empty line, as they always did.
    return "\n".join("" if s == "\n" else s for s in sections if s) + "\n"


def _per_number(numbers: Mapping[str, Pickup],
                others: int | None) -> tuple[list[str], list[str], list[str], list[str], list[int]]:
    """What ``answering`` needs for its numbers: the tests on the dialled number, the jumps to a
    rejection, the jumps to a DTMF block and those blocks, and the final statuses to reject with."""
    tests, counting, branches, blocks = [], [], [], []
    if others is not None:
        tests.append(f'      <ereg regexp="{number_regexp(list(numbers))}" search_in="msg" check_it="false" '
                     'assign_to="listed"/>')
    codes = [others] if others is not None else []
    for i, (number, pick) in enumerate(numbers.items()):
        if pick.reject is None and pick.press is None:
            continue  # only answers: no test needed
        tests.append(f'      <ereg regexp="{number_regexp([number])}" search_in="msg" check_it="false" '
                     f'assign_to="is{i}"/>')
        if pick.reject is not None:
            codes.append(pick.reject)
            counting.append(_first_call(i, pick.reject) if pick.first_only
                            else f'  <nop test="is{i}" next="reject{pick.reject}"/>')
        if pick.press is not None and (pick.reject is None or pick.first_only):
            branches.append(f'  <nop test="is{i}" next="keys{i}"/>')
            blocks.append(_press(i, pick.press, pick.press_after_ms))
    return tests, counting, branches, blocks, codes


def _invite_received(name: str, first_only: list[int], tests: list[str]) -> list[str]:
    """The scenario's opening sections: its globals, then the INVITE received, logged and tested."""
    return [
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">',
        f'<scenario name="{name}">',
        f'  <Global variables="{",".join(f"seen{i}" for i in first_only)}"/>' if first_only else "",
        """  <recv request="INVITE" crlf="true">
    <action>
      <gettimeofday assign_to="s,us"/>
      <ereg regexp="^INVITE sip:([^@]*)@" search_in="msg" check_it="true" assign_to="uri,number"/>""",
        "\n".join(tests) or "\n",
        """      <log message="INVITE [$s] [$us] number=[$number] callid=[call_id]"/>
      <log message="# sipp insists every variable is used: [$uri]"/>
    </action>
  </recv>""",
    ]


def _first_call(i: int, code: int) -> str:
    return (f'  <nop condexec="is{i}">\n    <action>\n      <add assign_to="seen{i}" value="1"/>\n'
            f'      <test assign_to="first{i}" variable="seen{i}" compare="less_than" value="1.5"/>\n'
            f'    </action>\n  </nop>\n  <nop test="first{i}" next="reject{code}"/>')


def _press(i: int, pcap: Path, after_ms: int) -> str:
    return (f'  <label id="keys{i}"/>\n  <pause milliseconds="{int(after_ms)}"/>\n'
            f'  <nop>\n    <action>\n      <exec play_pcap_audio="{pcap}"/>\n'
            f'      <gettimeofday assign_to="ps,pus"/>\n'
            f'      <log message="PRESSED [$ps] [$pus] number=[$number] callid=[call_id]"/>\n'
            f'    </action>\n  </nop>\n  <nop next="listen"/>')


def _reject(code: int) -> str:
    return (f'  <label id="reject{code}"/>\n{_response(_status(code))}\n'
            + _logged("REJECTED", "rs,rus", '<recv request="ACK">', "</recv>") + '\n  <nop next="end"/>')


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
        f'  <label id="reject{i}"/>\n{_response(_status(code))}\n'
        '  <recv request="ACK" next="end"/>'
        for i, code in enumerate(rejects.values()))
    early_blocks = "\n".join(
        f'  <label id="hangup{i}"/>\n  <pause milliseconds="{int(ms)}"/>\n  <nop next="uas_bye"/>'
        for i, ms in enumerate(early.values()))
    return (RESIDENT_XML
            .replace("{silent_re}", number_regexp(silent))
            .replace("{tests}", "\n".join(
                f'      <ereg regexp="{number_regexp([n])}" search_in="msg" check_it="false" assign_to="{var}"/>'
                for var, n in tests))
            .replace("{reject_branches}", reject_branches)
            .replace("{early_branches}", early_branches)
            .replace("{reject_blocks}", reject_blocks)
            .replace("{early_blocks}", early_blocks)
            .replace("{ring_ms}", str(int(ring_ms)))
            .replace("{rtp_port}", str(rtp_port) if rtp_port else "[media_port]"))


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

""" + _response("180 Ringing") + """
  <nop test="is_silent" next="silent"/>
  <pause milliseconds="{ring_ms}"/>

""" + _answer("resident", "{rtp_port}") + """
""" + _logged("ANSWERED", "as,aus", '<recv request="ACK" crlf="true">', "</recv>") + """
{early_branches}
  <recv request="BYE"/>
""" + _bye_ok(' next="end"') + """

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
""" + _response("200 OK") + """
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
