"""Render the Asterisk configuration templates in ``dialplans/`` from the gateway config (pure).

Templates use ``{{name}}`` placeholders because Asterisk itself owns ``${...}``. An unknown or
missing placeholder is an error: a half-rendered dialplan could silently drop emergency calls.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from gateway.errors import ConfigError
from gateway.protocols import call_facts
from gateway.settings import GatewayConfig
from gateway.settings.base import PROJECT
from gateway.settings.cluster import system_name
from gateway.settings.credentials import is_shipped_default

TEMPLATE_DIR = PROJECT / "dialplans"
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
RECORDING_EXT = "WAV"  # Asterisk's wav49 format (format_wav_gsm); lower-case .wav would be 16-bit PCM
# Where cel_custom (dialplans/cel_custom.conf) writes the CEL rows, relative to the instance directory.
CEL_DIR = "log/cel-custom"
# What a call-back leg's recording may be named (recording_index.owner reads it back): never a path.
CALLBACK_RECORDING = "^[0-9]{8}-[0-9]{6}-[0-9A-Za-z.]+-cb[0-9a-f]+$"
CEL_LOG = f"{CEL_DIR}/ecgw-cel.csv"


def fill(text: str, values: dict[str, str], name: str = "<template>") -> str:
    """Replace every ``{{key}}``; raise ConfigError naming each placeholder without a value."""
    missing = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - values.keys())
    if missing:
        raise ConfigError([f"{name}: no value for placeholder(s) {', '.join(missing)}"])
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def template_values(cfg: GatewayConfig, instance_dir: str, moddir: str, datadir: str) -> dict[str, str]:
    """Everything the templates may refer to, as strings. Raises ConfigError for a shipped default
    secret: Asterisk gets the config ``gateway.settings.credentials.resolve`` returns."""
    a = cfg.asterisk
    for key in ("ari_password", "ami_password"):
        if is_shipped_default(getattr(a, key)):
            raise ConfigError([f"asterisk.{key}: a shipped default secret must never reach Asterisk "
                               "(resolve the config with gateway.settings.credentials first)"])
    d = cfg.dispatch
    ring = max(1, int(d.ring_timeout_s))
    return {
        "inst": instance_dir,
        "moddir": moddir,
        "datadir": datadir,
        "sip_port": str(a.sip_port),
        "http_port": str(a.http_port),
        "ami_port": str(a.ami_port),
        "rtp_start": str(a.rtp_start),
        "rtp_end": str(a.rtp_end),
        "app": a.app,
        "ari_user": a.ari_user,
        "ari_password": a.ari_password,
        "ami_user": a.ami_user,
        "ami_password": a.ami_password,
        "operator_match": a.operator_match,
        "default_language": a.default_language,
        "ring_timeout": str(ring),
        "position_sections": position_sections(cfg),
        "fallback_dial": fallback_dial(cfg),
        "fallback_dial_line": fallback_dial_1402(cfg),
        "backup_dial": "PJSIP/ecgw-backup" if d.backup else fallback_dial(cfg),
        "service_routes": service_routes(cfg),
        "deliver_routes": deliver_routes(cfg, ring),
        "record_call": record_call(cfg, instance_dir),
        "record_callback": record_callback(cfg, instance_dir, "ECGW_CALLBACK_INCIDENT"),
        "record_auto_callback": record_callback(cfg, instance_dir, "ECGW_INCIDENT"),
        "talk_detect": talk_detect(cfg),
        "call_facts": call_facts.dialplan_value(),
        **callback_values(cfg),
        **node_values(cfg),
    }


def node_values(cfg: GatewayConfig) -> dict[str, str]:
    """asterisk.conf's systemname, and how the dialplan takes the "<epoch>.<n>" part of a UNIQUEID and
    names the node in the incident id: "20261205-024200-nodea.1764800000.12" (one node: no name)."""
    name = system_name(cfg.cluster.node_id)
    if not name:
        return {"systemname": "; systemname: unset ([cluster] node_id is empty: one node)",
                "unique_id": "${UNIQUEID}", "incident_node": ""}
    return {"systemname": f"systemname = {name}", "unique_id": "${CUT(UNIQUEID,-,2)}", "incident_node": f"{name}."}


def talk_detect(cfg: GatewayConfig) -> str:
    """The dialplan line turning on Asterisk's talk detection for a caller (``intake.silence``): the gateway
    hears ChannelTalkingStarted when the caller speaks. Off: nobody is ever marked silent."""
    s = cfg.silence
    if not s.enabled:
        return " same => n,NoOp(talk detection disabled in the gateway config)"
    return f" same => n,Set(TALK_DETECT(set)={s.threshold_ms},{s.energy})"


def callback_values(cfg: GatewayConfig) -> dict[str, str]:
    """``[ecgw-callback]``: the caller's leg of a dispatcher's call-back, over the call-out trunk."""
    cb = cfg.callback
    scheme, host = cb.trunk_uri.split(":", 1)
    return {"callback_caller_id": cb.caller_id, "callback_ring": str(max(1, int(cb.caller_ring_s))),
            "callback_dial": f"PJSIP/{cb.endpoint}/{scheme}:${{ECGW_CALLBACK_TO}}@{host}"}


def recordings_dir(cfg: GatewayConfig, instance_dir: str) -> str:
    """Where Asterisk writes call recordings (``instance_dir`` as Asterisk sees it)."""
    return f"{instance_dir}/{cfg.recordings.dir}"


def record_call(cfg: GatewayConfig, instance_dir: str) -> str:
    """The dialplan line recording an emergency call into ``<incident id>.WAV``. MixMonitor, not an ARI
    recording: it records both directions and stays on the channel after it leaves Stasis for the
    dispatcher's Dial or the fallback dialplan. ``.WAV`` (capitals) is Asterisk's wav49: GSM 06.10 in a
    WAV file, ~1.6 kB/s, written natively and read by sox and most players."""
    if not cfg.recordings.enabled:
        return " same => n,NoOp(call recording disabled in the gateway config)"
    return f" same => n,MixMonitor({recordings_dir(cfg, instance_dir)}/${{ECGW_INCIDENT}}.{RECORDING_EXT})"


def record_callback(cfg: GatewayConfig, instance_dir: str, incident_var: str) -> str:
    """The dialplan lines recording a call-back leg (``callback-<hex>``, the channel id the gateway gave it)
    into ``<incident id>-cb<hex>.WAV`` (``incident.recording_index.leg_stem``), on the incident in
    ``incident_var``. The name becomes part of a path: it is checked first, and not recorded if odd."""
    if not cfg.recordings.enabled:
        return " same => n,NoOp(call recording disabled in the gateway config)"
    return (f" same => n,Set(ECGW_CB_RECORDING=${{{incident_var}}}-cb${{CUT(UNIQUEID,-,2)}})\n"
            f' same => n,ExecIf($[${{REGEX("{CALLBACK_RECORDING}" ${{ECGW_CB_RECORDING}})}}]?MixMonitor('
            f"{recordings_dir(cfg, instance_dir)}/${{ECGW_CB_RECORDING}}.{RECORDING_EXT}))")


def position_sections(cfg: GatewayConfig) -> str:
    """One endpoint + AOR per dispatcher position, plus the backup centre if configured."""
    targets = [(f"ecgw-pos-{p.name}", p.contact) for p in cfg.dispatch.positions]
    if cfg.dispatch.backup:
        targets.append(("ecgw-backup", cfg.dispatch.backup))
    blocks = []
    for endpoint, contact in targets:
        blocks.append(
            f"[{endpoint}](ecgw-phone)\naors = {endpoint}\n\n"
            f"[{endpoint}]\ntype = aor\ncontact = {contact}\nmax_contacts = 1\n"
        )
    return "\n".join(blocks)


def fallback_dial(cfg: GatewayConfig) -> str:
    """Dial string ringing every fallback position at once (default: all positions)."""
    names = cfg.dispatch.fallback_positions or [p.name for p in cfg.dispatch.positions]
    return "&".join(f"PJSIP/ecgw-pos-{n}" for n in names)


def fallback_dial_1402(cfg: GatewayConfig) -> str:
    """Dial string of the fallback for a 1402 caller: the 1402 positions among the fallback ones (all of
    them if none is), so it never takes a 102/112 position; with no 1402 position at all, the usual one."""
    d = cfg.dispatch
    line = [p.name for p in d.positions if p.group == "1402"]
    names = [n for n in line if n in d.fallback_positions] or line
    return "&".join(f"PJSIP/ecgw-pos-{n}" for n in names) or fallback_dial(cfg)


def deliver_routes(cfg: GatewayConfig, ring_s: int) -> str:
    """One extension per position in ``ecgw-deliver``: ring it (with ringback to the caller)."""
    lines = []
    for p in cfg.dispatch.positions:
        lines.append(f"exten => {p.name},1,Dial(PJSIP/ecgw-pos-{p.name},{ring_s},b(ecgw-phone-headers^s^1)r)")
        lines.append(' same => n,GotoIf($["${DIALSTATUS}" = "ANSWER"]?done,1:back,1)')
    return "\n".join(lines)


def service_routes(cfg: GatewayConfig) -> str:
    """Dialplan lines sending every dialled form of every service into the emergency context."""
    lines = []
    for svc in cfg.services:
        for number in svc.dialled:
            lines.append(f"exten => {number},1,Set(ECGW_SERVICE={svc.name})")
            lines.append(" same => n,Goto(ecgw-emergency,s,1)")
    return "\n".join(lines)


def render_all(
    cfg: GatewayConfig, instance_dir: str, moddir: str, datadir: str, template_dir: Path = TEMPLATE_DIR
) -> dict[str, str]:
    """Map of file name → rendered text for every ``*.conf`` template."""
    values = template_values(cfg, instance_dir, moddir, datadir)
    return {
        path.name: fill(path.read_text(encoding="utf-8"), values, path.name)
        for path in sorted(template_dir.glob("*.conf"))
    }


def listen_addresses(files: dict[str, str]) -> dict[str, list[str]]:
    """Where the rendered configs make ARI (``http.conf``) and AMI (``manager.conf``) listen, as
    Asterisk reads them: a missing ``bindaddr`` means every address; TLS listeners and AMI over HTTP
    count too."""
    http, manager = _general(files.get("http.conf", "")), _general(files.get("manager.conf", ""))
    ari = _listeners(http, "bindaddr") if _yes(http.get("enabled", "no")) else []
    ami = _listeners(manager, "bindaddr") if _yes(manager.get("enabled", "no")) else []
    if _yes(manager.get("webenabled", "no")):
        ami += ari
    return {"ari": ari, "ami": ami}


def is_loopback(address: str) -> bool:
    """``127.0.0.1``, ``127.0.0.1:8089``, ``::1`` or ``[::1]:8089``; a name or anything else is not."""
    host = address.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listeners(general: dict[str, str], key: str) -> list[str]:
    found = [general.get(key, "0.0.0.0")]
    if _yes(general.get("tlsenable", "no")):
        found.append(general.get("tlsbindaddr", "0.0.0.0"))
    return found


def _yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "y", "t", "1", "on")


def _general(text: str) -> dict[str, str]:
    """The ``[general]`` section of an Asterisk .conf file (comments after ``;``)."""
    values: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line[1:].split("]", 1)[0].strip()
        elif section == "general" and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip().lower()] = value.lstrip(">").strip()
    return values
