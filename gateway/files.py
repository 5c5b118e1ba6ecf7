"""Files holding personal data or secrets are never readable by other accounts on the host.

The stores hold callers', recipients' and responders' personal data; Asterisk's logs hold numbers
and locations. Commands that create such files run with ``UMASK`` (new files 0640, directories
0750); every SQLite store is opened through ``private_store`` (0600, its -wal and -shm too), which
also tightens a store created before this rule by an older gateway.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

UMASK = 0o027
PRIVATE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_store(path: Path) -> None:
    """Create ``path`` (empty) if missing and make it and its SQLite companions readable by the owner
    only. SQLite creates -wal and -shm with the database file's mode, so they stay private too.

    An existing file is never opened here: closing any descriptor of a file drops every POSIX lock this
    process holds on it, so another connection to the same database would lose its locks and could
    read a half-written page (the accounts share the incident store's file)."""
    if not path.exists():
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT, PRIVATE))
    for found in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            os.chmod(found, PRIVATE)
        except FileNotFoundError:
            continue


def withhold_from_others(top: Path) -> None:
    """Take every permission for other accounts off ``top`` and everything below it (0644 → 0640,
    0755 → 0750); symbolic links are neither followed nor changed."""
    for directory, _, files in os.walk(top):
        for path in (directory, *(os.path.join(directory, name) for name in files)):
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o007:
                os.chmod(path, stat.S_IMODE(mode) & ~0o007)
