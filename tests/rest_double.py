"""A scripted ARI REST side for tests that need no Asterisk: a subclass answers ``request``; requests written
at once (``RestClient.pipeline``) are answered in order, one after another, as Asterisk's HTTP server does."""

from __future__ import annotations

from collections.abc import Sequence


class RestDouble:
    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        raise NotImplementedError

    async def pipeline(self, requests: Sequence[tuple[str, str, bytes | None]]) -> list[tuple[int, bytes]]:
        return [await self.request(method, path, body) for method, path, body in requests]
