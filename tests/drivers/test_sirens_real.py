"""Siren driver against the relay-board emulator over a real socat pty pair (paced at 19,200 baud)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from channels.base import Message, Receipt
from channels.sirens import SirenChannel, SirenConfig, SirenTarget, config_problems, open_sirens
from gateway.errors import ChannelError, ConfigError
from gateway.protocols import modbus_rtu as rtu
from gateway.settings.channels import SirenLine
from sim.relayboard import RelayBoards, RunningLine, apply_command, relay_line, socat_pair

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs ptys and socat")

BOUND_S = 10.0


def msg(zone: str, key: str = "k1", **options: str) -> Message:
    return Message(idempotency_key=key, alert_id="a1", address=zone, language="ru", body="", options=options)


def line_cfg(line: RunningLine, name: str = "north", **kw: float) -> SirenLine:
    # Generous by default: the machine is shared, and a late answer means a retry the test did not expect.
    return SirenLine(name=name, port=line.port, response_timeout_s=kw.pop("timeout", 0.5), **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def sirens(zones: dict[str, list[SirenTarget]], *lines: SirenLine, updates: list[Receipt] | None = None,
                 ) -> AsyncIterator[SirenChannel]:
    cfg = SirenConfig(lines=list(lines), zones=zones, poll_interval_s=3600)
    on_update = updates.append if updates is not None else None
    async with open_sirens(cfg, on_update=on_update) as channel:
        while "not polled yet" in (await channel.health()).detail:  # let the first poll finish: frame counts
            await trio.sleep(0.005)
        yield channel


def target(unit: int, *coils: int, line: str = "north") -> SirenTarget:
    return SirenTarget(line=line, unit=unit, coils=list(coils))


def history(boards: RelayBoards, unit: int, coil: int) -> list[bool]:
    return [s.on for s in boards.switches if s.unit == unit and s.coil == coil]


async def test_steady_switches_reads_back_and_ends_off() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1, 2), coils=8) as line, \
                sirens({"centre": [target(1, 0, 1, 2), target(2, 5)]}, line_cfg(line)) as ch:
            before = ch.statistics()["north"].requests
            [receipt] = await ch.deliver([msg("centre", pattern="steady", duration_s="1")])
            assert receipt.state == "delivered" and receipt.provider_id == "centre#1"
            assert line.boards.state(1)[:4] == [True, True, True, False]
            assert line.boards.state(2)[5] and sum(line.boards.state(2)) == 1
            # FC15 + FC01 on unit 1, FC05 + FC01 on unit 2
            assert ch.statistics()["north"].requests - before == 4
            await trio.sleep(1.3)
            assert not any(line.boards.state(1)) and not any(line.boards.state(2))
            assert history(line.boards, 1, 0) == [True, False]


async def test_wail_cycles_with_the_plan_timing() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 3)]}, line_cfg(line)) as ch:
            [receipt] = await ch.deliver([msg("z", pattern="wail", duration_s="2", on_s="0.5", off_s="0.5")])
            assert receipt.state == "delivered"
            await trio.sleep(2.3)
            switches = line.boards.switches_of(1)
            assert [s.on for s in switches] == [True, False, True, False]
            offsets = [s.t - switches[0].t for s in switches]
            assert offsets == pytest.approx([0, 0.5, 1.0, 1.5], abs=0.15)


async def test_later_message_supersedes_running_pattern() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0, 1)]}, line_cfg(line)) as ch:
            await ch.deliver([msg("z", pattern="wail", duration_s="60", on_s="0.5", off_s="0.5")])
            [off] = await ch.deliver([msg("z", key="k2", pattern="off")])
            assert off.state == "delivered" and not any(line.boards.state(1))
            await trio.sleep(0.8)  # the superseded wail would have switched off at 0.5 s
            assert history(line.boards, 1, 0) == [True, False]
            [steady] = await ch.deliver([msg("z", key="k3", pattern="steady", duration_s="60")])
            [cancel] = await ch.deliver([msg("z", key="k4", pattern="wail", msg_type="Cancel")])
            assert steady.state == cancel.state == "delivered"
            assert history(line.boards, 1, 1) == [True, False, True, False]


async def test_concurrent_messages_for_one_zone_leave_one_pattern_running() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0)]}, line_cfg(line)) as ch:
            async with trio.open_nursery() as nursery:
                for key in ("a", "b", "c"):
                    nursery.start_soon(ch.deliver, [msg("z", key, pattern="wail", duration_s="60", on_s="0.5",
                                                        off_s="0.5")])
            await ch.deliver([msg("z", "d", pattern="off")])
            await trio.sleep(0.8)  # an orphaned wail would switch off at 0.5 s
            assert history(line.boards, 1, 0) == [True, True, True, False]


async def test_pattern_none_changes_nothing() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0)]}, line_cfg(line)) as ch:
            await ch.deliver([msg("z", pattern="wail", duration_s="60", on_s="0.5", off_s="0.5")])
            [receipt] = await ch.deliver([msg("z", "k2", pattern="none", duration_s="0")])
            assert receipt.state == "delivered"
            await trio.sleep(0.6)  # the wail goes on: off at 0.5 s
            assert history(line.boards, 1, 0) == [True, False]


async def test_same_zone_twice_in_one_batch_last_wins() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0)]}, line_cfg(line)) as ch:
            receipts = await ch.deliver([msg("z", "a", pattern="steady"), msg("z", "b", pattern="off")])
            assert [r.idempotency_key for r in receipts] == ["a", "b"]
            assert [r.state for r in receipts] == ["delivered", "delivered"]
            assert history(line.boards, 1, 0) == [True, False]


async def test_unknown_zone_and_bad_options_fail_without_traffic() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0)]}, line_cfg(line)) as ch:
            before = line.boards.requests
            unknown, bad = await ch.deliver([msg("nowhere"), msg("z", "k2", pattern="whoop")])
            assert unknown.state == bad.state == "failed"
            assert not unknown.retryable and not bad.retryable
            assert "unknown siren zone 'nowhere'" in unknown.error and "whoop" in bad.error
            assert line.boards.requests == before


async def test_silent_board_fails_retryable_others_still_switch_and_health_follows() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1, 2)) as line, \
                sirens({"z": [target(1, 0), target(2, 0)]}, line_cfg(line, timeout=0.15, retries=1)) as ch:
            assert (await ch.health()).up
            line.boards.silent.add(2)
            [receipt] = await ch.deliver([msg("z", pattern="steady")])
            assert receipt.state == "failed" and receipt.retryable
            assert "unit 2" in receipt.error and "did not answer" in receipt.error and "unit 1" not in receipt.error
            assert line.boards.state(1)[0]
            assert ch.statistics()["north"].timeouts >= 2  # one try and one retry (more if the machine is slow)
            health = await ch.health()
            assert not health.up and "unit 2" in health.detail
            line.boards.silent.discard(2)
            await ch.poll()
            assert (await ch.health()).up


async def test_bad_crc_answers_are_retried() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0, 1)]}, line_cfg(line, retries=2)) as ch:
            line.boards.bad_crc_next = 2
            [receipt] = await ch.deliver([msg("z", pattern="steady")])
            assert receipt.state == "delivered"
            stats = ch.statistics()["north"]
            assert stats.bad_frames == 2 and stats.retries == 2


async def test_persistent_bad_crc_fails_retryable() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0)]}, line_cfg(line, retries=1)) as ch:
            line.boards.bad_crc_next = 2
            [receipt] = await ch.deliver([msg("z", pattern="steady")])
            assert receipt.state == "failed" and receipt.retryable and "bad CRC" in receipt.error
            assert not (await ch.health()).up


async def test_stuck_coil_is_reported_by_read_back() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(4,)) as line, sirens({"z": [target(4, 0, 1, 2)]}, line_cfg(line)) as ch:
            line.boards.stick(4, 1, False)
            [receipt] = await ch.deliver([msg("z", pattern="steady")])
            assert receipt.state == "failed" and not receipt.retryable
            assert receipt.error == "line north unit 4: coils [1] did not switch on"
            assert [s.applied for s in line.boards.switches_of(4)] == [True, False, True]
            assert (await ch.health()).up  # the board answers; its relay is the fault


async def test_board_refusal_is_reported() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,), coils=8) as line, sirens({"z": [target(1, 12)]}, line_cfg(line)) as ch:
            [receipt] = await ch.deliver([msg("z", pattern="steady")])
            assert receipt.state == "failed" and not receipt.retryable
            assert "illegal data address" in receipt.error


async def test_later_step_failure_is_reported_once_through_on_update() -> None:
    updates: list[Receipt] = []
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, \
                sirens({"z": [target(1, 0)]}, line_cfg(line, timeout=0.15, retries=0), updates=updates) as ch:
            [receipt] = await ch.deliver([msg("z", pattern="wail", duration_s="2", on_s="0.5", off_s="0.5")])
            assert receipt.state == "delivered"
            line.boards.silent.add(1)
            await trio.sleep(1.2)
            assert len(updates) == 1
            assert updates[0].state == "failed" and updates[0].retryable and updates[0].error.startswith("at 0.5 s:")
            assert updates[0].provider_id == receipt.provider_id


async def test_two_lines_and_concurrent_zones_never_interleave_frames() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1, 2)) as north, relay_line(units=(1,)) as south:
            zones = {
                "a": [target(1, 0, 1), target(1, 0, line="south")],
                "b": [target(2, 0)], "c": [target(1, 4, 6)], "d": [target(2, 3, 4, 5)],
            }
            async with sirens(zones, line_cfg(north), line_cfg(south, "south")) as ch:
                receipts: list[Receipt] = []

                async def send(zone: str) -> None:
                    receipts.extend(await ch.deliver([msg(zone, zone, pattern="steady")]))

                async with trio.open_nursery() as nursery:
                    for zone in zones:
                        nursery.start_soon(send, zone)
                assert sorted(r.state for r in receipts) == ["delivered"] * 4
                assert north.boards.state(1)[:7] == [True, True, False, False, True, False, True]
                assert north.boards.state(2)[:6] == [True, False, False, True, True, True]
                assert south.boards.state(1)[0]
                stats = ch.statistics()
                assert stats["north"].bad_frames == stats["north"].timeouts == 0
                assert north.boards.answers == stats["north"].responses


async def test_closing_switches_running_zones_off() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line:
            async with sirens({"z": [target(1, 0, 1)]}, line_cfg(line)) as ch:
                await ch.deliver([msg("z", pattern="steady", duration_s="600")])
                assert line.boards.state(1)[:2] == [True, True]
            assert not any(line.boards.state(1))


async def test_wire_accounting_matches_frames() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line, sirens({"z": [target(1, 0)]}, line_cfg(line)) as ch:
            await ch.deliver([msg("z", pattern="steady")])
            stats = ch.statistics()["north"]
            # poll FC01 8+6 bytes, FC05 8+8, read-back FC01 8+6
            assert (stats.requests, stats.request_bytes, stats.responses, stats.response_bytes) == (3, 24, 3, 20)
            bits, baud = 11, 19200
            assert stats.wire_time_s == pytest.approx((24 + 20) * bits / baud + 6 * 3.5 * bits / baud)


async def _misbehaving_board(port: str, answer: bytes, *, task_status: trio.TaskStatus[None]) -> None:
    """Answers every request with ``answer``, whatever it was."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        task_status.started()
        while True:
            await trio.lowlevel.wait_readable(fd)
            os.read(fd, 512)
            await trio.sleep(0.002)
            os.write(fd, answer)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("answer", "words"), [
    (rtu.encode_response(rtu.CoilWritten(1, 0, False))[:5], "short frame"),
    (rtu.encode_response(rtu.CoilWritten(9, 0, False)), "asked unit 1, unit 9 answered"),
    (rtu.encode_response(rtu.CoilWritten(1, 0, False))[:-1] + b"\x00", "bad CRC"),
    (b"\x01\x85", "short frame"),
])
async def test_damaged_answers_fail_retryable(answer: bytes, words: str) -> None:
    with trio.fail_after(BOUND_S):
        async with socat_pair() as (driver_side, board_side), trio.open_nursery() as nursery:
            await nursery.start(_misbehaving_board, board_side, answer)
            cfg = SirenConfig(lines=[SirenLine(name="l", port=driver_side, response_timeout_s=0.2, retries=1)],
                              zones={"z": [target(1, 0, line="l")]}, poll_interval_s=3600)
            async with open_sirens(cfg) as ch:
                [receipt] = await ch.deliver([msg("z", pattern="off")])  # off: nothing left to stop at close
                assert receipt.state == "failed" and receipt.retryable and words in receipt.error
                assert ch.statistics()["l"].bad_frames >= 2
            nursery.cancel_scope.cancel()


