"""gateway.asterisk.ami.monitor against loopback peers: nothing listening, a peer that accepts and
closes at once, and a scripted AMI that goes away and comes back. Retries follow one backoff
schedule (never a second loop of panoramisk's own), the log says "lost" and "back" once each,
``AsteriskHealth.connected`` turns false at the next poll once Asterisk is gone, and no session stays
open between polls (an open one makes Asterisk write every channel event of every call as AMI text)."""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
from panoramisk import manager as panoramisk_manager

from gateway.asterisk import ami
from gateway.metrics import Metrics
from gateway.settings import AsteriskConfig

WINDOW_S = 5.0


def _noisy(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith(("panoramisk", "gateway.asterisk"))]


def _count_connects(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ``Manager.connect`` call (ours or panoramisk's own reconnects), as monotonic times."""
    times: list[float] = []
    real = panoramisk_manager.Manager.connect

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        times.append(time.monotonic())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(panoramisk_manager.Manager, "connect", counted)
    return times


def _assert_backing_off(times: list[float]) -> None:
    """Gaps no shorter than the schedule's lower halves: 0.25, 0.5, 1, 2, ... (0.5 s doubling, jitter)."""
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) >= 3, times  # it does keep trying
    for i, gap in enumerate(gaps):
        assert gap >= 0.9 * min(0.5 * 2**i, 10.0) / 2, f"attempt {i + 2} after {gap:.2f} s; gaps {gaps}"


async def _run_monitor_for(port: int, seconds: float) -> ami.AsteriskHealth:
    health = ami.AsteriskHealth()
    with trio.move_on_after(seconds):
        await ami.monitor(AsteriskConfig(ami_port=port), health, Metrics(), every_s=0.2)
    return health


async def test_nothing_listening_backs_off(monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    times = _count_connects(monkeypatch)
    with socket.socket() as bound:  # holds a port nobody listens on: every connect is refused
        bound.bind(("127.0.0.1", 0))
        health = await _run_monitor_for(bound.getsockname()[1], WINDOW_S)
    _assert_backing_off(times)
    assert len(_noisy(caplog)) == 1, _noisy(caplog)
    assert not health.connected


async def test_accept_and_close_backs_off(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    times = _count_connects(monkeypatch)
    accepted: list[float] = []

    async def slam(stream: trio.SocketStream) -> None:
        accepted.append(time.monotonic())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, slam, 0, host="127.0.0.1"))
        await _run_monitor_for(listeners[0].socket.getsockname()[1], WINDOW_S)
        nursery.cancel_scope.cancel()
    _assert_backing_off(times)
    assert len(accepted) == len(times)
    assert len(_noisy(caplog)) == 1, _noisy(caplog)


def _reply(fields: dict[str, str]) -> list[bytes]:
    """What a fully booted Asterisk answers to one action (only the ones the monitor sends)."""
    action, aid = fields.get("Action", "").lower(), fields.get("ActionID", "")
    if action == "login":
        return [f"Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n".encode(),
                b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"]
    if action == "corestatus":
        return [f"Response: Success\r\nActionID: {aid}\r\nCoreCurrentCalls: 3\r\n\r\n".encode()]
    return [f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n".encode()]


async def _fake_asterisk(stream: trio.SocketStream, sessions: list[tuple[float, float, list[str]]] | None = None
                         ) -> None:
    """A fully booted Asterisk's AMI; each session's (opened, closed, actions) goes into ``sessions``."""
    opened, actions = time.monotonic(), []
    try:
        await _serve_ami(stream, actions)
    finally:
        if sessions is not None:
            sessions.append((opened, time.monotonic(), actions))


async def _serve_ami(stream: trio.SocketStream, actions: list[str]) -> None:
    async with stream:
        await stream.send_all(b"Asterisk Call Manager/5.0.1\r\n")
        buffer = b""
        while data := await stream.receive_some():
            buffer += data
            while b"\r\n\r\n" in buffer:
                message, buffer = buffer.split(b"\r\n\r\n", 1)
                fields = dict(line.split(": ", 1) for line in message.decode().split("\r\n") if ": " in line)
                actions.append(fields.get("Action", ""))
                for chunk in _reply(fields):
                    await stream.send_all(chunk)


async def _until(condition: Callable[[], bool], within_s: float) -> None:
    with trio.fail_after(within_s):
        while not condition():
            await trio.sleep(0.02)


async def test_health_follows_asterisk_away_and_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    health = ami.AsteriskHealth()
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            asterisk = trio.CancelScope()

            async def run_asterisk(port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                with asterisk:
                    await trio.serve_tcp(_fake_asterisk, port, host="127.0.0.1", task_status=task_status)

            listeners = await nursery.start(run_asterisk, 0)
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(ami.monitor, AsteriskConfig(ami_port=port), health, Metrics(), 0.2)
            await _until(lambda: health.connected, 3)
            assert health.fully_booted and health.channels == 3

            asterisk.cancel()  # Asterisk dies: /health says so at the next poll, not when a reply times out
            await _until(lambda: not health.connected, 1)
            assert not health.fully_booted

            asterisk = trio.CancelScope()
            await nursery.start(run_asterisk, port)  # back on the same port (trio sets SO_REUSEADDR)
            await _until(lambda: health.connected, 5)
            nursery.cancel_scope.cancel()
    assert [m.split(" (")[0].split(" after")[0] for m in _noisy(caplog)] == ["AMI unavailable", "AMI back"]


async def test_each_poll_is_a_short_session_of_its_own() -> None:
    sessions: list[tuple[float, float, list[str]]] = []
    health = ami.AsteriskHealth()
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(
                trio.serve_tcp, functools.partial(_fake_asterisk, sessions=sessions), 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(ami.monitor, AsteriskConfig(ami_port=port), health, Metrics(), 0.5)
            await _until(lambda: len(sessions) >= 4, 8)
            nursery.cancel_scope.cancel()
    assert health.channels == 3
    for opened, closed, actions in sessions[:4]:
        assert [a.lower() for a in actions] == ["login", "corestatus"], actions
        assert closed - opened < 0.4, "the session stayed open after its poll"
    starts = [opened for opened, _, _ in sessions[:4]]
    assert all(b - a >= 0.49 for a, b in zip(starts, starts[1:], strict=False)), starts  # one poll per every_s
