"""Who is calling the HTTP API: a person with a session (the console), a machine or person with a bearer
token, or the host's CLI with the local key.

One ``Auth`` serves every route; people, roles and sessions are ``gateway.people.accounts``.

- A session is a cookie (HttpOnly, SameSite=Strict, Secure under TLS) set by ``POST /login``. A
  request that changes something with a session must also carry the session's CSRF token in
  ``X-CSRF-Token`` (a cookie is sent by the browser on its own; the token only by our own page).
- A bearer token (its SHA-256 stored with the person) is for machines and scripts; it carries no
  ambient authority, so no CSRF token is needed.
- The local key file (0600, written by the gateway at start) is for the CLI on the gateway's own
  host; a request carrying it names its person in ``X-ECGW-User``. Trust boundary: the key stands for
  whoever can read it, i.e. whoever runs the CLI on the gateway's host as the gateway's user; that
  person may act as any enabled account (two-person approval then rests on the host's own access
  control). A name that is not an enabled account is refused (403), so the key never creates one.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response

from gateway.people.accounts import Accounts
from gateway.web.errors import error


class Officer(msgspec.Struct, frozen=True):
    name: str
    roles: frozenset[str]
    via: str = "token"  # session, token or local (for the audit trail)


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
    COOKIE = "ecgw_session"
    UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, accounts: Accounts, local_key: str) -> None:
        self.accounts = accounts
        self.key = local_key

    def local(self, request: Request) -> bool:
        """The request carries the key only the gateway's host operator can read."""
        return hmac.compare_digest(request.headers.get("x-ecgw-local-key", ""), self.key)

    def identify(self, request: Request) -> Officer | Response | None:
        """Who asks: an Officer, the refusal to send (a session without its CSRF token, an unknown name on
        the local key), or None when nobody is named."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            person = self.accounts.by_token(auth[7:].strip())
            return Officer(person.name, person.roles, "token") if person else None
        if self.local(request):
            name = request.headers.get("x-ecgw-user", "")
            if not name:
                return None
            person = self.accounts.person(name)
            if person is None:
                return error(f"user {name!r} is not an enabled account (gateway users list)", 403)
            return Officer(person.name, person.roles, "local")
        token = request.cookies.get(self.COOKIE, "")
        session = self.accounts.session(token) if token else None
        if session is None:
            return None
        if request.method in self.UNSAFE and not hmac.compare_digest(request.headers.get("x-csrf-token", ""),
                                                                     session.csrf):
            return error("missing or wrong X-CSRF-Token for this session", 403)
        return Officer(session.person.name, session.person.roles, "session")

    def require(self, request: Request, *roles: str) -> Officer | Response:
        """The acting person, or the 401/403 response to send. With no ``roles`` anyone logged in will do."""
        who = self.identify(request)
        if who is None:
            return error("who is acting? log in, or send a bearer token", 401)
        if isinstance(who, Response) or not roles or who.roles.intersection(roles):
            return who
        if len(roles) == 1:
            return error(f"user {who.name!r} is not a {roles[0]} officer", 403)
        return error(f"user {who.name!r} needs one of the roles: {', '.join(roles)}", 403)

    def reader(self, request: Request, *roles: str) -> Response | None:
        """None when the host's operator (local key, no name needed) or a person or token with one of ``roles``
        (any role when none are given) asks; else the 401 or 403."""
        if self.local(request) and not request.headers.get("x-ecgw-user"):
            return None
        who = self.require(request, *roles)
        return who if isinstance(who, Response) else None

    async def audit(self, request: Request, action: str, target: str = "", detail: str = "") -> None:
        """Write who did ``action`` (a read of personal data) to the audit trail, in a worker thread."""
        who = self.identify(request)
        name, via = (who.name, who.via) if isinstance(who, Officer) else \
            (("host", "local") if self.local(request) else ("?", "?"))
        await trio.to_thread.run_sync(self.accounts.audit, name, via, action, target, detail)
