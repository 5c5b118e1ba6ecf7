"""Real tier, issue 14: Kamailio in front of two real Asterisk nodes on loopback.

No gateway runs: each node's fallback dialplan rings its own dispatcher phones (sipp), which answer, so a
caller's answer proves which node took the call (its phone saw the caller's Call-ID). Kamailio spreads
calls over both; with node A killed (SIGKILL), its OPTIONS probing marks A inactive and the next call is
answered by B; a Kamailio that has not probed A since it died sends a call there once, and its
failure_route moves it to B after the INVITE timeout (``fr_timer``)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from gateway.asterisk import sandbox
from sim import sipp
from sim import sipp_xml as scenario
from sim.cluster import Proxy, running_proxy, write_proxy_config
from sim.lab import AsteriskInstance, start_asterisk, stop_asterisk, write_config
from tests.conftest import _real_tier_available

INVITE_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AsteriskInstance]]:
    reason = _real_tier_available() or (None if shutil.which("kamailio", path="/usr/sbin:/usr/bin")
                                        else "kamailio is not installed")
    if reason and os.environ.get("CI"):
        pytest.fail(f"real tier required in CI: {reason}")
    if reason:
        pytest.skip(reason)
    started: list[AsteriskInstance] = []
    try:
        for name in ("node-a", "node-b"):
            started.append(start_asterisk(write_config(tmp_path_factory.mktemp(name), ring_timeout=4, overflow=30)))
        yield started
    finally:
        for node in started:
            stop_asterisk(node)


def uri(node: AsteriskInstance) -> str:
    return f"sip:127.0.0.1:{node.cfg.asterisk.sip_port}"


@asynccontextmanager
async def phones(nodes: list[AsteriskInstance], workdir: Path) -> AsyncIterator[dict[str, sipp.Phones]]:
    """Each node's dispatcher phones, by the node's URI."""
    async with AsyncExitStack() as stack:
        yield {uri(node): await stack.enter_async_context(sipp.phones(node.cfg, workdir / f"phones-{i}"))
               for i, node in enumerate(nodes)}


def answered_by(found: dict[str, sipp.Phones], call_id: str) -> list[str]:
    """The nodes whose phones rang for the caller's Call-ID."""
    return [node for node, p in found.items()
            if any(line.fields.get("caller") == call_id for line in p.lines() if line.kind == "RINGING")]


async def call(lab: Proxy, nodes: list[AsteriskInstance], workdir: Path, number: str) -> sipp.CallResult:
    xml = scenario.caller("112", number, "Cluster", talk_ms=300, routed=True)
    result = await sipp.place_call(nodes[0].cfg, xml, workdir, 20, target=lab.target)
    assert result.returncode == 0 and result.answered_wall is not None, f"not answered; see {workdir}"
    return result


async def test_calls_are_spread_over_both_nodes(nodes: list[AsteriskInstance], tmp_path: Path) -> None:
    with running_proxy(write_proxy_config(nodes[0].path, [n.cfg for n in nodes], tmp_path / "kamailio")) as lab:
        for node in nodes:
            await lab.wait_flags(uri(node), "A")
        async with phones(nodes, tmp_path) as found:
            results = [await call(lab, nodes, tmp_path / f"call-{i}", f"+7701555000{i}") for i in range(4)]
            await trio.sleep(0.5)
            routed = lab.routed()
            assert sorted(routed[r.call_id] for r in results) == sorted([uri(nodes[0]), uri(nodes[1])] * 2)
            assert [answered_by(found, r.call_id) for r in results] == [[routed[r.call_id]] for r in results]
        assert lab.failed() == []


async def test_a_killed_node_is_probed_out_and_a_call_sent_to_it_fails_over(
    nodes: list[AsteriskInstance], tmp_path: Path
) -> None:
    """Kills node A: the module's last test."""
    dead, alive = nodes
    configs = [n.cfg for n in nodes]
    probing = write_proxy_config(dead.path, configs, tmp_path / "probing", probe_interval_s=1,
                                 invite_timeout_ms=INVITE_TIMEOUT_MS)
    unaware = write_proxy_config(dead.path, configs, tmp_path / "unaware", probe_interval_s=60,
                                 invite_timeout_ms=INVITE_TIMEOUT_MS)
    with running_proxy(probing) as probed, running_proxy(unaware) as stale:
        for node in nodes:
            await probed.wait_flags(uri(node), "A")
        async with phones(nodes, tmp_path) as found:
            pid = sandbox.pid(sandbox.locate(dead.cfg))
            assert pid is not None
            killed, killed_wall = trio.current_time(), time.time()
            os.kill(pid, signal.SIGKILL)
            marked = await probed.wait_flags(uri(dead), "I", timeout=10) - killed
            after = await call(probed, nodes, tmp_path / "after-probe", "+77015550100")
            assert after.answered_wall is not None
            answered = after.answered_wall - killed_wall
            # The unaware proxy still holds A active: round robin sends one of two calls there first.
            moved = [await call(stale, nodes, tmp_path / f"failover-{i}", f"+7701555011{i}") for i in range(2)]
            await trio.sleep(0.5)
            assert answered_by(found, after.call_id) == [uri(alive)]
            assert all(answered_by(found, r.call_id) == [uri(alive)] for r in moved)
        assert probed.routed()[after.call_id] == uri(alive)
        failed = stale.failed()
        assert [(node, status) for node, _call_id, status in failed] == [(uri(dead), "408")]
        [over] = [r for r in moved if r.call_id == failed[0][1]]
        assert over.invite_wall is not None and over.answered_wall is not None
        failover_s = over.answered_wall - over.invite_wall
        assert INVITE_TIMEOUT_MS / 1000 <= failover_s <= INVITE_TIMEOUT_MS / 1000 + 3
        assert (await stale.destinations())[uri(dead)].startswith("I")
    print(f"kill -> marked inactive {marked:.2f} s; kill -> next call answered on B {answered:.2f} s; "
          f"call sent to the dead node answered on B after {failover_s:.2f} s")
