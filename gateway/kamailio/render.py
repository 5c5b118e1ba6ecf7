"""Render Kamailio's config from ``dialplans/kamailio/kamailio.cfg`` and ``[cluster]`` (pure: no I/O but
reading the template).

Kamailio owns ``$...`` in its script, so the template uses the dialplans' ``{{name}}`` placeholders
(``gateway.asterisk.dialplan.fill``: a missing value is an error, never a half-rendered proxy).
``dispatcher.list`` is written whole from ``cluster.nodes``: set 1, one line per node.
"""

from __future__ import annotations

from pathlib import Path

from gateway.asterisk.dialplan import TEMPLATE_DIR, fill
from gateway.errors import ConfigError
from gateway.settings.cluster import ClusterConfig, cluster_problems, split_node

TEMPLATE = TEMPLATE_DIR / "kamailio" / "kamailio.cfg"
# ds_select_dst's algorithm numbers (dispatcher module, Kamailio 5.6)
ALGORITHMS = {"call_id_hash": ("0", "hash over Call-ID"), "round_robin": ("4", "round robin")}
CONFIG_FILE = "kamailio.cfg"
LIST_FILE = "dispatcher.list"
CONTROL_SOCKET = "run/kamailio_ctl"
SET_ID = 1


def node_uri(node: str) -> str:
    """The SIP URI Kamailio sends a node's calls and probes to."""
    host, port = split_node(node)
    return f"sip:{host}:{port}"


def dispatcher_list(cluster: ClusterConfig) -> str:
    """``dispatcher.list``: ``setid destination flags priority attrs``; each node named by its place."""
    lines = ["# set destination flags priority attributes (rendered from [cluster] nodes)"]
    lines += [f"{SET_ID} {node_uri(node)} 0 0 duid=node{i + 1}" for i, node in enumerate(cluster.nodes)]
    return "\n".join(lines) + "\n"


def template_values(cluster: ClusterConfig, instance_dir: str) -> dict[str, str]:
    """Everything the template may refer to; ``instance_dir`` is absolute."""
    number, name = ALGORITHMS[cluster.algorithm]
    listen = cluster.listen
    return {
        "listen": listen,
        "listen_uri_host": f"[{listen}]" if ":" in listen else listen,
        "sip_port": str(cluster.sip_port),
        "children": str(cluster.children),
        "algorithm": number,
        "algorithm_name": name,
        "probe_interval_s": str(cluster.probe_interval_s),
        "invite_timeout_ms": str(cluster.invite_timeout_ms),
        "answer_timeout_ms": str(cluster.answer_timeout_ms),
        "dispatcher_list": f"{instance_dir}/{LIST_FILE}",
        "control_socket": f"{instance_dir}/{CONTROL_SOCKET}",
    }


def render(cluster: ClusterConfig, instance_dir: str, template: Path = TEMPLATE) -> dict[str, str]:
    """File name → text of Kamailio's config and dispatcher list for ``instance_dir`` (absolute). Raises
    ConfigError for a ``[cluster]`` that is off or wrong, or a template placeholder without a value."""
    if not cluster.enabled:
        raise ConfigError(["cluster.enabled: Kamailio runs only with [cluster] enabled = true"])
    problems = cluster_problems(cluster)
    if not instance_dir.startswith("/") or any(ch in instance_dir for ch in "\"\n\r\0"):
        problems.append(f"cluster.instance_dir: expected an absolute path without quotes, got {instance_dir!r}")
    if problems:
        raise ConfigError(problems)
    text = fill(template.read_text(encoding="utf-8"), template_values(cluster, instance_dir), template.name)
    return {CONFIG_FILE: text, LIST_FILE: dispatcher_list(cluster)}
