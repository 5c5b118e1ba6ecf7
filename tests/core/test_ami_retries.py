"""gateway.asterisk.ami.Retries, the AMI reconnect schedule and what it logs: no loop, times passed in."""

from __future__ import annotations

import logging

import pytest

from gateway.asterisk.ami import Retries

REFUSED = ConnectionRefusedError(111, "Connect call failed")


def test_delays_double_to_the_cap_with_jitter_and_start_over_once_up() -> None:
    retries = Retries(first_s=0.5, cap_s=10.0)
    waits = [retries.failed(REFUSED, now=float(i)) for i in range(8)]
    for wait, ceiling in zip(waits, [0.5, 1, 2, 4, 8, 10, 10, 10], strict=True):
        assert ceiling / 2 <= wait <= ceiling
    retries.up(now=8.0)
    assert 0.25 <= retries.failed(REFUSED, now=9.0) <= 0.5


def test_one_line_when_lost_one_when_back_and_a_reminder_between(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.asterisk.ami")
    retries = Retries(remind_s=300.0)
    now = 0.0
    while now < 650.0:  # ~65 retries at the cap: without the quiet, as many lines
        now += retries.failed(REFUSED, now)
    retries.up(now)
    lines = [r.getMessage().split(" (")[0].split(" after")[0] for r in caplog.records]
    assert lines == ["AMI unavailable", "AMI still unavailable", "AMI still unavailable", "AMI back"]


def test_the_ari_loop_says_the_same_of_ari_on_its_own_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.app")
    retries = Retries(0.2, 5.0, what="ARI", logger=logging.getLogger("gateway.app"))
    waits = [retries.failed(REFUSED, now=float(i)) for i in range(20)]  # 20 tries: one line, not 20
    assert max(waits) <= 5.0 and min(waits) >= 0.1
    retries.up(now=20.0)
    assert [(r.name, r.getMessage().split(" (")[0].split(" after")[0]) for r in caplog.records] == [
        ("gateway.app", "ARI unavailable"), ("gateway.app", "ARI back")]
