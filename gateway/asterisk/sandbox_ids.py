"""The sandbox's ``asterisk`` account gets a uid and gid that no account or group of the host uses.

Debian's package scripts give the chroot's ``asterisk`` the next free system id *inside the chroot*,
which on the host is somebody else: on the first machine 101, the host's ``postgres`` (and group 101,
``_ssh``), so the rendered configs holding the ARI and AMI secrets belonged to PostgreSQL's account
and the two could signal each other. The account therefore lives in ``SANDBOX_IDS``: adduser hands
out 100-999 and 1000-59999, systemd's dynamic users take 61184-65519 and user namespaces 100000 up,
and Debian allocates 60000-64999 centrally and creates those only on demand; the host's /etc/passwd
and /etc/group are checked at every provisioning all the same, and an older chroot is renumbered.

PostgreSQL (coming next) must not share this id: the host's ``postgres`` is a system account
(100-999) and a sandboxed one would take the next id ``choose_id`` finds free, never this one.

``plan`` and ``renumbered`` are pure; ``settle`` is the thin I/O around them.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import AsteriskError

log = logging.getLogger(__name__)
SANDBOX_IDS = range(60100, 61000)
ACCOUNT = "asterisk"


@dataclass(frozen=True)
class Move:
    """Renumber the account and its group from ``old_uid``/``old_gid`` to ``uid``/``gid``."""

    old_uid: int
    old_gid: int
    uid: int
    gid: int


def entries(text: str) -> list[list[str]]:
    """The colon-separated fields of each entry of /etc/passwd or /etc/group (comments skipped)."""
    return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]


def used_ids(passwd: str, group: str) -> tuple[set[int], set[int]]:
    """(uids, gids) in use: every account's uid; every group's gid and every account's primary gid."""
    users, groups = entries(passwd), entries(group)
    return ({int(e[2]) for e in users if len(e) > 3}, {int(e[2]) for e in groups if len(e) > 2}
            | {int(e[3]) for e in users if len(e) > 3})


def account_ids(passwd: str, name: str = ACCOUNT) -> tuple[int, int]:
    for e in entries(passwd):
        if e[0] == name and len(e) > 3:
            return int(e[2]), int(e[3])
    raise AsteriskError(f"no {name!r} account in the sandbox's /etc/passwd")


def choose_id(taken: set[int], ids: range = SANDBOX_IDS) -> int:
    """The first id in ``ids`` that is not ``taken``."""
    for candidate in ids:
        if candidate not in taken:
            return candidate
    raise AsteriskError(f"no id free for the sandbox's account in {ids.start}-{ids.stop - 1}")


def plan(chroot_passwd: str, chroot_group: str, host_passwd: str, host_group: str,
         ids: range = SANDBOX_IDS) -> Move | None:
    """How to renumber the chroot's ``asterisk`` account, or None if its ids are in ``ids`` and no host
    account or group uses them. The new uid and gid are one number, free as both on host and chroot."""
    uid, gid = account_ids(chroot_passwd)
    host_uids, host_gids = used_ids(host_passwd, host_group)
    if uid in ids and gid in ids and uid not in host_uids and gid not in host_gids:
        return None
    chroot_uids, chroot_gids = used_ids(chroot_passwd, chroot_group)
    new = choose_id(host_uids | host_gids | (chroot_uids - {uid}) | (chroot_gids - {gid}), ids)
    return Move(uid, gid, new, new)


def renumbered(passwd: str, group: str, move: Move, name: str = ACCOUNT) -> tuple[str, str]:
    """/etc/passwd and /etc/group with the account and its group renumbered (accounts whose primary
    group it is follow it)."""

    def user(e: list[str]) -> list[str]:
        if len(e) < 4:
            return e
        uid = str(move.uid) if e[0] == name else e[2]
        return [e[0], e[1], uid, str(move.gid) if e[3] == str(move.old_gid) else e[3], *e[4:]]

    def grp(e: list[str]) -> list[str]:
        return [e[0], e[1], str(move.gid), *e[3:]] if e[0] == name and len(e) > 2 else e

    return _edit(passwd, user), _edit(group, grp)


def _edit(text: str, change: Callable[[list[str]], list[str]]) -> str:
    lines = []
    for line in text.splitlines():
        keep = not line.strip() or line.startswith("#")
        lines.append(line if keep else ":".join(change(line.split(":"))))
    return "\n".join(lines) + "\n"


def settle(root: Path, *, skip: Sequence[Path] = (), host_etc: Path = Path("/etc")) -> tuple[int, int]:
    """Make the chroot's ``asterisk`` ids collide with nothing on the host; return (uid, gid). An older
    chroot is renumbered and every file inside it the old ids owned changes hands, except below
    ``skip`` (instances still running as the old ids: ``sandbox.up`` restarts and adopts them)."""
    etc = root / "etc"
    with _locked(root / ".ecgw-ids.lock"):
        passwd, group = (etc / "passwd").read_text(), (etc / "group").read_text()
        move = plan(passwd, group, (host_etc / "passwd").read_text(), (host_etc / "group").read_text())
        if move is None:
            return account_ids(passwd)
        new_passwd, new_group = renumbered(passwd, group, move)
        _replace(etc / "group", new_group)
        _replace(etc / "passwd", new_passwd)
        changed = _rechown(root, move, {str(p) for p in skip})
    log.warning("sandbox account %s: uid/gid %d/%d was taken on the host; now %d/%d (%d files changed hands)",
                ACCOUNT, move.old_uid, move.old_gid, move.uid, move.gid, changed)
    return move.uid, move.gid


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _replace(path: Path, text: str) -> None:
    """Whole or not at all: a sandbox starting meanwhile reads the old file or the new one."""
    partial = path.with_name(path.name + ".ecgw-new")
    partial.write_text(text)
    partial.chmod(path.stat().st_mode & 0o7777)
    os.replace(partial, path)


def _rechown(root: Path, move: Move, skip: set[str]) -> int:
    changed = 0
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(directory, d) not in skip
                   and not os.path.ismount(os.path.join(directory, d))]
        for path in (directory, *(os.path.join(directory, n) for n in [*dirs, *files])):
            changed += hand_over(path, {move.old_uid: move.uid}, {move.old_gid: move.gid})
    return changed


def hand_over(path: str, uids: dict[int, int], gids: dict[int, int]) -> int:
    """Give ``path`` (a link itself, not its target) the new owner and group its old ones map to;
    1 if anything changed."""
    st = os.lstat(path)
    uid, gid = uids.get(st.st_uid, -1), gids.get(st.st_gid, -1)
    if uid == -1 and gid == -1:
        return 0
    os.lchown(path, uid, gid)
    return 1
