"""Kamailio's config rendered from ``[cluster]`` (pure), the section's checks, and reading the dispatcher's
list back (``kamcmd dispatcher.list``). Kamailio itself checks a rendered file when it is installed."""

from __future__ import annotations

import copy
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway import check_config
from gateway import settings as config
from gateway.errors import ConfigError
from gateway.kamailio.proxy import parse_destinations
from gateway.kamailio.render import dispatcher_list, render
from gateway.settings.cluster import ClusterConfig, split_node

RAW: dict[str, Any] = tomllib.loads(config.DEFAULT_PATH.read_text(encoding="utf-8"))
TWO = ClusterConfig(enabled=True, sip_port=5070, nodes=["127.0.0.1:5060", "127.0.0.1:5062"])


def problems(cluster: dict[str, Any]) -> list[str]:
    raw = copy.deepcopy(RAW)
    raw["cluster"] = cluster
    with pytest.raises(ConfigError) as info:
        check_config.parse(raw, "test.toml")
    return info.value.problems


def test_off_by_default_and_the_shipped_config_stays_one_node() -> None:
    cfg = config.load()
    assert not cfg.cluster.enabled and cfg.cluster.nodes == []
    with pytest.raises(ConfigError, match="enabled = true"):
        render(cfg.cluster, "/srv/k")


def test_renders_dispatcher_probing_and_failover() -> None:
    files = render(TWO, "/srv/k")
    text = files["kamailio.cfg"]
    assert "{{" not in text
    assert "listen=udp:127.0.0.1:5070" in text
    assert 'modparam("dispatcher", "ds_ping_interval", 2)' in text
    assert 'modparam("dispatcher", "ds_probing_mode", 1)' in text
    assert 'modparam("dispatcher", "list_file", "/srv/k/dispatcher.list")' in text
    assert 'modparam("tm", "fr_timer", 1500)' in text
    assert 'modparam("ctl", "binrpc", "unix:/srv/k/run/kamailio_ctl")' in text
    assert 'ds_select_dst("1", "4")' in text  # round robin
    assert "record_route();" in text and "ds_next_dst()" in text and 'ds_mark_dst("ip")' in text
    assert files["dispatcher.list"].splitlines()[1:] == [
        "1 sip:127.0.0.1:5060 0 0 duid=node1", "1 sip:127.0.0.1:5062 0 0 duid=node2"]


def test_call_id_hash_and_ipv6() -> None:
    cluster = ClusterConfig(enabled=True, listen="::1", algorithm="call_id_hash", nodes=["[::1]:5060"])
    text = render(cluster, "/srv/k")["kamailio.cfg"]
    assert 'ds_select_dst("1", "0")' in text and "listen=udp:::1:5070" in text
    assert "sip:dispatcher@[::1]:5070" in text
    assert dispatcher_list(cluster).splitlines()[1] == "1 sip:[::1]:5060 0 0 duid=node1"


@pytest.mark.parametrize("node", ["127.0.0.1", "127.0.0.1:", "a b:5060", "::1:5060", "[nothost]:5060", ":5060"])
def test_a_node_must_be_host_and_port(node: str) -> None:
    with pytest.raises(ValueError):
        split_node(node)


def test_check_config_names_every_bad_value() -> None:
    found = problems({"enabled": True, "listen": "kamailio.local", "sip_port": 70000,
                      "nodes": ["127.0.0.1:5060", "127.0.0.1:5060", "asterisk-b", "127.0.0.1:99999"],
                      "probe_interval_s": 0, "invite_timeout_ms": 50, "instance_dir": "../etc"})
    joined = "\n".join(found)
    for expected in ("cluster.listen: expected an IP address", "cluster.sip_port: expected a port number",
                     "cluster.nodes[1]: 127.0.0.1:5060 is listed twice",
                     "cluster.nodes[2]: expected \"host:port\" (an Asterisk's SIP address), got 'asterisk-b'",
                     "cluster.nodes[3]: expected a port number 1-65535, got 99999",
                     "cluster.probe_interval_s: expected 1-60 seconds, got 0",
                     "cluster.invite_timeout_ms: expected 200-30000 ms, got 50", "cluster.instance_dir"):
        assert f"test.toml: {expected}" in joined
    assert problems({"enabled": True}) == [
        'test.toml: cluster.nodes: expected at least one Asterisk node as "host:port"']
    assert any("cluster.nodes[0]" in p and "a loop" in p
               for p in problems({"enabled": True, "nodes": ["127.0.0.1:5070"]}))
    assert any("cluster.algorithm" in p for p in problems({"enabled": True, "algorithm": "random"}))
    assert any("cluster.sip_port: 5060 is this host's Asterisk's" in p
               for p in problems({"enabled": True, "sip_port": 5060, "nodes": ["10.0.0.2:5060"]}))


def test_reads_the_dispatchers_view_of_each_node() -> None:
    text = """{
        NRSETS: 1
        RECORDS: {
            SET: {
                ID: 1
                TARGETS: {
                    DEST: {
                        URI: sip:127.0.0.1:5062
                        FLAGS: IP
                        PRIORITY: 0
                    }
                    DEST: {
                        URI: sip:127.0.0.1:5060
                        FLAGS: AP
                    }"""
    assert parse_destinations(text) == {"sip:127.0.0.1:5062": "IP", "sip:127.0.0.1:5060": "AP"}


@pytest.mark.skipif(not shutil.which("kamailio", path="/usr/sbin:/usr/bin"), reason="kamailio is not installed")
def test_kamailio_accepts_the_rendered_config(tmp_path: Path) -> None:
    for name, text in render(TWO, str(tmp_path)).items():
        (tmp_path / name).write_text(text)
    kamailio = shutil.which("kamailio", path="/usr/sbin:/usr/bin")
    assert kamailio is not None
    result = subprocess.run([kamailio, "-c", "-f", str(tmp_path / "kamailio.cfg")], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 0, result.stderr[-2000:]