async def test_emulator_frames_by_silence_when_it_cannot_by_length() -> None:
    with trio.fail_after(BOUND_S):
        async with relay_line(units=(1,)) as line:
            fd = os.open(line.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                unknown = b"\x01\x03\x00\x00\x00\x01"
                for request, expected in [
                    (unknown + rtu.crc16(unknown), rtu.encode_response(rtu.ExceptionReply(1, 3, rtu.ILLEGAL_FUNCTION))),
                    (b"\x01\x05\x00", None),  # a fragment: dropped when the line falls silent
                    (rtu.encode_request(rtu.WriteCoil(1, 2, True)), rtu.encode_response(rtu.CoilWritten(1, 2, True))),
                ]:
                    os.write(fd, request)
                    got = b""
                    with trio.move_on_after(0.15):
                        while expected is None or len(got) < len(expected):
                            await trio.lowlevel.wait_readable(fd)
                            got += os.read(fd, 64)
                    assert got == (expected or b"")
            finally:
                os.close(fd)
            assert line.boards.state(1)[2]


def test_config_problems_name_the_key() -> None:
    cfg = SirenConfig(
        lines=[SirenLine(name="a", port="/dev/null"), SirenLine(name="a", port="", response_timeout_s=0)],
        zones={"z": [target(0, 1, 1, line="b")], "empty": [], "wide": [target(1, 0, 2000, line="a")]},
        poll_interval_s=0,
    )
    problems = "\n".join(config_problems(cfg))
    for words in ("duplicate line names", "lines[1]: expected a port", "response_timeout_s > 0",
                  "zones.z[0]: line 'b'", "unit must be 1-247", "distinct addresses", "zones.empty",
                  "zones.wide[0]: coils must lie within 2000", "poll_interval_s > 0"):
        assert words in problems


async def test_open_refuses_bad_config_and_missing_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        async with open_sirens(SirenConfig(lines=[], zones={"z": [target(1, 0)]})):
            pass
    cfg = SirenConfig(lines=[SirenLine(name="north", port=str(tmp_path / "nope"))], zones={"z": [target(1, 0)]})
    with pytest.raises(ChannelError, match="cannot open"):
        async with open_sirens(cfg):
            pass


# --- the emulator on its own -------------------------------------------------------------------

def test_emulator_answers_like_a_board() -> None:
    boards = RelayBoards([1, 2], 8, clock=lambda: 5.0)
    unknown = rtu.encode_request(rtu.ReadCoils(1, 0, 1))[:1] + b"\x03\x00\x00\x00\x01"
    unknown += rtu.crc16(unknown)
    assert boards.handle(unknown) == rtu.encode_response(rtu.ExceptionReply(1, 3, rtu.ILLEGAL_FUNCTION))
    assert boards.handle(rtu.encode_request(rtu.ReadCoils(1, 6, 3))) == \
        rtu.encode_response(rtu.ExceptionReply(1, rtu.READ_COILS, rtu.ILLEGAL_ADDRESS))
    assert boards.handle(rtu.encode_request(rtu.ReadCoils(9, 0, 1))) is None  # not ours
    damaged = bytearray(rtu.encode_request(rtu.WriteCoil(1, 0, True)))
    damaged[-1] ^= 1
    assert boards.handle(bytes(damaged)) is None and not boards.switches
    assert boards.handle(rtu.encode_request(rtu.WriteCoils(0, 2, (True, True)))) is None  # broadcast
    assert boards.state(1)[2:4] == boards.state(2)[2:4] == [True, True]
    assert boards.switches[0].t == 5.0 and len(boards.switches) == 4


def test_emulator_commands() -> None:
    boards = RelayBoards([1], 8)
    for command in ("silent 1", "answer 1", "bad-crc 3", "stick 1:2 on", "unstick 1:2"):
        assert json.loads(apply_command(boards, command)) == {"ok": command}
    assert boards.bad_crc_next == 3 and boards.state(1)[2] and not boards.boards[1].stuck
    assert "error" in json.loads(apply_command(boards, "stick 9:1 on"))
    assert "error" in json.loads(apply_command(boards, "dance"))
    assert json.loads(apply_command(boards, "records"))["switches"] == []


async def test_emulator_process_with_its_own_socat(tmp_path: Path) -> None:
    record = tmp_path / "switches.jsonl"
    argv = [sys.executable, "-m", "sim.relayboard", "--units", "3", "--coils", "4", "--record", str(record)]
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(_run_process, argv)
            ready = json.loads(await _read_line(process.stdout))
            assert ready["units"] == [3] and ready["port"].startswith("/dev/")
            cfg = SirenConfig(lines=[SirenLine(name="l", port=ready["port"])], zones={"z": [target(3, 1, line="l")]})
            async with open_sirens(cfg) as ch:
                await process.stdin.send_all(b"stick 3:1 off\n")
                assert json.loads(await _read_line(process.stdout)) == {"ok": "stick 3:1 off"}
                [receipt] = await ch.deliver([msg("z", pattern="steady")])
                assert receipt.state == "failed" and "coils [1] did not switch on" in receipt.error
            assert json.loads(record.read_text().splitlines()[0])["applied"] is False
            process.terminate()


async def _run_process(argv: list[str], *, task_status: trio.TaskStatus[trio.Process]) -> None:
    process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               cwd=Path(__file__).resolve().parents[2])
    try:
        task_status.started(process)
        await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            await process.wait()


async def _read_line(stream: trio.abc.ReceiveStream | None) -> str:
    assert stream is not None
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        assert chunk, f"process closed its output after {data!r}"
        data += chunk
    return data.decode()
