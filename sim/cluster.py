"""Kamailio in front of lab Asterisk nodes on loopback (issue 14): its config written beside the nodes', the
proxy run for the length of a block, and what it did read back (each node's dispatcher state, the node
every INVITE was sent to, the nodes it marked failed)."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from gateway import settings as config
from gateway.errors import KamailioError
from gateway.kamailio import proxy
from sim import sipp
from sim import sipp_xml as scenario
from sim.lab import REPO, AsteriskInstance, GatewayProcess, start_asterisk, stop_asterisk, write_config
from sim.sipp import free_port

CLUSTER_SECTION = """
[cluster]
enabled = true
listen = "127.0.0.1"
sip_port = {port}
nodes = [{nodes}]
algorithm = "{algorithm}"
probe_interval_s = {probe_interval_s}
invite_timeout_ms = {invite_timeout_ms}
instance_dir = "{instance_dir}"
children = 2
"""
NODE_SECTION = """
[cluster]
node_id = "{node_id}"
lease_s = {lease_s}
"""
CLUSTER_TABLE = re.compile(r"(?ms)^\[cluster\]\n.*?(?=^\[|\Z)")
ROUTED = re.compile(r"INVITE (\S+) to node (\S+)")
FAILED = re.compile(r"node (\S+) failed (\S+) \((\d+)\)")


def write_proxy_config(node_config: Path, nodes: Sequence[config.GatewayConfig], workdir: Path, *,
                       probe_interval_s: int = 1, invite_timeout_ms: int = 1500,
                       algorithm: str = "round_robin") -> Path:
    """``node_config`` plus a ``[cluster]`` of Kamailio on a free loopback port in front of ``nodes``."""
    workdir.mkdir(parents=True, exist_ok=True)
    listed = ", ".join(f'"127.0.0.1:{node.asterisk.sip_port}"' for node in nodes)
    text = CLUSTER_TABLE.sub("", node_config.read_text()) + CLUSTER_SECTION.format(
        port=free_port(), nodes=listed, algorithm=algorithm, probe_interval_s=probe_interval_s,
        invite_timeout_ms=invite_timeout_ms, instance_dir=workdir / "instance")
    path = workdir / "kamailio.toml"
    path.write_text(text)
    config.load(path)
    return path


def write_node_config(workdir: Path, node_id: str, dsn: str, *, lease_s: float = 2.0, **options: Any) -> Path:
    """A lab node (``sim.lab.write_config`` with ``options``) named ``node_id`` on the shared PostgreSQL ``dsn``."""
    path = write_config(workdir, **options)
    text = path.read_text().replace("[store]\n", f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n', 1)
    path.write_text(text + NODE_SECTION.format(node_id=node_id, lease_s=lease_s))
    config.load(path)
    return path


@dataclass
class Proxy:
    cfg: config.GatewayConfig

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.cfg.cluster.sip_port}"

    def log(self) -> str:
        path = proxy.locate(self.cfg).log_file
        return path.read_text(errors="replace") if path.exists() else ""

    def routed(self) -> dict[str, str]:
        """Caller's Call-ID → the node Kamailio chose first for its INVITE (``failed`` tells which moved on)."""
        return dict(ROUTED.findall(self.log()))

    def failed(self) -> list[tuple[str, str, str]]:
        """(node URI, Call-ID, status) of every INVITE a node failed and Kamailio passed on."""
        return FAILED.findall(self.log())

    async def destinations(self) -> dict[str, str]:
        return await trio.to_thread.run_sync(proxy.destinations, self.cfg)

    async def wait_flags(self, uri: str, first: str, timeout: float = 10.0) -> float:
        """Until the dispatcher's flags of ``uri`` start with ``first`` (A active, I inactive); the trio time."""
        with trio.fail_after(timeout):
            while True:
                try:
                    if (await self.destinations()).get(uri, "").startswith(first):
                        return trio.current_time()
                except KamailioError:
                    pass  # not answering on its control socket yet
                await trio.sleep(0.05)


@contextmanager
def running_proxy(path: Path) -> Iterator[Proxy]:
    """Kamailio with the ``[cluster]`` of config ``path`` until the block exits (then stopped)."""
    cfg = config.load(path)
    proxy.up(cfg)
    try:
        yield Proxy(cfg)
    finally:
        proxy.down(cfg)


