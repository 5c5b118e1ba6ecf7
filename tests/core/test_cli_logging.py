"""The command wrapper's logging: libraries speak only at WARNING unless the operator asks for debug."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gateway.cli.main import LIBRARY_LOGGERS, command


@pytest.fixture(autouse=True)
def library_levels() -> Iterator[None]:
    before = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


def test_library_loggers_default_to_warning() -> None:
    assert command("INFO", lambda: 0) == 0
    assert {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS} == dict.fromkeys(
        LIBRARY_LOGGERS, logging.WARNING)
    # the Twilio client logs every request on twilio.http_client: ~10 INFO lines per 15 s health probe
    assert not logging.getLogger("twilio.http_client").isEnabledFor(logging.INFO)


def test_debug_leaves_library_loggers_alone() -> None:
    assert command("debug", lambda: 0) == 0
    assert {logging.getLogger(name).level for name in LIBRARY_LOGGERS} == {logging.NOTSET}
