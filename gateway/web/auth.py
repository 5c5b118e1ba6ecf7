"""Who is calling the HTTP API: an officer's bearer token (SHA-256 in config) or the host's local key.

One ``Auth`` serves every route. The local key file (0600, written by the gateway at start) is for
the CLI on the gateway's own host; a request carrying it names its officer in ``X-ECGW-User``.

Trust boundary: the key stands for whoever can read it, i.e. whoever runs the CLI on the gateway's
host as the gateway's user; that person may act as any officer configured in ``[[warnings.users]]``
(two-person approval then rests on the host's own access control). A name not configured there is
refused (403), so the key never creates an officer. Once per-person accounts exist, the key will act
only for the person running the CLI.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.web.errors import error


class Officer(msgspec.Struct, frozen=True):
    name: str
    roles: frozenset[str]


def key_path(store_path: str) -> Path:
    """Where the local key lives: beside the warnings store."""
    return Path(store_path).parent / "cli.key"


def local_key(path: Path) -> str:
    """The CLI's key: created once, readable by the gateway's own user only (never world-readable,
    not even for a moment); an empty or damaged key file is replaced."""
    key = path.read_text().strip() if path.exists() else ""
    if len(key) != 64:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key)
    return key


class Auth:
    def __init__(self, users: Iterable[tuple[str, Iterable[str], str]], local_key: str) -> None:
        """``users``: (name, roles, token_sha256) triples."""
        users = list(users)
        self.roles = {name: frozenset(roles) for name, roles, _ in users}
        self.tokens = {digest: name for name, _, digest in users if digest}
        self.key = local_key

    def local(self, request: Request) -> bool:
        """The request carries the key only the gateway's host operator can read."""
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
        if name not in self.roles:  # only the local key can name someone: it acts for configured officers only
            return error(f"user {name!r} is not an officer in [[warnings.users]]", 403)
        have = self.roles[name]
        if roles and not have.intersection(roles):
            if len(roles) == 1:
                return error(f"user {name!r} is not a {roles[0]} officer", 403)
            return error(f"user {name!r} needs one of the roles: {', '.join(roles)}", 403)
        return Officer(name, have)

    def reader(self, request: Request) -> Response | None:
        """None when an officer or the host's operator (local key, no name needed) asks; else the 401."""
        if self.local(request) or self.user(request) is not None:
            return None
        return error("who is asking? send an officer's bearer token", 401)
