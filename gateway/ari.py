"""Thin Trio driver over asyncari: the only module that touches the ARI library.

Library exceptions become ``AriError`` (or ``ChannelGone`` for a 404) here and nowhere else.
Events are handed out as the typed Structs of ``gateway.ari_events``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncari
import httpx
from asyncari.model import OperationError

from gateway import ari_events as ev
from gateway.config import AsteriskConfig
from gateway.errors import AriError

log = logging.getLogger(__name__)
# asyncari formats every event for a debug line even when debug is off, and httpx logs URLs
# carrying the ARI key at INFO: keep these loggers quiet
# and cheap (measured: the formatting costs more than our own handling of the event).
for _name in ("asyncari", "asyncari.client", "asyncari.model", "asyncswagger11", "httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class ChannelGone(AriError):
    """The channel or bridge no longer exists (the caller hung up meanwhile)."""


def _status(exc: BaseException) -> int | None:
    cause = exc.__cause__
    if isinstance(cause, httpx.HTTPStatusError):
        return cause.response.status_code
    return None


class Ari:
    """ARI operations the gateway uses. Every method raises AriError/ChannelGone on failure."""

    def __init__(self, client: Any, app: str) -> None:
        self._client = client
        self.app = app

    async def _call(self, repo: str, op: str, **kwargs: Any) -> Any:
        try:
            return await getattr(getattr(self._client, repo), op)(**kwargs)
        except OperationError as exc:
            status = _status(exc)
            error = ChannelGone if status == 404 else AriError
            raise error(f"ARI {repo}.{op} failed ({status}): {exc}") from exc
        except (httpx.HTTPError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise AriError(f"ARI {repo}.{op} unreachable: {exc!r}") from exc

    async def answer(self, channel_id: str) -> None:
        await self._call("channels", "answer", channelId=channel_id)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self._call("channels", "hangup", channelId=channel_id, reason=reason)

    async def ring(self, channel_id: str) -> None:
        await self._call("channels", "ring", channelId=channel_id)

    async def play(self, channel_id: str, media: str, playback_id: str, lang: str = "") -> None:
        kwargs: dict[str, Any] = {"channelId": channel_id, "media": media, "playbackId": playback_id}
        if lang:
            kwargs["lang"] = lang
        await self._call("channels", "playWithId", **kwargs)

    async def stop_playback(self, playback_id: str) -> None:
        await self._call("playbacks", "stop", playbackId=playback_id)

    async def originate(self, endpoint: str, channel_id: str, app_args: str, caller_id: str,
                        timeout_s: int, variables: dict[str, str]) -> None:
        await self._call(
            "channels", "originateWithId", channelId=channel_id, endpoint=endpoint, app=self.app,
            appArgs=app_args, callerId=caller_id, timeout=timeout_s, variables=variables,
        )

    async def create_bridge(self, bridge_id: str, name: str) -> None:
        await self._call("bridges", "createWithId", bridgeId=bridge_id, type="mixing", name=name)

    async def add_to_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self._call("bridges", "addChannel", bridgeId=bridge_id, channel=",".join(channel_ids))

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self._call("bridges", "destroy", bridgeId=bridge_id)

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, label: str = "") -> None:
        kwargs: dict[str, Any] = {"channelId": channel_id, "context": context, "extension": extension}
        if label:
            kwargs["label"] = label
        else:
            kwargs["priority"] = 1
        await self._call("channels", "continueInDialplan", **kwargs)

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        await self._call("channels", "setChannelVar", channelId=channel_id, variable=name, value=value)

    async def channels(self) -> list[ev.Channel]:
        found = await self._call("channels", "list")
        return ev.channels_of([c.json for c in found or []])

    async def bridges(self) -> list[ev.Bridge]:
        found = await self._call("bridges", "list")
        return ev.bridges_of([b.json for b in found or []])

    async def events(self) -> AsyncIterator[ev.Event]:
        """Typed events until the websocket closes. Malformed events are logged and skipped."""
        async for message in self._client:
            raw = getattr(message, "_orig_msg", None)
            if not isinstance(raw, dict):
                continue
            try:
                event = ev.decode(raw)
            except ev.EventError as exc:
                log.error("ignoring malformed ARI event: %s", exc)
                continue
            if event is not None:
                yield event


@asynccontextmanager
async def connect(cfg: AsteriskConfig) -> AsyncIterator[Ari]:
    """Connect to ARI and register the Stasis app; raises AriError if Asterisk is unreachable."""
    url = f"http://127.0.0.1:{cfg.http_port}/"
    try:
        async with asyncari.connect(url, cfg.app, cfg.ari_user, cfg.ari_password) as client:
            yield Ari(client, cfg.app)
    except (httpx.HTTPError, OSError, OperationError) as exc:
        raise AriError(f"cannot connect to ARI at {url}: {exc!r}") from exc