def node_uri(node: AsteriskInstance) -> str:
    """A node as Kamailio's dispatcher names it."""
    return f"sip:127.0.0.1:{node.cfg.asterisk.sip_port}"


@dataclass
class ClusterLab:
    """Running nodes (an Asterisk and its gateway each) with Kamailio in front."""

    proxy: Proxy
    gateways: list[GatewayProcess]
    workdir: Path

    async def call(self, name: str, number: str, talk_ms: int = 300, timeout_s: float = 30) -> sipp.CallResult:
        """A 112 caller through Kamailio, hanging up ``talk_ms`` after the answer; never raises."""
        xml = scenario.caller("112", number, "Cluster", talk_ms=talk_ms, routed=True)
        return await sipp.place_call(self.gateways[0].cfg, xml, self.workdir / name, timeout_s,
                                     target=self.proxy.target)


@asynccontextmanager
async def running_cluster(nodes: Sequence[AsteriskInstance], names: Sequence[str], workdir: Path, *,
                          invite_timeout_ms: int = 1000) -> AsyncIterator[ClusterLab]:
    """Each node's dispatcher phones (sipp) and gateway, and Kamailio probing every second in front of the
    nodes, until the block exits; yielded once Kamailio holds every node active."""
    proxy_config = write_proxy_config(nodes[0].path, [n.cfg for n in nodes], workdir / "kamailio",
                                      probe_interval_s=1, invite_timeout_ms=invite_timeout_ms)
    gateways = [GatewayProcess(n.path, workdir / f"gateway-{name}.log") for n, name in zip(nodes, names, strict=True)]
    async with AsyncExitStack() as stack:
        for i, node in enumerate(nodes):
            await stack.enter_async_context(sipp.phones(node.cfg, workdir / f"phones-{i}"))
        for gateway in gateways:
            stack.push_async_callback(gateway.stop)
            await gateway.start()
        proxy = stack.enter_context(running_proxy(proxy_config))
        for node in nodes:
            await proxy.wait_flags(node_uri(node), "A")
        yield ClusterLab(proxy, gateways, workdir)


def notify_scenario(repeat: int = 3, escalate: bool = True) -> str:
    """A police scenario for drills: console notices to the duty officers, 5 s to acknowledge (the least a
    scenario may give), ``repeat`` attempts, then (``escalate``) the supervisor tier, then closed: long
    enough to be running when a node dies."""
    escalation = '\n[[steps]]\ndo = "escalate"\nwhen = { last_acked = false }\ntier = "shift_supervisor"\n'
    return (f'\n[[steps]]\ndo = "notify"\nroles = ["duty_officer"]\nchannels = ["console"]\ntemplate = '
            f'"incident_new"\nack = "any"\ntimeout_s = 5\nrepeat = {repeat}\n'
            f'{escalation if escalate else ""}\n[[steps]]\ndo = "close"\n')


SCENARIO = notify_scenario()
DISPATCHER = "marat"  # the dispatcher whose token the drills report incidents with


@contextmanager
def started_nodes(dsn: str, names: Sequence[str], base: Path, token: str, *, lease_s: float = 2.0,
                  scenario: str = SCENARIO, extra: str = "") -> Iterator[list[AsteriskInstance]]:
    """Each node's Asterisk (its gateway's config beside it, on ``dsn``, ``[cluster] node_id`` its name) with
    the shipped scenarios, police_rapid's replaced by ``scenario``, and dispatcher ``DISPATCHER`` with
    ``token``, until the block exits. ``extra`` is appended to every node's config (e.g. the warnings channels
    of ``sim.cluster_fanout.drill_channels``)."""
    started: list[AsteriskInstance] = []
    scenarios = base / "scenarios"
    shutil.copytree(REPO / "config" / "scenarios", scenarios, dirs_exist_ok=True)
    (scenarios / "police_rapid.toml").write_text(scenario)
    try:
        for name in names:
            (base / name).mkdir(parents=True, exist_ok=True)
            path = write_node_config(base / name, name, dsn, lease_s=lease_s, ivr=False, ring_timeout=4,
                                     overflow=30)
            with path.open("a") as out:
                out.write(f'\n[[warnings.users]]\nname = "{DISPATCHER}"\nroles = ["dispatcher"]\n'
                          f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
                          f'\n[escalation]\nscenarios_dir = "{scenarios}"\nanswer_sla_s = 600\n{extra}')
            started.append(start_asterisk(path))
        yield started
    finally:
        for node in started:
            stop_asterisk(node)
