"""``gateway users …``: people's accounts, changed on the gateway's host (whoever may read the store may
change them; every change is in the audit trail). A running gateway sees the change with its next request.

    gateway users add marat --role dispatcher [--role supervisor] [--language kk] --password-stdin
    gateway users list [--json]
    gateway users disable marat
    gateway users reset marat --password-stdin      # a new password; also unlocks and enables
    gateway users token tts-robot                   # a new bearer token for a machine, printed once
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
import time

import msgspec

from gateway import check_config
from gateway.errors import InputError
from gateway.files import UMASK
from gateway.people.accounts import LANGUAGES, ROLES, Accounts, token_digest
from gateway.stores import open_accounts

_json = msgspec.json.Encoder()


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = sub.add_parser("users", help="people's accounts: add, list, disable, reset, token")
    usub = u.add_subparsers(dest="action", required=True)
    add = usub.add_parser("add", help="a new person")
    add.add_argument("name")
    add.add_argument("--role", action="append", required=True, choices=ROLES, dest="roles")
    add.add_argument("--language", default="ru", choices=LANGUAGES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    listing = usub.add_parser("list")
    listing.add_argument("--json", action="store_true")
    for name in ("disable", "reset", "token"):
        p = usub.add_parser(name)
        p.add_argument("name")
        if name == "reset":
            p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    u.set_defaults(fn=cmd_users)


def cmd_users(args: argparse.Namespace) -> int:
    os.umask(UMASK)
    accounts = open_accounts(check_config.load(args.config).store)
    by = getpass.getuser()
    try:
        if args.action == "add":
            accounts.add(args.name, args.roles, language=args.language, password=_password(args), by=by)
            print(f"added {args.name} ({', '.join(args.roles)})")
        elif args.action == "list":
            _list(accounts, args.json)
        elif args.action == "disable":
            accounts.disable(args.name, by=by)
            print(f"disabled {args.name}; their sessions have ended")
        elif args.action == "reset":
            accounts.reset(args.name, _password(args), by=by)
            print(f"new password for {args.name}; unlocked, sessions ended")
        else:
            token = secrets.token_urlsafe(32)
            accounts.set_token(args.name, token_digest(token), by=by)
            print(token)
    finally:
        accounts.close()
    return 0


def _password(args: argparse.Namespace) -> str:
    """The password: one line of standard input (--password-stdin), else asked for twice on a terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for the password: pass --password-stdin")
    first, second = getpass.getpass("password: "), getpass.getpass("again: ")
    if first != second:
        raise InputError("the two passwords differ")
    return first


def _list(accounts: Accounts, as_json: bool) -> None:
    rows = accounts.accounts()
    if as_json:
        print(_json.encode(rows).decode())
        return
    now = time.time()
    for a in rows:
        state = "disabled" if a.disabled else ("locked" if a.locked_until > now else "active")
        login = "+".join(k for k, v in (("password", a.has_password), ("token", a.has_token)) if v) or "none"
        print(f"{a.name:<20} {','.join(a.roles):<30} {a.language}  {state:<8} {login}")
