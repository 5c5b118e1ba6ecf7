"""``[cluster]``: Kamailio in front of several Asterisk nodes (issue 14). Off by default: one node, no proxy.

Kamailio (Debian's ``kamailio`` package, dispatcher module) takes the operator trunk on ``listen:sip_port``
and spreads INVITEs over ``nodes`` (each an Asterisk's SIP ``host:port``), probing them with OPTIONS every
``probe_interval_s`` and routing around one that does not answer (``gateway.kamailio``).

``node_id`` and ``lease_s`` hold with the Kamailio part on or off: several gateways sharing one PostgreSQL
store lease each scenario run to one node (``gateway.scenario.leases``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from gateway.settings.base import Base

HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
DIR_RE = re.compile(r"^[A-Za-z0-9_./-]{1,200}$")
NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ClusterConfig(Base, frozen=True):
    """``algorithm``: ``round_robin`` spreads calls in turn; ``call_id_hash`` sends a Call-ID to the same
    node every time. ``invite_timeout_ms``: how long an INVITE waits for any reply from a node before the
    next node is tried (Kamailio's ``fr_timer``); ``answer_timeout_ms``: for the final reply once a node
    has answered provisionally (``fr_inv_timer``). ``instance_dir``: Kamailio's config, pid file, control
    socket and log (a relative path resolves like the stores'); Kamailio drops root only when its account
    can reach it (``gateway.kamailio.proxy``). ``node_id``: this gateway's name in the leases of the
    scenario runs it executes (empty: "local" on SQLite, one drawn per process on PostgreSQL; each node
    needs its own); ``lease_s``: how long a dead node's runs wait before another node takes them over."""

    enabled: bool = False
    listen: str = "127.0.0.1"
    sip_port: int = 5070
    nodes: list[str] = []
    algorithm: Literal["round_robin", "call_id_hash"] = "round_robin"
    probe_interval_s: int = 2
    invite_timeout_ms: int = 1500
    answer_timeout_ms: int = 120_000
    instance_dir: str = "/var/lib/ecgw/kamailio"
    children: int = 4
    node_id: str = ""
    lease_s: float = 5.0


def system_name(node_id: str) -> str:
    """A node's Asterisk ``systemname``: ``node_id`` in letters and digits only ("" for one node). Asterisk puts
    it before every UNIQUEID ("nodea-1764800000.12"), so two nodes' channel ids (and the incident ids made from
    them) never collide, and a channel id tells which node's Asterisk had the call."""
    return re.sub(r"[^0-9A-Za-z]", "", node_id)[:16]


def split_node(node: str) -> tuple[str, int]:
    """``"127.0.0.1:5060"`` or ``"[::1]:5060"`` → (host, port). Raises ValueError for anything else."""
    host, sep, port = node.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(node)
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])
    elif not HOST_RE.match(host) or ":" in host:
        raise ValueError(node)
    return host, int(port)


def _address_problem(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return True
    return False


def cluster_problems(c: ClusterConfig, source: str = "<config>", asterisk_sip_port: int | None = None) -> list[str]:
    """Checks of ``[cluster]``; a section left off (the default) is never wrong. ``asterisk_sip_port``: this
    host's Asterisk (on 127.0.0.1), which Kamailio must not try to listen beside on the same port."""
    p: list[str] = []
    if c.node_id and not NODE_RE.match(c.node_id):
        p.append(f"{source}: cluster.node_id: expected up to 64 letters, digits, _ . and -, got {c.node_id!r}")
    if not 1.0 <= c.lease_s <= 60.0:
        p.append(f"{source}: cluster.lease_s: expected 1-60 seconds, got {c.lease_s:g}")
    if not c.enabled:
        return p
    if c.sip_port == asterisk_sip_port and c.listen in ("127.0.0.1", "0.0.0.0"):
        p.append(f"{source}: cluster.sip_port: {c.sip_port} is this host's Asterisk's (asterisk.sip_port): "
                 "give Kamailio a port of its own")
    if _address_problem(c.listen):
        p.append(f"{source}: cluster.listen: expected an IP address Kamailio listens on, got {c.listen!r}")
    if not 1 <= c.sip_port <= 65535:
        p.append(f"{source}: cluster.sip_port: expected a port number 1-65535, got {c.sip_port}")
    if not c.nodes:
        p.append(f"{source}: cluster.nodes: expected at least one Asterisk node as \"host:port\"")
    seen: set[tuple[str, int]] = set()
    for i, node in enumerate(c.nodes):
        try:
            host, port = split_node(node)
        except ValueError:
            p.append(f"{source}: cluster.nodes[{i}]: expected \"host:port\" (an Asterisk's SIP address), got {node!r}")
            continue
        if not 1 <= port <= 65535:
            p.append(f"{source}: cluster.nodes[{i}]: expected a port number 1-65535, got {port}")
        if (host, port) == (c.listen, c.sip_port):
            p.append(f"{source}: cluster.nodes[{i}]: {node} is Kamailio's own address (a loop)")
        if (host, port) in seen:
            p.append(f"{source}: cluster.nodes[{i}]: {node} is listed twice")
        seen.add((host, port))
    if not 1 <= c.probe_interval_s <= 60:
        p.append(f"{source}: cluster.probe_interval_s: expected 1-60 seconds, got {c.probe_interval_s}")
    if not 200 <= c.invite_timeout_ms <= 30_000:
        p.append(f"{source}: cluster.invite_timeout_ms: expected 200-30000 ms, got {c.invite_timeout_ms}")
    if not c.invite_timeout_ms <= c.answer_timeout_ms <= 600_000:
        p.append(f"{source}: cluster.answer_timeout_ms: expected from invite_timeout_ms to 600000 ms, "
                 f"got {c.answer_timeout_ms}")
    if not 1 <= c.children <= 64:
        p.append(f"{source}: cluster.children: expected 1-64 processes, got {c.children}")
    if not DIR_RE.match(c.instance_dir) or ".." in c.instance_dir.split("/"):
        p.append(f"{source}: cluster.instance_dir: expected a path of letters, digits, _ . / and - without "
                 f"'..', got {c.instance_dir!r}")
    return p
