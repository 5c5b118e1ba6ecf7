"""Fixtures for the real tier: an Asterisk instance of the tests' own, the gateway process, phones."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sim import sipp
from sim.lab import AsteriskInstance, GatewayProcess, start_asterisk, stop_asterisk, write_config
from tests.store_backends import backend, pg_cluster  # noqa: F401  (the store on SQLite and PostgreSQL)


def _real_tier_available() -> str | None:
    if os.geteuid() != 0:
        return "the Asterisk sandbox needs root (chroot)"
    if not shutil.which("sipp"):
        return "sipp is not installed"
    return None


@pytest.fixture(autouse=True)
def _umask_restored() -> Iterator[None]:
    """A test that runs the CLI in this process gets its umask (027, ``gateway.cli.main``) for good: later
    tests' prompts, speech and recordings would be unreadable to Asterisk's account. Each test ends with the
    umask it started with."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.fixture(scope="session")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskInstance]:
    reason = _real_tier_available()
    if reason and os.environ.get("CI"):
        pytest.fail(f"real tier required in CI: {reason}")
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("asterisk")
    instance = start_asterisk(write_config(workdir, ring_timeout=4, overflow=30))
    yield instance
    stop_asterisk(instance)


@pytest.fixture
async def phones(asterisk: AsteriskInstance, tmp_path: Path) -> AsyncIterator[sipp.Phones]:
    async with sipp.phones(asterisk.cfg, tmp_path / "phones") as running:
        yield running


@pytest.fixture
async def gateway(asterisk: AsteriskInstance, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(asterisk.path, tmp_path / "gateway.log")
    await process.start()
    yield process
    await process.stop()
