"""A crashing part of the response side is restarted and never takes the gateway's nursery down."""

from __future__ import annotations

import trio

from gateway.app import isolated


async def test_a_part_that_crashes_is_restarted_and_the_owner_keeps_running(autojump_clock: trio.abc.Clock) -> None:
    calls: list[str] = []

    async def flaky(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        calls.append("start")
        if len(calls) == 1:
            raise RuntimeError("a bug before it was ready")
        task_status.started()
        if len(calls) == 2:
            raise KeyError("a bug while running")
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(isolated, "flaky", flaky)  # ready even though its first start failed
            while len(calls) < 3:
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    assert calls == ["start", "start", "start"]
