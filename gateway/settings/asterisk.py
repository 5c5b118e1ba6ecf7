"""``[asterisk]``: where the Asterisk instance lives and how the gateway reaches it (ARI, AMI)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from gateway.settings.base import NAME_RE, Base


class AsteriskConfig(Base, frozen=True):
    mode: Literal["auto", "system", "sandbox"] = "auto"
    sandbox_dir: str = "/var/lib/ecgw/asterisk-sid"
    instance: str = "default"
    sip_port: int = 5060
    http_port: int = 8088
    ami_port: int = 5038
    rtp_start: int = 10000
    rtp_end: int = 20000
    app: str = "ecgw"
    ari_user: str = "ecgw"
    ari_password: str = "change-me-ari"
    ami_user: str = "ecgw"
    ami_password: str = "change-me-ami"
    operator_match: str = "127.0.0.1"
    boot_timeout_s: float = 60.0
    default_language: Literal["kk", "ru", "en"] = "ru"


def asterisk_problems(a: AsteriskConfig, api_port: int, source: str = "<config>") -> list[str]:
    """Cross-field checks of ``[asterisk]``; ``api_port`` is the gateway's own HTTP port (all must differ)."""
    p: list[str] = []
    name_re = re.compile(NAME_RE)
    for key in ("sip_port", "http_port", "ami_port", "rtp_start", "rtp_end"):
        if not 1 <= getattr(a, key) <= 65535:
            p.append(f"{source}: asterisk.{key}: expected a port number 1-65535, got {getattr(a, key)}")
    if a.rtp_start >= a.rtp_end:
        p.append(f"{source}: asterisk.rtp_start: expected below asterisk.rtp_end")
    if len({a.sip_port, a.http_port, a.ami_port, api_port}) < 4:
        p.append(f"{source}: asterisk ports and http.port must all differ")
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,40}$", a.instance):
        p.append(f"{source}: asterisk.instance: expected lower-case letters, digits, - or _, got {a.instance!r}")
    if not a.sandbox_dir.startswith("/") or any(ch in a.sandbox_dir for ch in "\n\r\0") or ".." in a.sandbox_dir:
        p.append(f"{source}: asterisk.sandbox_dir: expected an absolute path without '..', got {a.sandbox_dir!r}")
    for match in a.operator_match.split(","):
        try:
            ipaddress.ip_network(match.strip(), strict=False)
        except ValueError:
            p.append(f"{source}: asterisk.operator_match: expected IP addresses or networks, got {match!r}")
    if not name_re.match(a.app):
        p.append(f"{source}: asterisk.app: expected a name matching {NAME_RE}, got {a.app!r}")
    for key in ("ari_password", "ami_password", "ari_user", "ami_user"):
        value = getattr(a, key)
        if not value or not re.match(r"^[A-Za-z0-9_.@+-]+$", value):
            p.append(f"{source}: asterisk.{key}: expected letters, digits or _.@+- only")
    return p
