"""Passwords: argon2id (RFC 9106) through argon2-cffi, with a policy a control centre can live with.

The parameters are RFC 9106's second recommended option (t=3, 64 MiB, p=4): about 50-100 ms per
verification on the centre's hardware, slow enough for a stolen store to resist guessing and fast enough
for a login. A hash made with weaker parameters is re-made at the next successful login.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import InputError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; a megabyte "password" would only cost us memory
_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16, type=Type.ID)
_DUMMY = _hasher.hash("a password nobody has, for unknown names")


def check_policy(password: str) -> None:
    """Raise InputError saying what is wrong with a new password."""
    if len(password) < MIN_LENGTH:
        raise InputError(f"password: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InputError(f"password: at most {MAX_LENGTH} characters")
    if len(set(password)) < 4:
        raise InputError("password: use at least 4 different characters")


def hash_password(password: str) -> str:
    check_policy(password)
    return _hasher.hash(password)


def verify(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored``; an empty or damaged hash never matches. Unknown names are
    checked against a dummy hash (``verify("", ...)``), so the answer takes as long either way."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored or _DUMMY, password) and bool(stored)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True
