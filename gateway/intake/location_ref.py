"""A caller's location sent by reference (RFC 6442 ``Geolocation: <https://…>``), fetched from the
operator's location server and read with the full PIDF-LO parser.

Theory of operation: Asterisk does not dereference (it hands the URI over as ``format=URI``), so the
intake does, after the incident is stored and outside the call's own tasks: the caller reaches a
dispatcher whether or not the location server answers. Only URLs under a configured prefix
(``[location] dereference``) are fetched, within ``timeout_s`` and ``max_bytes``; anything else is
a ``LocationError`` saying why, which the intake notes on the timeline.
"""

from __future__ import annotations

import re

import httpx
import trio

from gateway.protocols import pidf
from gateway.protocols.pidf import LocationError, PidfDocument
from gateway.settings import LocationConfig

_URI_IN_INFO = re.compile(r'^\s*URI\s*=\s*"?([^",]+)"?\s*$', re.IGNORECASE)
_URI_IN_HEADER = re.compile(r"<(https?://[^>\s]+)>", re.IGNORECASE)
ACCEPT = "application/pidf+xml, application/xml;q=0.5"


def reference(location_info: str, fmt: str, header: str) -> str:
    """The http(s) URI a caller's location is to be fetched from, or "" when it came by value."""
    if fmt == "URI":
        match = _URI_IN_INFO.match(location_info)
        if match and match.group(1).lower().startswith(("http://", "https://")):
            return match.group(1)
    found = _URI_IN_HEADER.search(header)
    return found.group(1) if found and not location_info else ""


class LocationFetcher:
    def __init__(self, cfg: LocationConfig) -> None:
        self.cfg = cfg

    def allowed(self, uri: str) -> bool:
        return any(uri.startswith(prefix) for prefix in self.cfg.dereference)

    async def fetch(self, uri: str) -> PidfDocument:
        """The document at ``uri``, parsed. Raises LocationError saying why there is none."""
        if not self.allowed(uri):
            raise LocationError(f"location by reference {uri[:200]!r} not fetched: not under [location] dereference")
        body = b""
        with trio.move_on_after(self.cfg.timeout_s) as limit:
            body = await self._get(uri)
        if limit.cancelled_caught:
            raise LocationError(f"location server did not answer within {self.cfg.timeout_s} s ({uri[:200]})")
        return pidf.parse_document(body)

    async def _get(self, uri: str) -> bytes:
        try:
            async with httpx.AsyncClient(follow_redirects=False) as client, \
                    client.stream("GET", uri, headers={"Accept": ACCEPT}) as reply:
                if reply.status_code != 200:
                    raise LocationError(f"location server answered {reply.status_code} for {uri[:200]}")
                body = b""
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > self.cfg.max_bytes:
                        raise LocationError(f"location document over {self.cfg.max_bytes} bytes ({uri[:200]})")
                return body
        except httpx.HTTPError as exc:
            raise LocationError(f"location server unreachable ({uri[:200]}): {exc}") from exc
