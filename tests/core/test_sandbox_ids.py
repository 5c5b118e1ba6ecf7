"""The sandbox's asterisk account: ids no host account or group uses, chosen by a pure rule; an older
chroot renumbered, with every file the old ids owned handed over."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.asterisk import sandbox_ids as ids
from gateway.asterisk.sandbox import adopt
from gateway.asterisk.sandbox_ids import SANDBOX_IDS, Move, choose_id, plan, renumbered, settle
from gateway.errors import AsteriskError

# This machine as found: Debian's scripts gave the chroot's asterisk 101/101, the host's postgres and _ssh.
HOST_PASSWD = """\
root:x:0:0:root:/root:/bin/bash
messagebus:x:100:102::/nonexistent:/usr/sbin/nologin
postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
HOST_GROUP = "root:x:0:\nusers:x:100:\n_ssh:x:101:\nmessagebus:x:102:\npostgres:x:104:\nnogroup:x:65534:\n"
CHROOT_PASSWD = """\
root:x:0:0:root:/root:/bin/bash
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
asterisk:x:101:101:Asterisk PBX daemon:/var/lib/asterisk:/usr/sbin/nologin
"""
CHROOT_GROUP = "root:x:0:\ndialout:x:20:asterisk\naudio:x:29:asterisk\nasterisk:x:101:\n"


def test_the_account_found_on_postgres_uid_moves_to_the_sandbox_range() -> None:
    assert plan(CHROOT_PASSWD, CHROOT_GROUP, HOST_PASSWD, HOST_GROUP) == Move(101, 101, 60100, 60100)


def test_ids_in_the_range_and_free_on_the_host_stay() -> None:
    passwd = CHROOT_PASSWD.replace(":101:101:", ":60100:60100:")
    assert plan(passwd, CHROOT_GROUP.replace(":101:", ":60100:"), HOST_PASSWD, HOST_GROUP) is None


def test_a_system_id_free_today_still_moves() -> None:
    # a package installed on the host later (PostgreSQL is next) takes system ids 100-999
    passwd = CHROOT_PASSWD.replace(":101:101:", ":105:105:")
    assert plan(passwd, CHROOT_GROUP, HOST_PASSWD, HOST_GROUP) == Move(105, 105, 60100, 60100)


@pytest.mark.parametrize("host_passwd, host_group, expected", [
    (HOST_PASSWD + "someone:x:60100:1000::/home/x:/bin/sh\n", HOST_GROUP, 60101),  # a host uid
    (HOST_PASSWD, HOST_GROUP + "team:x:60100:\n", 60101),  # a host group
    (HOST_PASSWD + "someone:x:1000:60101::/home/x:/bin/sh\n", HOST_GROUP + "team:x:60100:\n", 60102),  # primary gid
])
def test_uid_and_gid_are_one_number_free_as_both(host_passwd: str, host_group: str, expected: int) -> None:
    assert plan(CHROOT_PASSWD, CHROOT_GROUP, host_passwd, host_group) == Move(101, 101, expected, expected)


def test_the_account_moves_when_only_its_gid_is_taken() -> None:
    passwd = CHROOT_PASSWD.replace(":101:101:", ":60100:60100:")
    group = CHROOT_GROUP.replace(":101:", ":60100:")
    assert plan(passwd, group, HOST_PASSWD, HOST_GROUP + "team:x:60100:\n") == Move(60100, 60100, 60101, 60101)


def test_choose_id() -> None:
    assert choose_id(set()) == SANDBOX_IDS.start == 60100
    assert choose_id({60100, 60101, 60103}) == 60102
    assert choose_id({1, 2}, range(1, 4)) == 3
    with pytest.raises(AsteriskError, match="no id free for the sandbox's account in 1-3"):
        choose_id({1, 2, 3}, range(1, 4))


def test_the_range_is_outside_every_automatic_allocation() -> None:
    assert SANDBOX_IDS.start >= 60000 and SANDBOX_IDS.stop <= 61184  # adduser ≤ 59999; systemd dynamic ≥ 61184


def test_renumbered_changes_the_account_and_its_group_only() -> None:
    passwd, group = renumbered("# kept\n" + CHROOT_PASSWD, CHROOT_GROUP, Move(101, 101, 60100, 60100))
    assert passwd == "# kept\n" + CHROOT_PASSWD.replace(":101:101:", ":60100:60100:")
    assert group == CHROOT_GROUP.replace("asterisk:x:101:", "asterisk:x:60100:")


def test_an_unknown_account_is_an_error() -> None:
    with pytest.raises(AsteriskError, match="no 'asterisk' account"):
        plan("root:x:0:0::/root:/bin/sh\n", "", HOST_PASSWD, HOST_GROUP)


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def fake_chroot(tmp_path: Path) -> tuple[Path, Path]:
    root, host = tmp_path / "root", tmp_path / "host"
    for d in ("etc/asterisk", "var/log/asterisk", "srv/ecgw/running/log", "srv/ecgw/old/log", "usr/bin"):
        (root / d).mkdir(parents=True)
    host.mkdir()
    (root / "etc/passwd").write_text(CHROOT_PASSWD)
    (root / "etc/group").write_text(CHROOT_GROUP)
    (host / "passwd").write_text(HOST_PASSWD)
    (host / "group").write_text(HOST_GROUP)
    for path in ("etc/asterisk", "etc/asterisk/manager.conf", "var/log/asterisk", "srv/ecgw/running/log/messages.log",
                 "srv/ecgw/old", "srv/ecgw/old/log/messages.log"):
        (root / path).touch()
        os.chown(root / path, 101, 101)
    os.chown(root / "etc/asterisk/manager.conf", 101, 0)  # group root stays root
    (root / "usr/bin/tool").touch()
    (root / "etc/asterisk/link").symlink_to(root / "usr/bin/tool")
    os.lchown(root / "etc/asterisk/link", 101, 101)
    return root, host


@root_only
def test_settle_renumbers_an_older_chroot_and_hands_over_its_files(tmp_path: Path) -> None:
    root, host = fake_chroot(tmp_path)
    (root / "etc/passwd").chmod(0o644)
    assert settle(root, skip=[root / "srv/ecgw/running"], host_etc=host) == (60100, 60100)
    assert ids.account_ids((root / "etc/passwd").read_text()) == (60100, 60100)
    assert "asterisk:x:60100:" in (root / "etc/group").read_text()
    assert stat.S_IMODE((root / "etc/passwd").stat().st_mode) == 0o644
    for path in ("etc/asterisk", "var/log/asterisk", "srv/ecgw/old", "srv/ecgw/old/log/messages.log",
                 "etc/asterisk/link"):
        assert owner(root / path) == (60100, 60100), path
    assert owner(root / "etc/asterisk/manager.conf") == (60100, 0)
    assert owner(root / "usr/bin/tool") == (0, 0)  # the link's target is not followed
    assert owner(root / "srv/ecgw/running/log/messages.log") == (101, 101)  # its Asterisk still runs as 101
    assert settle(root, host_etc=host) == (60100, 60100)  # settled: nothing more to do
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["asterisk", "group", "passwd"]


@root_only
def test_an_instance_adopts_what_an_older_uid_left(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    for name, uid in (("messages.log", 101), ("console.log", 0), ("queue_log", 60100)):
        (log / name).touch()
        os.chown(log / name, uid, uid)
    os.chown(log, 101, 101)
    adopt(log, 60100, 60100)
    assert {p.name: owner(p) for p in [log, *log.iterdir()]} == {
        "log": (60100, 60100), "messages.log": (60100, 60100), "console.log": (0, 0), "queue_log": (60100, 60100)}
