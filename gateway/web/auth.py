"""Who is calling the HTTP API: an officer's bearer token (SHA-256 in config) or the host's local key.

The local key file (0600, written by the gateway) is for the CLI on the gateway's own host; a
request carrying it names its officer in ``X-ECGW-User``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import msgspec
from starlette.requests import Request
from starlette.responses import Response

_json = msgspec.json.Encoder()


class Officer(msgspec.Struct, frozen=True):
    name: str
    roles: frozenset[str]


def error(message: str, status: int) -> Response:
    return Response(_json.encode({"error": message}), status_code=status, media_type="application/json")


class Auth:
    def __init__(self, users: Iterable[tuple[str, Iterable[str], str]], local_key: str) -> None:
        """``users``: (name, roles, token_sha256) triples."""
        users = list(users)
        self.roles = {name: frozenset(roles) for name, roles, _ in users}
        self.tokens = {digest: name for name, _, digest in users if digest}
        self.key = local_key

    def local(self, request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("x-ecgw-local-key", ""), self.key)

    def user(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return self.tokens.get(hashlib.sha256(auth[7:].strip().encode()).hexdigest())
        if self.local(request):
            return request.headers.get("x-ecgw-user") or None
        return None

    def require(self, request: Request, *roles: str) -> Officer | Response:
        """The acting officer, or the 401/403 response to send. With no ``roles`` any officer will do."""
        name = self.user(request)
        if name is None:
            return error("who is acting? send an officer's bearer token", 401)
        have = self.roles.get(name, frozenset())
        if roles and not have.intersection(roles):
            return error(f"user {name!r} needs one of the roles: {', '.join(roles)}", 403)
        return Officer(name, have)
