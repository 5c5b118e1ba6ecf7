"""``gateway kamailio up|status|down`` as an operator runs them, against the host's real Kamailio on loopback
with nodes nobody answers on: probing shows them inactive, a changed node list is reloaded into the running
Kamailio, ``down`` leaves no process; with every node down a call is refused at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import settings as config
from gateway.kamailio import proxy
from sim import sipp
from sim import sipp_xml as scenario
from sim.cluster import running_proxy
from sim.lab import REPO, shipped_config
from sim.sipp import free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("kamailio", path="/usr/sbin:/usr/bin") or not shutil.which("sipp"),
    reason="needs root, Debian's kamailio and sipp")


def gateway(path: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(path), "kamailio", action],
                          capture_output=True, text=True, cwd=REPO, timeout=30)


def with_nodes(base: str, path: Path, port: int, nodes: list[int]) -> Path:
    listed = ", ".join(f'"127.0.0.1:{n}"' for n in nodes)
    path.write_text(base + f'\n[cluster]\nenabled = true\nsip_port = {port}\nnodes = [{listed}]\n'
                           f'probe_interval_s = 1\ninstance_dir = "{path.parent / "kamailio"}"\n')
    return path


def test_up_status_reload_down(tmp_path: Path) -> None:
    base = shipped_config(tmp_path).read_text()
    port, a, b = free_port(), free_port(), free_port()
    path = with_nodes(base, tmp_path / "gateway.toml", port, [a, b])
    cfg = config.load(path)
    try:
        up = gateway(path, "up")
        assert up.returncode == 0, up.stderr
        assert f"SIP udp 127.0.0.1:{port} → 127.0.0.1:{a}, 127.0.0.1:{b}" in up.stdout
        first = proxy.pid(proxy.locate(cfg))
        deadline = time.monotonic() + 10
        while "inactive, " not in (status := gateway(path, "status").stdout) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"running pid {first}" in status
        assert f"127.0.0.1:{a} inactive, 127.0.0.1:{b} inactive" in status
        c = free_port()
        with_nodes(base, path, port, [a, b, c])  # a third node: the list is reloaded, Kamailio keeps running
        assert gateway(path, "up").returncode == 0
        assert proxy.pid(proxy.locate(cfg)) == first
        assert f"sip:127.0.0.1:{c}" in proxy.destinations(cfg)
    finally:
        down = gateway(path, "down")
    assert down.returncode == 0 and down.stdout.strip() == "Kamailio stopped"
    assert gateway(path, "status").stdout.startswith("stopped")
    assert first is not None and not proxy._alive(first)


def test_up_refuses_a_config_without_the_cluster(tmp_path: Path) -> None:
    found = gateway(shipped_config(tmp_path), "up")
    assert found.returncode == 2
    assert "cluster.enabled: set it to true" in found.stderr



async def test_with_every_node_down_a_call_is_refused_at_once(tmp_path: Path) -> None:
    """Both nodes probed out: Kamailio answers 503 itself, so the operator's trunk can take its other route
    at once instead of waiting out a timeout."""
    dead = [free_port(), free_port()]
    path = with_nodes(shipped_config(tmp_path).read_text(), tmp_path / "proxy.toml", free_port(), dead)
    with running_proxy(path) as lab:
        for port in dead:
            await lab.wait_flags(f"sip:127.0.0.1:{port}", "I")
        started = time.monotonic()
        result = await sipp.place_call(lab.cfg, scenario.caller("112", "+77015550199", routed=True),
                                       tmp_path / "caller", 10, target=lab.target)
        took = time.monotonic() - started
    assert result.answered_wall is None and took < 3
    assert "SIP/2.0 503 No Asterisk node available" in (tmp_path / "caller" / "messages.log").read_text()
