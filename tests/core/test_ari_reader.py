"""Our websocket loop in place of asyncari's: every JSON event handed on in order, the rest skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from wsproto.events import BytesMessage, CloseConnection, TextMessage

from gateway.asterisk.ari import _Client


class Websocket:
    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages

    async def __aiter__(self) -> AsyncIterator[Any]:
        for message in self.messages:
            yield message


async def test_events_are_handed_on_in_order_until_the_close() -> None:
    seen: list[dict[str, Any]] = []

    async def process_ws(raw: dict[str, Any]) -> None:
        seen.append(raw)

    client = _Client.__new__(_Client)  # only the loop: no connection, no swagger
    client.process_ws = process_ws
    await client._Client__run(Websocket([
        TextMessage(data='{"type": "StasisStart", "n": 1}'),
        TextMessage(data="not json"),
        BytesMessage(data=b"\x00"),
        TextMessage(data='["no", "type"]'),
        TextMessage(data='{"type": "ChannelDestroyed", "n": 2}'),
        CloseConnection(code=1000),
        TextMessage(data='{"type": "StasisEnd", "n": 3}'),
    ]))
    assert [(e["type"], e["n"]) for e in seen] == [("StasisStart", 1), ("ChannelDestroyed", 2)]
