"""Real tier: overflow to the backup centre, and the gateway riding out an Asterisk restart."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio

from gateway.asterisk import sandbox
from sim import sipp
from sim.lab import AsteriskInstance, GatewayProcess, start_asterisk, stop_asterisk, write_config
from tests.drills.test_real_intake import kinds, place


async def test_unanswered_call_overflows_to_backup_centre(tmp_path: Path) -> None:
    # The only position's phone is dead (nothing listens); the backup centre answers.
    env = start_asterisk(write_config(tmp_path, positions=1, ring_timeout=2, overflow=4))
    gateway = GatewayProcess(env.path, tmp_path / "gateway.log")
    backup_only = msgspec.structs.replace(env.cfg, dispatch=msgspec.structs.replace(env.cfg.dispatch, positions=[]))
    try:
        await gateway.start()
        async with sipp.phones(backup_only, tmp_path / "phones") as backup:
            result = await place(env, tmp_path, keys="20", talk_ms=9000)
            rings = backup.lines()
        incident = await gateway.wait_incident(result.call_id, until="overflowed")
    finally:
        await gateway.stop()
        stop_asterisk(env)
    assert result.returncode == 0, "the caller was not served by the backup centre"
    assert "position_dialled" in kinds(incident) and incident.state == "overflowed"
    assert rings and result.invite_wall is not None and rings[0].wall > result.invite_wall + 4


async def test_gateway_reconnects_after_asterisk_restart(
    asterisk: AsteriskInstance, gateway: GatewayProcess, phones: sipp.Phones, tmp_path: Path
) -> None:
    sandbox.down(asterisk.cfg)
    await trio.sleep(0.5)
    sandbox.up(asterisk.cfg)
    with trio.fail_after(20):  # registered again: Asterisk lists our Stasis app
        while asterisk.cfg.asterisk.app not in asterisk.cli("ari show apps"):
            await trio.sleep(0.2)
    result = await place(asterisk, tmp_path, keys="20", talk_ms=4000)
    incident = await gateway.wait_incident(result.call_id, until="hung_up")
    assert "answered" in kinds(incident)


async def test_missing_prompts_do_not_block_the_call(
    asterisk: AsteriskInstance, phones: sipp.Phones, tmp_path: Path
) -> None:
    # Every prompt file missing (a broken install): the menu is silent, keys still work.
    config = tmp_path / "no-prompts.toml"
    config.write_text(asterisk.path.read_text().replace("[ivr]\n", '[ivr]\nprompts_dir = "/nonexistent/prompts"\n'))
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    await gateway.start()
    try:
        result = await place(asterisk, tmp_path, keys="23", talk_ms=5000)
        incident = await gateway.wait_incident(result.call_id, until="hung_up")
    finally:
        await gateway.stop()
    assert (incident.language, incident.category) == ("ru", "medical")
    assert "answered" in kinds(incident)
